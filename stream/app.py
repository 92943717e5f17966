"""The Faust application: topics and the agents a worker runs.

The embedded broker (librdkafka's mock cluster) has no CreateTopics and Faust's leader topic
would be one more topic to create, so the app never declares topics itself
(``topic_allow_declare=False``, ``topic_disable_leader=True``): topics are created beforehand
(``stream.topics.ensure_topics``: ``tweetwatch topics`` on a real Kafka, docker-compose's
topic-init step, or the embedded broker). Agents plug in through ``AGENTS``: a name and a
``register(app, settings, topics)`` function, so ``tweetwatch worker --agent ...`` can run any
subset. The agents import nothing from here (``Topics`` lives in ``stream.topics``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import faust
from faust.types import TopicT

from stream.alert_agent import register_alert_agent
from stream.analyze_agent import register_analyze_agent
from stream.kafka_consumer import transport_class
from stream.metrics import serve_metrics
from stream.settings import Settings
from stream.topics import Topics

AgentRegistrar = Callable[[faust.App, Settings, Topics], None]

# Agents a worker can run, by name. Each registrar adds its agent(s) to the app.
AGENTS: dict[str, AgentRegistrar] = {
    "analyze": register_analyze_agent,
    "alert": register_alert_agent,
}


def faust_broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust's ``kafka://host:port`` URLs from a plain bootstrap list."""
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def create_app(settings: Settings, agents: Sequence[str] | None = None) -> faust.App:
    """A Faust app wired to the settings' broker and topics, with the named agents (all by
    default) registered on it."""
    chosen = list(AGENTS) if agents is None else list(agents)
    unknown = sorted(set(chosen) - set(AGENTS))
    if unknown:
        raise ValueError(f"unknown agent(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(sorted(AGENTS))}")
    app = faust.App(
        settings.app_id,
        broker=faust_broker_urls(settings.kafka_bootstrap_servers),
        autodiscover=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Stopping or rebalancing does not wait for in-flight batches: a batch that cannot
        # commit (database down) would hold the worker forever. Its offsets are not
        # acknowledged, so it is simply delivered again (and deduplicated by the store).
        stream_wait_empty=False,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 5),
        broker_rebalance_timeout=settings.kafka_session_timeout_s,
        # Faust wants a data folder even with in-memory tables; keep it out of the checkout.
        datadir=Path(tempfile.gettempdir()) / f"tweetwatch-faust-{settings.app_id}",
    )
    # Faust fixes the consumer's fetch wait at 1500 ms; see stream.kafka_consumer.
    app.transport = transport_class(settings.kafka_fetch_max_wait_ms)(
        app.conf.broker_consumer, app)
    topics = Topics(
        tweets=_raw_topic(app, settings.topic_tweets, settings),
        dlq=_raw_topic(app, settings.topic_dlq, settings),
        negative=_raw_topic(app, settings.topic_negative, settings),
        alerts=_raw_topic(app, settings.topic_alerts, settings),
    )
    for name in chosen:
        AGENTS[name](app, settings, topics)
    serve_metrics(app, settings)
    return app


def _raw_topic(app: faust.App, name: str, settings: Settings) -> TopicT:
    return app.topic(name, key_serializer="raw", value_serializer="raw",
                     partitions=settings.topic_partitions)

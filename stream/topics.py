"""The app's topics: their names, the bundle of Faust topics the agents send to, and the one
function that creates topics.

Topics are created before any worker runs: the worker never declares topics itself
(``topic_allow_declare=False``, see ``stream.app``), and the embedded broker (librdkafka's mock
cluster) has no CreateTopics request at all. :func:`ensure_topics` is how every caller creates
them, on any broker: ``tweetwatch topics`` and docker-compose's topic-init step on a real
Kafka, ``tweetwatch broker`` and the demo on the embedded broker, the tests and the pipeline
benchmark on whichever they run against.

This module imports neither Faust nor a Kafka client at import time: naming four topics must
not load the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from stream.settings import Settings

if TYPE_CHECKING:
    from faust.types import TopicT

_TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: a concurrent topic-init created it, fine

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Topics:
    """The app's topics; every value and key is raw bytes (JSON records, see stream.records)."""

    tweets: TopicT
    dlq: TopicT
    negative: TopicT
    alerts: TopicT


def topic_names(settings: Settings) -> list[str]:
    """Every topic the app reads or writes (what ``tweetwatch topics`` creates)."""
    return [settings.topic_tweets, settings.topic_dlq, settings.topic_negative,
            settings.topic_alerts]


class LocalBroker(Protocol):
    """A broker started by this process (``stream.broker.EmbeddedBroker``,
    ``stream.tansu.TansuBroker``): it creates topics through its own interface."""

    bootstrap_servers: str

    def create_topics(self, names: Sequence[str], partitions: int = 1,
                      replication: int = 1) -> None: ...


def ensure_topics(broker: str | LocalBroker, names: Sequence[str], partitions: int,
                  replication: int = 1) -> dict[str, bool]:
    """Create the topics ``names`` that do not exist yet; returns each name and whether this
    call created it.

    ``broker`` is a bootstrap list (the Kafka admin API; existing topics are left as they are)
    or a broker this process started (its own interface; such a broker starts empty). Callable
    from synchronous code and from inside a running event loop alike.
    """
    if not isinstance(broker, str):
        broker.create_topics(list(names), partitions, replication)
        return dict.fromkeys(names, True)
    return _run(_create_with_admin(broker, list(names), partitions, replication))


async def _create_with_admin(bootstrap_servers: str, names: list[str], partitions: int,
                             replication: int) -> dict[str, bool]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers,
                                client_id="tweetwatch-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            cluster = await admin.describe_cluster()
            if cluster["controller_id"] not in {b["node_id"] for b in cluster["brokers"]}:
                raise RuntimeError(
                    "the broker names no controller, so it cannot create topics (the embedded "
                    f"broker cannot; create {', '.join(missing)} through its API)")
            response = await admin.create_topics([
                NewTopic(name, partitions, replication) for name in missing])
            failed = [f"{topic}: {(rest[0] if rest else None) or f'error code {code}'}"
                      for topic, code, *rest in response.topic_errors
                      if code not in (0, _TOPIC_ALREADY_EXISTS)]
            if failed:
                raise RuntimeError("; ".join(failed))
        return {name: name in missing for name in names}
    finally:
        await admin.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion: here, or on a thread of its own when this thread already
    runs an event loop (a test's setup inside an async test, for one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

"""The worker's Prometheus metrics (prometheus-client), served on ``TWEETWATCH_METRICS_PORT``.

The agents call a few functions here (``batch_committed``, ``dead_letter``, ``alert_fired``,
``watch_*``); everything that the worker already counts (the analyze agent's running totals,
the LLM circuit breaker, Faust's committed offsets) is read at scrape time by collectors
rather than counted twice. Names and meanings are listed in docs/metrics.md.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    import faust
    from faust.types import EventT

    from stream.llm import ChatClient
    from stream.records import AlertRecord
    from stream.settings import Settings

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "tweetwatch_batch_size", "Messages per micro-batch of the analyze agent.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
BATCH_SECONDS = Histogram(
    "tweetwatch_batch_seconds",
    "Processing time of one micro-batch: validation, model, rows, database and publishing.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PUBLISH_TO_COMMIT = Histogram(
    "tweetwatch_publish_to_commit_seconds",
    "From a tweet's Kafka timestamp (when it was published) to its batch's database commit.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
DEAD_LETTERS = Counter(
    "tweetwatch_dead_letters", "Messages sent to the dead-letter topic, by reason class.",
    ["agent", "reason"])
ALERTS = Counter("tweetwatch_alerts", "Alerts stored and published, by text generator.",
                 ["generator"])
LLM_ERRORS = Counter("tweetwatch_llm_errors", "Failed LLM requests (each attempt).")
WEBHOOK_DELIVERIES = Counter(
    "tweetwatch_webhook_deliveries", "Alerts posted to the webhook, by outcome "
    "(delivered, failed after retries, dropped: queue full or worker stopping).", ["outcome"])

# Reason class of a dead letter: the first phrase that matches the reason text.
_REASON_CLASSES: Sequence[tuple[str, tuple[str, ...]]] = (
    ("model", ("analysis failed",)),
    ("encoding", ("utf-8", "nul character", "surrogate")),
    ("json", ("malformed json", "not json", "expected a json object", "empty message")),
    ("too_long", ("longer than", "more than the limit", "larger than the limit")),
    ("version", ("unsupported record version",)),
    ("schema", ("missing", "must be", "is empty", "iso-8601", "not a number", "field")),
)


_collectors: dict[str, Collector] = {}


def _register(name: str, collector: Collector) -> None:
    """Register a scrape-time collector, replacing the one of the same name (an agent that
    starts again in the same process watches its new objects)."""
    old = _collectors.pop(name, None)
    if old is not None:
        REGISTRY.unregister(old)
    REGISTRY.register(collector)
    _collectors[name] = collector


_EXCEPTION_REASON = re.compile(r"^[A-Za-z_]\w*: ")  # stream.faults.failure_reason


def reason_class(reason: str) -> str:
    """A small, fixed set of label values for the free-text DLQ reasons: what was wrong with
    the input, or ``processing`` for a message that made the worker fail (poison)."""
    if _EXCEPTION_REASON.match(reason):
        return "processing"
    text = reason.lower()
    for name, phrases in _REASON_CLASSES:
        if any(p in text for p in phrases):
            return name
    return "other"


def dead_letter(reason: str, agent: str = "analyze") -> None:
    DEAD_LETTERS.labels(agent=agent, reason=reason_class(reason)).inc()


def batch_committed(events: Sequence[EventT], seconds: float) -> None:
    """One committed micro-batch: its size, its processing time and, per message, the time
    from publication (the Kafka timestamp) to now."""
    BATCH_SIZE.observe(len(events))
    BATCH_SECONDS.observe(seconds)
    now = time.time()
    for event in events:
        stamp = event.message.timestamp
        if stamp and stamp > 0:
            PUBLISH_TO_COMMIT.observe(max(0.0, now - stamp))


def alert_fired(alert: AlertRecord) -> None:
    ALERTS.labels(generator=alert.generator).inc()


class _TotalsCollector(Collector):
    """The analyze agent's running totals (``BatchStats``), read at scrape time."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, attr, doc in (
            ("tweetwatch_tweets_stored", "stored", "Tweets newly stored."),
            ("tweetwatch_tweets_duplicate", "duplicates",
             "Tweets already stored (redelivered or repeated ids), not stored again."),
            ("tweetwatch_negative_mentions_published", "negative",
             "Negative entity mentions published to the negative-entity topic."),
            ("tweetwatch_batches", "batches", "Micro-batches committed."),
        ):
            yield CounterMetricFamily(name, doc, value=getattr(self.stats, attr))


def watch_batch_stats(stats: Any) -> None:
    """Expose the analyze agent's ``BatchStats`` totals as counters."""
    _register("batch_stats", _TotalsCollector(stats))


class _LLMCollector(Collector):
    def __init__(self, client: ChatClient) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("tweetwatch_llm_circuit_state",
                                   "The LLM circuit breaker's state (1 for the current one).",
                                   labels=["state"])
        current = self.client.breaker.state
        for state in ("closed", "open", "half-open"):
            family.add_metric([state], 1.0 if state == current else 0.0)
        yield family


def watch_llm(client: ChatClient | None) -> None:
    """Count the client's failed requests and expose its circuit state (no client: no LLM
    configured, nothing to watch). Wraps the breaker's ``record_failure``, which the client
    calls once per failed attempt."""
    if client is None:
        return
    breaker = client.breaker
    original = breaker.record_failure

    def record_failure() -> None:
        LLM_ERRORS.inc()
        original()

    breaker.record_failure = record_failure  # type: ignore[method-assign]
    _register("llm", _LLMCollector(client))


class _LagCollector(Collector):
    """Consumer lag per partition from Faust's own monitor: the partition's end offset as the
    consumer last saw it in a fetch, minus the offset the worker committed."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("tweetwatch_consumer_lag",
                                   "Messages fetched-known but not yet committed, per partition.",
                                   labels=["topic", "partition"])
        monitor = self.app.monitor
        ends = dict(monitor.tp_end_offsets or {})
        committed = dict(monitor.tp_committed_offsets or {})
        for tp in sorted(ends):
            lag = max(0, ends[tp] - committed.get(tp, 0))
            family.add_metric([tp.topic, str(tp.partition)], float(lag))
        yield family


def serve_metrics(app: faust.App, settings: Settings) -> None:
    """Start the metrics endpoint (a thread of prometheus-client's own) when the worker
    starts; ``metrics_port`` 0: off."""
    if not settings.metrics_port:

        async def metrics_off() -> None:
            log.info("metrics endpoint off (TWEETWATCH_METRICS_PORT=0)")

        app.task(metrics_off)
        return
    _register("lag", _LagCollector(app))

    async def start_metrics_endpoint() -> None:
        host, port = settings.metrics_host, settings.metrics_port
        try:
            start_http_server(port, addr=host)
        except OSError as exc:
            # A second worker on the same host: it works on without an endpoint of its own.
            log.warning("metrics endpoint not started on %s:%d: %s (set "
                        "TWEETWATCH_METRICS_PORT to a free port, or 0)", host, port,
                        exc.strerror or exc)
            return
        log.info("metrics on http://%s:%d/metrics", host, port)

    app.task(start_metrics_endpoint)

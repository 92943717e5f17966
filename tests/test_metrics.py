"""The worker's Prometheus endpoint, scraped over HTTP from a real ``tweetwatch worker``
process on real tweets (plus duplicates and bad input) through the broker into PostgreSQL.

Every expected figure is what was published: N new tweets, D repeats, one bad message of
each kind with its reason class.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from serve_process import free_port
from test_pipeline import _bad_messages
from test_webhook import scrape

from stream.metrics import reason_class
from stream.publish import Outgoing, publish, replay_messages
from stream.settings import Settings
from stream.storage import Tweet, create_engine
from stream.worker_process import WorkerProcess

if TYPE_CHECKING:
    from conftest import ScratchDatabase

GOOD = 150
REPEATED = 20


@pytest.mark.parametrize(("reason", "expected"), [
    ("malformed JSON: Expecting value at line 1 column 1", "json"),
    ("not JSON: Expecting property name", "json"),
    ("expected a JSON object, got list", "json"),
    ("empty message", "json"),
    ("invalid UTF-8 at byte 5", "encoding"),
    ("field 'text' contains a NUL character", "encoding"),
    ("field 'text' has 2001 characters, more than the limit of 2000", "too_long"),
    ("missing field 'text'", "schema"),
    ("field 'created_at' is not ISO-8601: 'last tuesday'", "schema"),
    ("unsupported record version 7 (expected 1)", "version"),
    ("analysis failed (model error, see the worker log)", "model"),
    ("message of 2000000 bytes is larger than the limit of 1000000", "too_long"),
    ("field 'created_at' 1900-01-01T00:00:00+00:00 is outside the accepted range", "schema"),
    ("ZeroDivisionError: division by zero", "processing"),
    ("something new", "other"),
])
def test_reason_classes(reason: str, expected: str) -> None:
    assert reason_class(reason) == expected


def _lags(samples: dict[str, float], topic: str) -> list[float]:
    return [v for k, v in samples.items()
            if k.startswith("tweetwatch_consumer_lag{") and f'topic="{topic}"' in k]


@pytest.mark.integration
@pytest.mark.slow
def test_worker_metrics_scraped(topic_settings: Settings, scratch_database: ScratchDatabase,
                                tmp_path: Path) -> None:
    port = free_port()
    settings = topic_settings.model_copy(update={"database_url": scratch_database.url,
                                                 "metrics_port": port})
    good = replay_messages(settings.data_dir, GOOD, source="sentiment", seed=7)
    bad = _bad_messages(settings.max_text_chars)
    stream = [*good, *(Outgoing(None, payload) for payload, _ in bad), *good[:REPEATED]]
    worker = WorkerProcess(settings, tmp_path / "worker.log", agents=["analyze"]).start()
    try:
        asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets, stream))
        deadline = time.monotonic() + 180
        while True:
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            done = samples.get("tweetwatch_batch_size_sum", 0) >= len(stream)
            lags = _lags(samples, settings.topic_tweets)
            if done and lags and not any(lags):
                break
            time.sleep(0.5)
    finally:
        worker.stop()

    assert samples["tweetwatch_tweets_stored_total"] == GOOD
    assert samples["tweetwatch_tweets_duplicate_total"] == REPEATED
    expected_dlq = Counter(reason_class(reason) for _, reason in bad)
    got_dlq = {k: v for k, v in samples.items() if k.startswith("tweetwatch_dead_letters_total")}
    assert got_dlq == {f'tweetwatch_dead_letters_total{{agent="analyze",reason="{c}"}}': n
                       for c, n in expected_dlq.items()}
    assert samples["tweetwatch_batch_size_sum"] == len(stream)
    batches = samples["tweetwatch_batches_total"]
    assert samples["tweetwatch_batch_size_count"] == batches
    assert samples["tweetwatch_batch_seconds_count"] == batches
    assert samples["tweetwatch_publish_to_commit_seconds_count"] == len(stream)
    assert 0 < samples["tweetwatch_publish_to_commit_seconds_sum"] / len(stream) < 120
    assert samples['tweetwatch_batch_size_bucket{le="+Inf"}'] == batches
    assert "process_cpu_seconds_total" in samples  # prometheus-client's process metrics
    assert f"metrics on http://127.0.0.1:{port}/metrics" in worker.log_tail(500)

    async def stored() -> int:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                return int(await conn.scalar(sa.select(sa.func.count()).select_from(Tweet)))
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == GOOD


def test_metrics_port_zero_is_off(topic_settings: Settings, tmp_path: Path) -> None:
    """With TWEETWATCH_METRICS_PORT=0 the worker starts and opens no metrics endpoint."""
    settings = topic_settings.model_copy(update={"metrics_port": 0})
    worker = WorkerProcess(settings, tmp_path / "worker.log", agents=["alert"]).start()
    try:
        deadline = time.monotonic() + 60
        while "metrics endpoint off" not in worker.log_tail(200):
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.3)
    finally:
        worker.stop()
    assert "metrics on http" not in worker.log_tail(500)
    assert "metrics endpoint not started" not in worker.log_tail(500)

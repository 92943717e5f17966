"""Operator behaviour with a broker that goes away: the worker's log stays readable, and
SIGTERM still stops it in time for a container runtime (which sends SIGKILL after 10 s)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from stream.broker import EmbeddedBroker
from stream.publish import publish, replay_messages
from stream.settings import Settings
from stream.worker_process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_broker_outage_logs_little_and_sigterm_still_stops_the_worker(
        pg_url: str, tmp_path: Path) -> None:
    broker = EmbeddedBroker().start()
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, database_url=pg_url,
                        app_id="outage-app", topic_tweets="o-tweets", topic_dlq="o-dlq",
                        topic_negative="o-negative", topic_alerts="o-alerts",
                        topic_partitions=2, max_batch=16)
    broker.create_topics(["o-tweets", "o-dlq", "o-negative", "o-alerts"], 2)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        messages = replay_messages(settings.data_dir, 200, source="sentiment")
        asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets, messages))
        deadline = time.monotonic() + 120
        while "analyze:" not in worker.log_path.read_text() and "Ready" not in \
                worker.log_path.read_text():
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        time.sleep(3.0)
        broker.stop()
        before = worker.log_path.stat().st_size
        time.sleep(20.0)
        grown = worker.log_path.stat().st_size - before
        assert worker.alive(), worker.log_tail()
        # One line per retry interval, not hundreds a second (once ~470 KB a minute).
        assert grown < 40_000, f"{grown} bytes of log in 20 s of outage:\n{worker.log_tail(40)}"
        started = time.monotonic()
        code = worker.stop(timeout=30.0)
        took = time.monotonic() - started
    finally:
        worker.kill()
        broker.stop()
    assert code is not None and code != -signal.SIGKILL, worker.log_tail()
    assert took < 10.0, f"SIGTERM took {took:.1f} s:\n{worker.log_tail()}"
    print(json.dumps({"log_bytes_20s_outage": grown, "sigterm_exit_s": round(took, 2)}))

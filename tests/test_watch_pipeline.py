"""Watchlists in the running pipeline: real `tweetwatch worker` processes on the embedded
Kafka-protocol broker and PostgreSQL.

- `tweetwatch watch add` while a worker runs: the next tweets match, without a restart; an
  excluded phrase does not match; a complaint addressed only to the brand's handle is stored
  as a negative mention of the watched entity (the model's own output on the issue's tweet).
- Spike alerts: a burst against a quiet baseline raises one alert that names the watched
  entity, says why and carries example tweets; a steady negative stream raises only its onset
  alert, where the count-and-cooldown policy alerted after every cooldown.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_alert_agent import publish, read_topic, stored_alerts

from stream.records import NegativeMention, TweetIn
from stream.settings import Settings
from stream.storage import EntityMention, Tweet, create_engine, store_batch
from stream.worker_process import WorkerProcess, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")},
           **settings_env(settings)}
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], text=True,
                          capture_output=True, env=env, timeout=60, check=False)


async def mentions_of(url: str, ids: list[str]) -> dict[str, list]:
    engine = create_engine(url)
    em = EntityMention.__table__
    try:
        async with engine.connect() as conn:
            stored = set((await conn.execute(
                sa.select(Tweet.__table__.c.id).where(Tweet.__table__.c.id.in_(ids)))).scalars())
            rows = (await conn.execute(sa.select(em).where(em.c.tweet_id.in_(ids)))).all()
    finally:
        await engine.dispose()
    out: dict[str, list] = {i: [] for i in stored}
    for row in rows:
        out[row.tweet_id].append(row)
    return out


def wait_stored(url: str, ids: list[str], worker: WorkerProcess,
                timeout: float = 120) -> dict[str, list]:
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(mentions_of(url, ids))
        if len(found) == len(ids):
            return found
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)


async def send_tweets(settings: Settings, tweets: dict[str, str]) -> None:
    await publish(settings, settings.topic_tweets,
                  [(i.encode(), TweetIn(id=i, text=text, created_at=datetime.now(UTC)).to_json())
                   for i, text in tweets.items()])


DELTA_COMPLAINT = "@Delta lost my bag AGAIN. Never flying with you again."


async def test_watch_add_reaches_a_running_worker(topic_settings, scratch_database, tmp_path):
    settings = topic_settings.model_copy(update={"database_url": scratch_database.url,
                                                 "watchlist_poll_s": 0.5})
    run = uuid.uuid4().hex[:6]
    worker = WorkerProcess(settings, tmp_path / "worker.log", agents=["analyze"]).start()
    try:
        before = {f"{run}-a": DELTA_COMPLAINT}
        await send_tweets(settings, before)
        stored = await asyncio.to_thread(wait_stored, settings.database_url, list(before), worker)
        assert all(m.watch is None for m in stored[f"{run}-a"])

        done = cli(settings, "watch", "add", "Delta Air Lines", "--alias", "@Delta",
                   "--alias", "Delta", "--exclude", "delta variant", "--type", "airline")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "watching Delta Air Lines (3 aliases, 1 exclusions)"
        listed = cli(settings, "watch", "list", "--json")
        assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == [
            "Delta Air Lines"]
        await asyncio.sleep(1.5)  # three poll intervals; the worker is not restarted

        after = {f"{run}-b": DELTA_COMPLAINT,
                 f"{run}-c": "The delta variant is spreading fast in the county",
                 f"{run}-d": "Flying Delta to Atlanta tomorrow"}
        await send_tweets(settings, after)
        stored = await asyncio.to_thread(wait_stored, settings.database_url, list(after), worker)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    handle = [m for m in stored[f"{run}-b"] if m.watch]
    assert [(m.entity, m.entity_key, m.type, m.sentiment) for m in handle] == [
        ("@Delta", "deltaairlines", "airline", "negative")]
    assert handle[0].p_negative >= settings.negative_threshold
    assert all(m.watch is None for m in stored[f"{run}-c"])  # the exclusion vetoes it
    assert [m.watch for m in stored[f"{run}-d"] if m.watch] == ["Delta Air Lines"]

    # History folds every alias into the watched entity.
    done = cli(settings, "history", "@Delta", "--days", "1", "--json")
    assert done.returncode == 0, done.stderr
    days = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(d["mentions"] for d in days) == 2
    assert {d["entity"] for d in days} == {"Delta Air Lines"}


# --- spike alerts -------------------------------------------------------------------------------
T0 = datetime(2020, 5, 4, 9, 0, tzinfo=UTC)
WINDOW_S = 300


def stream_tweets(key: str, windows: range, negative: int,
                  neutral: int) -> list[tuple[str, datetime, str]]:
    """(tweet id, time, sentiment): per window, ``negative`` negative and ``neutral`` neutral
    tweets spread evenly over it (the negatives interleaved with the neutral ones)."""
    out = []
    n = negative + neutral
    for w in windows:
        for i in range(n):
            at = T0 + timedelta(seconds=w * WINDOW_S + (i + 0.5) * WINDOW_S / n)
            sentiment = "negative" if (i * negative) % n < negative else "neutral"
            out.append((f"{key}-{w}-{i}", at, sentiment))
    return out


async def store_rows(url: str, key: str, name: str,
                     tweets: list[tuple[str, datetime, str]]) -> None:
    tweet_rows, mention_rows = [], []
    for tweet_id, at, sentiment in tweets:
        p_neg = 0.9 if sentiment == "negative" else 0.05
        text = f"{name} {'is awful, refund now' if p_neg > 0.5 else 'store opens at nine'}"
        tweet_rows.append({"id": tweet_id, "text": f"{text} ({tweet_id})", "created_at": at,
                           "ingested_at": at, "author": None, "lang": "en",
                           "sentiment": sentiment, "p_negative": p_neg, "p_neutral": 0.05,
                           "p_positive": 0.05, "model_version": "test"})
        mention_rows.append({"tweet_id": tweet_id, "start": 0, "end": len(name),
                             "entity": name, "entity_key": key, "type": "company",
                             "sentiment": sentiment, "score": 0.9, "p_negative": p_neg,
                             "created_at": at, "watch": name})
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await store_batch(conn, tweet_rows, mention_rows)
    finally:
        await engine.dispose()


def negative_records(key: str, name: str,
                     tweets: list[tuple[str, datetime, str]]) -> list[tuple[bytes, bytes]]:
    return [(key.encode(), NegativeMention(
        tweet_id=tweet_id, entity=name, entity_key=key, type="company",
        type_source="watchlist", watch=name, score=0.9, tweet_sentiment="negative",
        text=f"{name} is awful, refund now ({tweet_id})", created_at=at).to_json())
        for tweet_id, at, sentiment in tweets if sentiment == "negative"]


async def test_a_burst_alerts_once_and_a_steady_stream_only_at_its_onset(
        topic_settings, pg_url, tmp_path: Path):
    settings = topic_settings.model_copy(update={
        "alert_window_s": WINDOW_S, "alert_cooldown_s": 900, "alert_min_negative": 3,
        "alert_sensitivity": 3.0, "alert_min_negative_share": 0.3})
    run = uuid.uuid4().hex[:6]
    burst_key, steady_key = f"burst{run}", f"steady{run}"
    # Burst: 12 quiet windows (1 negative, 3 neutral tweets), then 12 negatives in one window.
    burst = (stream_tweets(burst_key, range(12), negative=1, neutral=3)
             + stream_tweets(burst_key, range(12, 13), negative=12, neutral=3))
    # Steady: 5 negative and 3 neutral tweets in every window, for 24 windows (two hours).
    steady = stream_tweets(steady_key, range(24), negative=5, neutral=3)
    await store_rows(pg_url, burst_key, "Burstco", burst)
    await store_rows(pg_url, steady_key, "Steadyco", steady)
    await publish(settings, settings.topic_negative,
                  negative_records(burst_key, "Burstco", burst)
                  + negative_records(steady_key, "Steadyco", steady))
    worker = WorkerProcess(settings, tmp_path / "alert.log", agents=["alert"]).start()
    try:
        on_topic = await read_topic(settings, settings.topic_alerts, expect=2, timeout=90,
                                    quiet=5.0)
    finally:
        worker.stop()
    by_key: dict[str, list[dict]] = {}
    for alert in on_topic:
        by_key.setdefault(alert["entity_key"], []).append(alert)
    assert len(by_key.get(burst_key, [])) == 1, worker.log_tail()
    alert = by_key[burst_key][0]
    burst_start = T0 + timedelta(seconds=12 * WINDOW_S)
    assert datetime.fromisoformat(alert["window_end"]) > burst_start
    assert (alert["entity"], alert["watch"], alert["type"]) == ("Burstco", "Burstco", "company")
    assert alert["reason"]["rule"] == "count"
    assert alert["reason"]["baseline_mean"] == pytest.approx(1.0, abs=0.25)
    assert alert["reason"]["negative_tweets"] > alert["reason"]["threshold"]
    assert len(alert["examples"]) >= 3 and all("Burstco" in t for t in alert["examples"])
    assert alert["text"].startswith("Alert: negative sentiment toward the company Burstco: ")

    # The steady stream: one alert at its onset (no baseline yet), none in the 23 windows
    # after, although every window has 5 negative tweets and the cooldown is 3 windows.
    steady_alerts = by_key.get(steady_key, [])
    assert len(steady_alerts) == 1, [a["window_end"] for a in steady_alerts]
    assert datetime.fromisoformat(steady_alerts[0]["window_end"]) < T0 + timedelta(
        seconds=WINDOW_S)
    assert await stored_alerts(pg_url, {burst_key, steady_key}, T0) == sorted(
        on_topic, key=lambda a: a["window_end"])

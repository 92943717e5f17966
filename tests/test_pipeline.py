"""End to end on real services: real tweets -> broker -> ``tweetwatch worker`` (a child
process) -> PostgreSQL rows + negative-entity topic; bad input -> dead-letter topic; restarts.

Expected rows are not hard-coded: they are what the same model says about the same tweets
when run directly (``Analyzer``), so the test checks that the pipeline stores exactly the
model's output, once per tweet.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer

from stream.inference import Analyzer
from stream.publish import Outgoing, publish, replay_messages, text_id
from stream.settings import Settings
from stream.storage import EntityMention, Tweet, create_engine
from stream.worker_process import WorkerProcess, settings_env

if TYPE_CHECKING:
    from conftest import ScratchDatabase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 180.0


def _bad_messages(limit: int) -> list[tuple[bytes, str]]:
    """One message of every kind of bad input, with the reason the worker must give."""
    return [
        (b'{"id": "bad-1", "text": "unterminated', "malformed JSON"),
        (b'{"id": "bad-2"}', "missing field 'text'"),
        (b'{"id": "bad-3", "text": "   "}', "field 'text' is empty"),
        (json.dumps({"id": "bad-4", "text": "x" * (limit + 1)}).encode(),
         f"more than the limit of {limit}"),
        (b'{"id": "bad-5", "text": "caf\xe9 \xff"}', "invalid UTF-8"),
        (b'{"id": "bad-6", "text": 12345}', "field 'text' must be a string"),
        (b'{"id": {"x": 1}, "text": "hello"}', "field 'id' must be a string"),
        (b'{"id": "bad-8", "text": "ok", "created_at": "last tuesday"}', "is not ISO-8601"),
        (b'["not", "an", "object"]', "expected a JSON object"),
        (b'{"id": "bad-10", "text": "nul \\u0000 inside"}', "NUL character"),
        (b"", "empty message"),
    ]


async def _read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 30.0,
                      settle_s: float = 2.0) -> list:
    """Every record of ``topic``: waits for ``want`` records, then ``settle_s`` more for any
    unexpected extra ones."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        settle_until: float | None = None
        while loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            if len(records) >= want:
                settle_until = settle_until or loop.time() + settle_s
                if loop.time() >= settle_until:
                    break
    finally:
        await consumer.stop()
    return records


async def _count(url: str, ids: list[str]) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(Tweet).where(Tweet.id.in_(ids))
            return int((await conn.execute(query)).scalar())
    finally:
        await engine.dispose()


def _wait_for(url: str, ids: list[str], at_least: int, workers: list[WorkerProcess],
              timeout_s: float = WAIT_S) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        stored = asyncio.run(_count(url, ids))
        if stored >= at_least:
            return stored
        for worker in workers:
            assert worker.alive(), f"worker died:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, (
            f"only {stored}/{at_least} stored after {timeout_s}s:\n{workers[-1].log_tail()}")
        time.sleep(0.1)


async def _stored(url: str, ids: list[str]) -> tuple[dict[str, tuple], list[tuple]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tweets = (await conn.execute(
                sa.select(Tweet.id, Tweet.sentiment, Tweet.p_negative, Tweet.p_neutral,
                          Tweet.p_positive, Tweet.model_version).where(Tweet.id.in_(ids))
            )).all()
            mentions = (await conn.execute(
                sa.select(EntityMention.tweet_id, EntityMention.start, EntityMention.end,
                          EntityMention.entity_key, EntityMention.type,
                          EntityMention.sentiment, EntityMention.p_negative)
                .where(EntityMention.tweet_id.in_(ids))
            )).all()
    finally:
        await engine.dispose()
    return {t.id: tuple(t[1:]) for t in tweets}, [tuple(m) for m in mentions]


def _check_against_model(settings: Settings, texts: dict[str, str], url: str) -> list[tuple]:
    """Stored rows == the model's own output for every tweet; returns the stored mentions."""
    ids = list(texts)
    tweets, mentions = asyncio.run(_stored(url, ids))
    assert sorted(tweets) == sorted(ids)
    analyzer = Analyzer(settings.model_dir, settings.model_variant)
    predictions = dict(zip(ids, analyzer.analyze([texts[i] for i in ids]), strict=True))
    stored_spans = Counter((m[0], m[1], m[2], m[4]) for m in mentions)
    expected_spans = Counter((i, m.start, m.end, m.type) for i, p in predictions.items()
                             for m in p.mentions)
    assert sum(expected_spans.values()) > 0, "the model found no entity in real tweets"
    # Same spans, once each (batch padding may move a float in the last digits, never a span).
    assert stored_spans == expected_spans
    for tweet_id, row in tweets.items():
        assert row[0] == predictions[tweet_id].sentiment
        assert abs(sum(row[1:4]) - 1.0) < 1e-4 and row[4]
    return mentions


def _expected_negatives(mentions: list[tuple], threshold: float) -> Counter:
    """One record per tweet and negatively mentioned entity (a repeated name is one voice)."""
    return Counter({(m[0], m[3]) for m in mentions
                    if m[5] == "negative" and m[6] >= threshold})


def test_real_tweets_end_to_end_with_bad_input(topic_settings: Settings, tmp_path: Path) -> None:
    settings = topic_settings
    good = replay_messages(settings.data_dir, 400, source="topic")
    texts = {json.loads(m.value)["id"]: json.loads(m.value)["text"] for m in good}
    bad = _bad_messages(settings.max_text_chars)
    # Bad messages interleaved with good ones, and 25 tweets sent twice.
    stream: list[Outgoing] = []
    for i, message in enumerate(good):
        stream.append(message)
        if i % 35 == 0 and bad[i // 35:]:
            stream.append(Outgoing(None, bad[i // 35][0]))
    stream += good[:25]
    assert len(stream) == 400 + len(bad) + 25

    worker = WorkerProcess(settings, tmp_path / "worker.log", agents=["analyze"]).start()
    try:
        sent = asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets,
                                   stream))
        assert sent == len(stream)
        _wait_for(settings.database_url, list(texts), len(texts), [worker])
        dead = asyncio.run(_read_topic(settings.kafka_bootstrap_servers, settings.topic_dlq,
                                       len(bad)))
        negatives = asyncio.run(_read_topic(settings.kafka_bootstrap_servers,
                                            settings.topic_negative, 1))
        # Nothing more arrives: the duplicates were absorbed.
        time.sleep(1.0)
        assert asyncio.run(_count(settings.database_url, list(texts))) == 400
    finally:
        worker.stop()

    # Every bad message is in the DLQ with its reason and raw payload.
    reasons = dict(bad)
    letters = [json.loads(r.value) for r in dead]
    payloads = []
    for letter in letters:
        payload = (base64.b64decode(letter["payload"]) if letter["payload_encoding"] == "base64"
                   else letter["payload"].encode())
        payloads.append(payload)
        assert reasons[payload] in letter["reason"], letter
        assert letter["v"] == 1 and letter["source_topic"] == settings.topic_tweets
    assert sorted(payloads) == sorted(reasons)

    mentions = _check_against_model(settings, texts, settings.database_url)
    expected = _expected_negatives(mentions, settings.negative_threshold)
    assert expected, "no negative entity mention in 400 real tweets"
    docs = [json.loads(r.value) for r in negatives]
    assert Counter((d["tweet_id"], d["entity_key"]) for d in docs) == expected
    for record, doc in zip(negatives, docs, strict=True):
        assert record.key == doc["entity_key"].encode()
        assert doc["v"] == 1 and doc["sentiment"] == "negative"
        assert doc["score"] >= settings.negative_threshold
        assert doc["text"] == texts[doc["tweet_id"]]
        assert set(doc) >= {"tweet_id", "entity", "entity_key", "type", "score",
                            "tweet_sentiment", "text", "created_at"}


def test_worker_restarts_lose_and_duplicate_nothing(topic_settings: Settings,
                                                    tmp_path: Path) -> None:
    """Graceful stop (SIGTERM) mid-stream, then a crash (SIGKILL) mid-stream: every tweet is
    stored exactly once with all its mentions, and every negative mention is published."""
    settings = topic_settings.model_copy(update={"max_batch": 16,
                                                 "kafka_session_timeout_s": 3.0})
    messages = replay_messages(settings.data_dir, 2500, source="sentiment")
    texts = {json.loads(m.value)["id"]: json.loads(m.value)["text"] for m in messages}
    ids = list(texts)
    asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets, messages))

    first = WorkerProcess(settings, tmp_path / "worker1.log", agents=["analyze"]).start()
    at_term = _wait_for(settings.database_url, ids, 300, [first])
    assert first.stop() == 0
    after_term = asyncio.run(_count(settings.database_url, ids))
    assert after_term < len(ids), "the worker finished before it could be stopped mid-stream"

    second = WorkerProcess(settings, tmp_path / "worker2.log", agents=["analyze"]).start()
    at_kill = _wait_for(settings.database_url, ids, after_term + 300, [second])
    second.kill()
    after_kill = asyncio.run(_count(settings.database_url, ids))
    assert after_kill < len(ids), "the worker finished before it could be killed mid-stream"

    third = WorkerProcess(settings, tmp_path / "worker3.log", agents=["analyze"]).start()
    try:
        _wait_for(settings.database_url, ids, len(ids), [third])
        negatives = asyncio.run(_read_topic(settings.kafka_bootstrap_servers,
                                            settings.topic_negative, 1, settle_s=3.0))
    finally:
        third.stop()
    assert at_term <= after_term < at_kill <= after_kill < len(ids)

    mentions = _check_against_model(settings, texts, settings.database_url)
    expected = _expected_negatives(mentions, settings.negative_threshold)
    published = Counter((json.loads(r.value)["tweet_id"], json.loads(r.value)["entity_key"])
                        for r in negatives)
    # Nothing lost; a mention is published twice only when the kill fell between its
    # delivery and the commit of its batch (at-least-once), never for a committed batch.
    assert set(published) == set(expected)
    repeated = sum(published.values()) - sum(expected.values())
    assert 0 <= repeated <= settings.max_batch * 8


def test_cli_publish_and_history(topic_settings: Settings, tmp_path: Path) -> None:
    """`tweetwatch publish` (plain text lines from stdin) through a worker, then
    `tweetwatch history --json` reads the entity's day back."""
    settings = topic_settings
    texts = [json.loads(m.value)["text"] for m in
             replay_messages(settings.data_dir, 150, source="topic", seed=99)]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")},
           **settings_env(settings)}
    worker = WorkerProcess(settings, tmp_path / "worker.log", agents=["analyze"]).start()
    try:
        done = subprocess.run([sys.executable, "-m", "stream.cli", "publish", "-"],
                              input="\n".join(texts) + "\n", text=True, capture_output=True,
                              env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "published 150 messages" in done.stderr
        _wait_for(settings.database_url, [text_id(t) for t in texts], len(set(texts)),
                  [worker])
    finally:
        worker.stop()
    _, mentions = asyncio.run(_stored(settings.database_url, [text_id(t) for t in texts]))
    top = Counter(m[3] for m in mentions).most_common(1)[0]
    done = subprocess.run([sys.executable, "-m", "stream.cli", "history", top[0], "--days",
                           "2", "--json"], text=True, capture_output=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    days = [json.loads(line) for line in done.stdout.splitlines()]
    assert sum(d["mentions"] for d in days) >= top[1]
    assert all(set(d) >= {"day", "entity", "negative", "neutral", "positive", "mentions",
                          "negative_share"} for d in days)



def test_stop_during_database_outage_loses_nothing(topic_settings: Settings,
                                                   scratch_database: ScratchDatabase,
                                                   tmp_path: Path) -> None:
    """The database goes away mid-stream, so the worker holds a batch it cannot commit; it is
    then stopped (SIGTERM). The held batch must not be acknowledged: once the database is back,
    a new worker stores every tweet."""
    url = scratch_database.url
    settings = topic_settings.model_copy(update={"database_url": url, "max_batch": 16})
    messages = replay_messages(settings.data_dir, 1500, source="sentiment", seed=5)
    ids = [json.loads(m.value)["id"] for m in messages]
    asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets, messages))
    first = WorkerProcess(settings, tmp_path / "worker1.log", agents=["analyze"]).start()
    _wait_for(url, ids, 200, [first])
    scratch_database.allow_connections(False)
    time.sleep(3.0)  # the worker now retries a batch it cannot commit
    assert first.alive()
    started = time.monotonic()
    first.stop(timeout=30.0)
    # Within a container runtime's 10 s grace, though the held batch can never commit.
    assert time.monotonic() - started < 10.0, first.log_tail()
    assert "storing a batch failed" in first.log_path.read_text()
    scratch_database.allow_connections(True)
    assert asyncio.run(_count(url, ids)) < len(ids), "the worker finished before the outage"
    second = WorkerProcess(settings, tmp_path / "worker2.log", agents=["analyze"]).start()
    try:
        assert _wait_for(url, ids, len(ids), [second]) == len(ids)
    finally:
        second.stop()

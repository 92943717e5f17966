"""Fault injection on real services: 1,200 generated malformed and extreme messages mixed with
real tweets, on both input topics, with a hostile LLM endpoint. The worker (both agents) must
stay up, store every valid tweet once, and dead-letter every other message with a reason.

Which generated messages are valid is decided by the validator the worker runs
(``parse_tweet``); what is checked here is that the pipeline loses nothing and stops for
nothing, whatever arrives. The reproductions of crashes once found are in the mix by name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from llm_server import LLMServer

from stream.publish import Outgoing, publish, read_shared_tweets
from stream.records import InvalidTweet, TweetIn, encode, parse_tweet
from stream.settings import Settings
from stream.storage import Alert, Tweet, create_engine
from stream.worker_process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPRODUCTIONS = [
    # Crashed the analyze agent (OverflowError in .astimezone) and came back after restarts.
    b'{"id":"ts-1","text":"Delta Airlines lost my bag","created_at":"0001-01-01T00:00:00+01:00"}',
    # Crashed the alert agent's window arithmetic.
    b'{"id":"ts-2","text":"Delta Airlines lost my bag again, worst airline",'
    b'"created_at":"0001-01-01T00:00:00"}',
    b'{"id":"ts-3","text":"Delta is awful","created_at":"9999-12-31T23:59:59-14:00"}',
    b'{"id":"ts-4","text":"Delta is awful","created_at":"0001-01-01T00:01:00+00:00"}',
    b'{"id":"ts-5","text":"Delta is awful","created_at":"9999-12-31T23:58:00+00:00"}',
    b'{"id":"ts-6","text":"hi","extra":' + b"[" * 1500 + b"]" * 1500 + b"}",
    b'{"id":' + b"7" * 5001 + b',"text":"hi"}',
    json.dumps({"id": "ts-8", "text": "x" * 900_000}).encode(),
]
# Valid tweets that once crashed the worker further down the line: a 400-character hashtag
# (the alert id overflowed its column) and a name repeated behind zero-width spaces.
EXTREME_VALID = [
    "Boycott #" + "Verizon" * 45 + " they are the worst company ever",
    "Trump\u200b " * 100 + "is a disgrace",
    "Micro\u2060soft is the worst company ever, support is useless",
]


def _garbage(rng: random.Random, n: int) -> list[bytes]:
    """``n`` messages of every malformed and extreme kind, seeded."""
    kinds = [
        lambda i: rng.randbytes(rng.randint(0, 64)),
        lambda i: b'{"id": "g%d", "text": "unterminated' % i,
        lambda i: json.dumps({"id": f"g{i}"}).encode(),
        lambda i: json.dumps({"id": f"g{i}", "text": rng.choice([None, 1, [], {}, ""])}).encode(),
        lambda i: json.dumps({"id": rng.choice([None, [], {}, True, "", " " * 3, "x" * 200]),
                              "text": "hello"}).encode(),
        lambda i: json.dumps({"id": f"g{i}", "text": "hi", "created_at": rng.choice([
            "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "yesterday", 17,
            "1969-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "2026-13-45T99:00:00"])}).encode(),
        lambda i: b'{"id": "g%d", "text": "hi", "x": ' % i + b"[" * rng.randint(1001, 5000)
        + b"]" * 10 + b"}",
        lambda i: b'{"id": ' + b"9" * rng.randint(4301, 6000) + b', "text": "hi"}',
        lambda i: json.dumps({"id": f"g{i}", "text": "x" * rng.randint(2001, 50_000)}).encode(),
        lambda i: json.dumps({"id": f"g{i}", "text": "nul \u0000 byte"}).encode(),
        lambda i: b'{"id": "g%d", "text": "lone \\ud800 surrogate"}' % i,
        lambda i: json.dumps({"v": rng.choice([0, 2, "1", [1]]), "id": f"g{i}",
                              "text": "hi"}).encode(),
        lambda i: json.dumps([f"g{i}", "hello"]).encode(),
        lambda i: b"",
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def _negative_garbage(rng: random.Random, n: int) -> list[bytes]:
    """Bad records on the negative-entity topic, for the alert agent."""
    good = {"v": 1, "tweet_id": "n", "entity": "Delta", "entity_key": "delta", "type": "company",
            "sentiment": "negative", "score": 0.9, "tweet_sentiment": "negative",
            "text": "Delta is awful", "created_at": BASE.isoformat()}
    kinds = [
        lambda i: {**good, "created_at": "0001-01-01T00:00:00"},
        lambda i: {**good, "created_at": "9999-12-31T23:58:00+00:00"},
        lambda i: {**good, "score": 1e308 * 10},
        lambda i: {**good, "entity_key": "k" * 5000},
        lambda i: {**good, "type": "t" * 100},
        lambda i: {k: v for k, v in good.items() if k != "tweet_id"},
    ]
    out = [encode(kinds[i % len(kinds)](i)) for i in range(n)]
    out += [b"[" * 3000, b'{"score": ' + b"1" * 5000 + b"}", rng.randbytes(40), b"{}"]
    return out


async def _read_all(bootstrap: str, topic: str, want: int, timeout_s: float) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=64 * 1024 * 1024,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    records: list = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and len(records) < want:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        # Anything beyond what was expected would show up now.
        for batch in (await consumer.getmany(timeout_ms=1500)).values():
            records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def _stored_ids(url: str, prefix: str) -> Counter:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(Tweet.id).where(Tweet.id.like(f"{prefix}%"))
                                       )).scalars().all()
            return Counter(rows)
    finally:
        await engine.dispose()


def _payload(letter: dict) -> bytes:
    if letter["payload"] is None:
        return b""
    if letter["payload_encoding"] == "base64":
        return base64.b64decode(letter["payload"])
    return letter["payload"].encode("utf-8")


async def test_no_message_stops_the_worker(broker, pg_url, tmp_path: Path) -> None:
    run = f"fz{uuid.uuid4().hex[:8]}"
    names = {f"topic_{kind}": f"{run}-{kind}" for kind in ("tweets", "dlq", "negative",
                                                           "alerts")}
    broker.create_topics(list(names.values()), 4)
    llm = await LLMServer(mode="override", script=["nested", "huge", "leak"]).start()
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, database_url=pg_url,
        app_id=f"{run}-app", topic_partitions=4, max_batch=64, alert_min_negative=1,
        # The model's own entities alert here (no watchlist), from their first negative tweet.
        alert_scope="all", alert_discovered_min_negative=1, alert_discovered_sensitivity=0.5,
        alert_cooldown_s=60, llm_base_url=llm.base_url, llm_api_key="sk-fuzz-secret",
        llm_timeout_s=3.0, llm_retries=0, **names)
    rng = random.Random(20261207)

    texts = read_shared_tweets(settings.data_dir, "topic")[:600] + EXTREME_VALID
    valid = [TweetIn(id=f"{run}-{i}", text=text, created_at=BASE + timedelta(seconds=i)).to_json()
             for i, text in enumerate(texts)]
    bad = REPRODUCTIONS + _garbage(rng, 1200)
    mixed = [Outgoing(None, raw) for raw in valid + bad]
    rng.shuffle(mixed)
    accepted, rejected = [], []
    for message in mixed:
        try:
            accepted.append(parse_tweet(message.value, settings.max_text_chars).id)
        except InvalidTweet:
            rejected.append(message.value)
    assert len(rejected) >= 1000 and set(accepted) == {f"{run}-{i}" for i in range(len(texts))}
    negative_bad = _negative_garbage(rng, 60)

    worker = WorkerProcess(settings, tmp_path / "worker.log", ["analyze", "alert"]).start()
    try:
        sent = await publish(settings.kafka_bootstrap_servers, settings.topic_tweets, mixed)
        sent += await publish(settings.kafka_bootstrap_servers, settings.topic_negative,
                              [Outgoing(None, raw) for raw in negative_bad])
        assert sent == len(mixed) + len(negative_bad)
        letters = await _read_all(settings.kafka_bootstrap_servers, settings.topic_dlq,
                                  len(rejected) + len(negative_bad), timeout_s=240)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while sum((await _stored_ids(pg_url, f"{run}-")).values()) < len(texts):
            assert worker.alive(), worker.log_tail()
            assert loop.time() < deadline, worker.log_tail()
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # alerts of the last tweets
        assert worker.alive(), f"the worker stopped:\n{worker.log_tail()}"
    finally:
        code = worker.stop()
        await llm.stop()
    assert code == 0, worker.log_tail()

    # Every valid tweet stored exactly once.
    stored = await _stored_ids(pg_url, f"{run}-")
    assert set(stored) == set(accepted) and set(stored.values()) == {1}

    # Every other message is in the DLQ with a reason (a letter may come twice: at-least-once).
    docs = [json.loads(r.value) for r in letters]
    assert all(d["reason"] and "\n" not in d["reason"] for d in docs)
    by_source = {(d["source_topic"], d["source_partition"], d["source_offset"]): d for d in docs}
    from_tweets = [d for d in by_source.values() if d["source_topic"] == settings.topic_tweets]
    from_negative = [d for d in by_source.values()
                     if d["source_topic"] == settings.topic_negative]
    assert len(from_tweets) == len(rejected)
    assert len(from_negative) == len(negative_bad)
    want = Counter(hashlib.sha256(raw).hexdigest() for raw in rejected)
    got = Counter(d.get("payload_sha256") or hashlib.sha256(_payload(d)).hexdigest()
                  for d in from_tweets)
    assert got == want
    reasons = {d["reason"] for d in from_tweets}
    assert any("outside the accepted range" in r for r in reasons)
    assert any("nested too deeply" in r for r in reasons)
    assert any(d.get("payload_truncated") for d in from_tweets)

    # Alerts were written despite the hostile LLM, none with its injected text, and the API
    # key never reached the log.
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            alerts = (await conn.execute(sa.select(Alert.text, Alert.generator).where(
                Alert.tweet_ids.cast(sa.Text).like(f"%{run}-%")))).all()
    finally:
        await engine.dispose()
    assert len(alerts) >= 5 and len(llm.requests) >= 5, "real tweets should raise alerts"
    assert all("OVERRIDE" not in text for text, _ in alerts)
    assert {generator for _, generator in alerts} == {"template"}
    assert "sk-fuzz-secret" not in worker.log_path.read_text()

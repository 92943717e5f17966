"""The alert policy: window, minimum count, negative share, cooldown, idempotent storage.

The pure decision is tested directly; the counting runs against a real PostgreSQL database and
the demo's SQLite store (both migrated with the project's Alembic migrations) because it is a
SQL range query.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stream.alerting import (
    AlertPolicy,
    InvalidNegativeRecord,
    NegativeMention,
    WindowStats,
    alert_exists,
    alert_from_row,
    alert_id_for,
    cooldown_blocker,
    decide,
    insert_alert,
    parse_negative_record,
    recent_alerts,
    window_for,
    window_stats,
    within_cooldown,
)
from stream.storage import Alert, create_engine, store_batch

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
POLICY = AlertPolicy(window_s=300, min_negative=3, min_negative_share=0.5, cooldown_s=900,
                     negative_threshold=0.5)


def stats(negative: int, total: int) -> WindowStats:
    return WindowStats(negative, total, tuple(str(i) for i in range(negative)), ())


# --- pure policy ---------------------------------------------------------------------------


def test_min_count_and_share_decide():
    assert not decide(POLICY, stats(2, 2)).fire
    assert "2 negative mentions < 3" in decide(POLICY, stats(2, 2)).reason
    assert decide(POLICY, stats(3, 6)).fire  # share 0.5 is enough
    assert "share 0.43 < 0.50" in decide(POLICY, stats(3, 7)).reason
    seeds = AlertPolicy(300, 1, 0.0, 0, 0.5)  # one alert per negative mention
    assert decide(seeds, stats(1, 10)).fire


def test_cooldown_is_symmetric_and_zero_disables_it():
    assert within_cooldown(POLICY, T0, T0 + timedelta(seconds=899))
    assert within_cooldown(POLICY, T0, T0 - timedelta(seconds=899))
    assert not within_cooldown(POLICY, T0, T0 + timedelta(seconds=900))
    assert not within_cooldown(AlertPolicy(300, 1, 0.0, 0, 0.5), T0, T0)


def test_window_and_alert_id_are_deterministic():
    start, end = window_for(POLICY, T0)
    assert (start, end) == (T0 - timedelta(minutes=5), T0)
    alert_id = alert_id_for("verizon", start, end)
    assert len(alert_id) == 32 and int(alert_id, 16) >= 0
    # Fixed length whatever the key: a 400-character hashtag once overflowed the column.
    assert len(alert_id_for("verizon" * 60, start, end)) == 32
    assert alert_id_for("verizon", start, end + timedelta(milliseconds=1)) != alert_id
    assert alert_id_for("verizonx", start, end) != alert_id
    assert alert_id_for("verizon", start, end) == alert_id_for("verizon", *window_for(POLICY, T0))


def record(**overrides) -> bytes:
    doc = {"v": 1, "tweet_id": "1", "entity": "Verizon", "entity_key": "verizon",
           "type": "company", "sentiment": "negative", "score": 0.9, "tweet_sentiment": "negative",
           "text": "Verizon is down", "created_at": "2026-11-21T12:00:00+00:00"}
    doc.update(overrides)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def test_parse_negative_record():
    mention = parse_negative_record(record(created_at="2026-11-21T13:00:00+01:00"))
    assert mention.created_at == T0 and mention.created_at.tzinfo is UTC
    assert (mention.entity_key, mention.type, mention.score) == ("verizon", "company", 0.9)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (record(v=2), "version"),
        (record(entity_key=None), "'entity_key' missing"),
        (record(text=""), "'text' missing"),
        (record(score="high"), "'score' is not a number"),
        (record(created_at="yesterday"), "ISO-8601"),
    ],
)
def test_bad_negative_records_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidNegativeRecord, match=reason):
        parse_negative_record(raw)


# --- counting in PostgreSQL ----------------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
async def engine(request):
    """PostgreSQL (production) and SQLite (the demo's store): the same queries on both."""
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    eng = create_engine(url)
    yield eng
    await eng.dispose()


@pytest.fixture
def key() -> str:
    """An entity key of this test's own: the database is shared by the whole test run."""
    return f"verizon{uuid.uuid4().hex[:8]}"


async def add(engine, key: str, tweet_id: str, at: datetime, sentiment: str = "negative",
              p_negative: float = 0.9) -> None:
    tweet_id = f"{key}-{tweet_id}"
    tweet = {"id": tweet_id, "text": f"tweet {tweet_id} about {key}", "created_at": at,
             "ingested_at": at, "author": None, "lang": None, "sentiment": sentiment,
             "p_negative": p_negative, "p_neutral": 0.05, "p_positive": 0.05,
             "model_version": "test"}
    mention = {"tweet_id": tweet_id, "start": 6, "end": 13, "entity": key.title(),
               "entity_key": key, "type": "company", "sentiment": sentiment,
               "score": p_negative if sentiment == "negative" else 0.8,
               "p_negative": p_negative, "created_at": at}
    async with engine.begin() as conn:
        await store_batch(conn, [tweet], [mention])


def mention_at(key: str, tweet_id: str, at: datetime) -> NegativeMention:
    return NegativeMention(f"{key}-{tweet_id}", key.title(), key, "company", 0.9,
                           f"tweet {tweet_id}", at)


async def test_window_counts_all_mentions_in_the_half_open_window(engine, key):
    await add(engine, key, "old", T0 - timedelta(seconds=300))  # exactly at the start: outside
    await add(engine, key, "n1", T0 - timedelta(seconds=299))
    await add(engine, key, "n2", T0 - timedelta(seconds=10))
    await add(engine, key, "weak", T0 - timedelta(seconds=9), p_negative=0.4)  # under threshold
    await add(engine, key, "neu", T0 - timedelta(seconds=8), sentiment="neutral", p_negative=0.1)
    await add(engine, key + "x", "other", T0 - timedelta(seconds=7))
    await add(engine, key, "n3", T0)
    await add(engine, key, "later", T0 + timedelta(seconds=1))  # after the mention: outside
    async with engine.connect() as conn:
        got = await window_stats(conn, POLICY, mention_at(key, "n3", T0))
    assert (got.negative_mentions, got.mentions) == (3, 5)
    assert got.tweet_ids == (f"{key}-n3", f"{key}-n2", f"{key}-n1")  # newest first
    assert got.texts[0] == f"tweet {key}-n3 about {key}"
    assert decide(POLICY, got).fire


async def test_share_below_threshold_does_not_fire(engine, key):
    for i in range(3):
        await add(engine, key, f"n{i}", T0 - timedelta(seconds=i))
    for i in range(4):
        await add(engine, key, f"p{i}", T0 - timedelta(seconds=i), sentiment="positive",
                  p_negative=0.05)
    async with engine.connect() as conn:
        got = await window_stats(conn, POLICY, mention_at(key, "n0", T0))
    assert (got.negative_mentions, got.mentions) == (3, 7)
    assert not decide(POLICY, got).fire


async def test_triggering_mention_counts_even_if_not_stored(engine, key):
    await add(engine, key, "n1", T0 - timedelta(seconds=5))
    async with engine.connect() as conn:
        got = await window_stats(conn, POLICY, mention_at(key, "unseen", T0))
    assert (got.negative_mentions, got.mentions) == (2, 2)
    assert got.tweet_ids == (f"{key}-unseen", f"{key}-n1") and got.texts[0] == "tweet unseen"


def alert_row(key: str, end: datetime) -> dict:
    start = end - timedelta(seconds=300)
    return {"v": 1, "alert_id": alert_id_for(key, start, end), "entity": key.title(),
            "entity_key": key, "type": "company", "window_start": start.isoformat(),
            "window_end": end.isoformat(), "negative_mentions": 3, "mentions": 4,
            "tweet_ids": ["a", "b", "c"], "text": f"Alert: {key} trouble", "generator": "template",
            "model": None, "created_at": end.isoformat(), "watch": key.title(),
            "reason": {"rule": "count", "negative_tweets": 3, "baseline_mean": 0.5},
            "examples": ["a text", "b text"]}


async def test_cooldown_and_idempotent_insert(engine, key):
    first = alert_row(key, T0)
    async with engine.begin() as conn:
        assert await insert_alert(conn, first)
        assert not await insert_alert(conn, first)  # the same alert id: nothing new
    async with engine.connect() as conn:
        assert await alert_exists(conn, first["alert_id"])
        just_inside = T0 + timedelta(seconds=899)
        assert await cooldown_blocker(conn, POLICY, key, just_inside) == first["alert_id"]
        assert await cooldown_blocker(conn, POLICY, key, T0 - timedelta(seconds=899))
        assert await cooldown_blocker(conn, POLICY, key, T0 + timedelta(seconds=900)) is None
        assert await cooldown_blocker(conn, POLICY, key + "x", T0) is None
        no_cooldown = AlertPolicy(300, 1, 0.0, 0, 0.5)
        assert await cooldown_blocker(conn, no_cooldown, key, T0) is None
        table = Alert.__table__
        row = (await conn.execute(
            table.select().where(table.c.alert_id == first["alert_id"]))).one()
    assert alert_from_row(row) == first  # the wire record round-trips through the table


async def test_recent_alerts_are_the_last_ones_oldest_first(sqlite_url, key):
    """On a store of its own: "the last N alerts" is about the whole table."""
    engine = create_engine(sqlite_url)
    rows = [alert_row(key + k, T0 + timedelta(seconds=i)) for i, k in enumerate("abc")]
    try:
        async with engine.begin() as conn:
            for row in reversed(rows):
                await insert_alert(conn, row)
        async with engine.connect() as conn:
            assert await recent_alerts(conn, 2) == rows[1:]
            assert await recent_alerts(conn, 10) == rows
    finally:
        await engine.dispose()

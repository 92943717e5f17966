"""The alert policy's bookkeeping: window, cooldown, alert ids, the negative-mention record and
idempotent storage of alert records.

The cooldown and the storage run against a real PostgreSQL database and the demo's SQLite
store (both migrated with the project's Alembic migrations). The spike rules that decide
whether a window fires are tested in test_spikes.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stream.alerting import (
    AlertPolicy,
    alert_exists,
    alert_from_row,
    alert_id_for,
    cooldown_blocker,
    insert_alert,
    recent_alerts,
    window_for,
    within_cooldown,
)
from stream.records import AlertRecord, InvalidNegativeRecord, parse_negative_record
from stream.storage import Alert, create_engine

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
POLICY = AlertPolicy(window_s=300, cooldown_s=900)
NO_COOLDOWN = AlertPolicy(window_s=300, cooldown_s=0)


def test_cooldown_is_symmetric_and_zero_disables_it():
    assert within_cooldown(POLICY, T0, T0 + timedelta(seconds=899))
    assert within_cooldown(POLICY, T0, T0 - timedelta(seconds=899))
    assert not within_cooldown(POLICY, T0, T0 + timedelta(seconds=900))
    assert not within_cooldown(NO_COOLDOWN, T0, T0)


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
    assert (mention.watch, mention.type_source) == (None, "model")
    # The record the analyze agent writes reads back as the same record.
    assert parse_negative_record(mention.to_json()) == mention
    assert json.loads(mention.to_json())["created_at"] == "2026-11-21T12:00:00+00:00"
    watched = parse_negative_record(record(watch="Verizon", type=""))
    assert (watched.watch, watched.type_source, watched.type) == ("Verizon", "model", "")
    doc = json.loads(record())
    doc.update(watch="", type_source=None)  # null: no source; "": no watched entity
    assert parse_negative_record(json.dumps(doc).encode()).model_dump(
        include={"watch", "type_source"}) == {"watch": None, "type_source": ""}


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
        (record(type=None), "'type' missing"),
        (record(type=7), "'type' missing or not a string"),
        (record(watch=["x"]), "'watch' is not a string"),
        (record(entity="x" * 2001), "'entity' is longer than 2000 characters"),
        (record(score=True), "'score' is not a number"),
        (record(score=1.5), "'score' is not a number between 0 and 1"),
    ],
)
def test_bad_negative_records_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidNegativeRecord, match=reason):
        parse_negative_record(raw)


# --- stored alerts ---------------------------------------------------------------------------


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


def alert_row(key: str, end: datetime) -> AlertRecord:
    start = end - timedelta(seconds=300)
    return AlertRecord(alert_id=alert_id_for(key, start, end), entity=key.title(),
                       entity_key=key, type="company", window_start=start, window_end=end,
                       negative_mentions=3, mentions=4, tweet_ids=("a", "b", "c"),
                       text=f"Alert: {key} trouble", generator="template", model=None,
                       created_at=end, watch=key.title(),
                       reason={"rule": "count", "negative_tweets": 3, "baseline_mean": 0.5},
                       examples=("a text", "b text"))


async def test_cooldown_and_idempotent_insert(engine, key):
    first = alert_row(key, T0)
    async with engine.begin() as conn:
        assert await insert_alert(conn, first)
        assert not await insert_alert(conn, first)  # the same alert id: nothing new
    async with engine.connect() as conn:
        assert await alert_exists(conn, first.alert_id)
        just_inside = T0 + timedelta(seconds=899)
        assert await cooldown_blocker(conn, POLICY, key, just_inside) == first.alert_id
        assert await cooldown_blocker(conn, POLICY, key, T0 - timedelta(seconds=899))
        assert await cooldown_blocker(conn, POLICY, key, T0 + timedelta(seconds=900)) is None
        assert await cooldown_blocker(conn, POLICY, key + "x", T0) is None
        assert await cooldown_blocker(conn, NO_COOLDOWN, key, T0) is None
        table = Alert.__table__
        row = (await conn.execute(
            table.select().where(table.c.alert_id == first.alert_id))).one()
    assert alert_from_row(row) == first  # the wire record round-trips through the table
    # ... and through the alerts topic's JSON, times written as before (isoformat).
    wire = json.loads(first.to_json())
    assert wire["window_end"] == T0.isoformat() and wire["tweet_ids"] == ["a", "b", "c"]
    assert AlertRecord.model_validate_json(first.to_json()) == first


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

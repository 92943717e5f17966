"""The alert policy per entity: when a run of negative mentions deserves an alert.

The alert agent decides with the spike rules of ``stream.spikes`` (each entity against its
own baseline) and this module's cooldown, ids, records and storage; :func:`decide` and
:func:`window_stats` below are the plain per-window count rule those spike rules replaced,
kept as the reference the policy tests compare against.

Window: sliding, event time. A negative mention of entity key K at time t (the tweet's
``created_at``, or its ingest time) looks at the window ``(t - window_s, t]``; K fires when, in
that window,

- at least ``alert_min_negative`` distinct tweets mention K negatively (1 = every negative
  mention fires, as the seed notebooks did), and
- those are at least ``alert_min_negative_share`` of ALL tweets mentioning K, and
- no earlier alert of K has its window end within ``alert_cooldown_s`` of t (the cooldown;
  0 disables it).

Counting all mentions, not only negatives, is why the counts come from the ``entity_mentions``
table the analyze agent writes (one indexed range query on ``(entity_key, created_at)``): the
negative-entity topic carries negatives only. The analyze agent publishes a tweet's negative
mentions inside the transaction that stores its rows and commits once the broker has
acknowledged them, so a mention can arrive a moment before its rows are visible here: the
triggering mention therefore always counts (see :func:`window_stats`).

All state lives in Postgres (the ``alerts`` table is the cooldown memory and the dedup index),
so a restarted worker decides exactly as the old one would have. ``alert_id`` is deterministic,
a hash of the entity key and the window bounds: a redelivered mention maps to the same id,
which is looked up before any LLM call and inserted with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stream.records import (
    MAX_ID_CHARS,
    WIRE_VERSION,
    load_json,
    parse_created_at,
    short_repr,
)
from stream.settings import Settings
from stream.storage import Alert, EntityMention, Tweet, insert_ignore

MAX_TWEET_IDS = 50  # tweet ids carried per alert (the counts are exact, the list is capped)
PROMPT_TWEETS = 5  # negative tweets (most recent first) the alert text is written from


class InvalidNegativeRecord(ValueError):
    """A message on the negative-entity topic that is not a valid record; says why."""


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The alert policy's knobs (see the module docstring)."""

    window_s: int
    min_negative: int
    min_negative_share: float
    cooldown_s: int
    negative_threshold: float

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(
            window_s=settings.alert_window_s,
            min_negative=settings.alert_min_negative,
            min_negative_share=settings.alert_min_negative_share,
            cooldown_s=settings.alert_cooldown_s,
            negative_threshold=settings.negative_threshold,
        )


@dataclass(frozen=True, slots=True)
class NegativeMention:
    """One record from the negative-entity topic."""

    tweet_id: str
    entity: str
    entity_key: str
    type: str
    score: float
    text: str
    created_at: datetime
    watch: str | None = None  # the watched entity's name; None: discovered by the model
    type_source: str = "model"  # where ``type`` came from: "model", "watchlist" or ""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """An entity's mentions in one window: counts, negative tweet ids and texts (newest first)."""

    negative_mentions: int
    mentions: int
    tweet_ids: tuple[str, ...]
    texts: tuple[str, ...]

    @property
    def negative_share(self) -> float:
        return self.negative_mentions / self.mentions if self.mentions else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    fire: bool
    reason: str


_NEGATIVE_FIELD_CHARS = {"tweet_id": MAX_ID_CHARS, "entity": 2000, "entity_key": 2000,
                         "text": 20_000, "created_at": 64}
# Optional string fields: a watched entity without a type (and no model span) has type "".
_OPTIONAL_FIELD_CHARS = {"type": 32, "watch": 2000, "type_source": 16}


def parse_negative_record(raw: bytes | None) -> NegativeMention:
    """Validate one negative-entity message; raises :class:`InvalidNegativeRecord`."""
    if not raw:
        raise InvalidNegativeRecord("empty message")
    try:
        doc = load_json(raw)
    except ValueError as exc:
        raise InvalidNegativeRecord(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidNegativeRecord(f"expected a JSON object, got {type(doc).__name__}")
    version = doc.get("v", WIRE_VERSION)
    if type(version) is not int or version != WIRE_VERSION:
        raise InvalidNegativeRecord(f"unsupported record version {short_repr(version)}")
    fields: dict[str, str] = {}
    for name, limit in _NEGATIVE_FIELD_CHARS.items():
        value = doc.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidNegativeRecord(f"field {name!r} missing or not a non-empty string")
        if len(value) > limit:
            raise InvalidNegativeRecord(f"field {name!r} is longer than {limit} characters")
        fields[name] = value
    optional: dict[str, str | None] = {}
    for name, default in (("type", None), ("watch", None), ("type_source", "model")):
        value = doc.get(name, default)
        if value is not None and not isinstance(value, str):
            raise InvalidNegativeRecord(f"field {name!r} is not a string")
        if value is not None and len(value) > _OPTIONAL_FIELD_CHARS[name]:
            raise InvalidNegativeRecord(f"field {name!r} is longer than "
                                        f"{_OPTIONAL_FIELD_CHARS[name]} characters")
        optional[name] = value
    if optional["type"] is None:
        raise InvalidNegativeRecord("field 'type' missing or not a string")
    score = doc.get("score", 1.0)
    if isinstance(score, bool) or not isinstance(score, int | float) or not (
            0.0 <= score <= 1.0):
        raise InvalidNegativeRecord("field 'score' is not a number between 0 and 1")
    try:
        created_at = parse_created_at(fields["created_at"])
    except ValueError as exc:
        raise InvalidNegativeRecord(str(exc)) from None
    assert created_at is not None
    return NegativeMention(
        tweet_id=fields["tweet_id"],
        entity=fields["entity"],
        entity_key=fields["entity_key"],
        type=optional["type"] or "",
        score=float(score),
        text=fields["text"],
        created_at=created_at,
        watch=optional["watch"] or None,
        type_source=optional["type_source"] or "",
    )


def window_for(policy: AlertPolicy, at: datetime) -> tuple[datetime, datetime]:
    """The window ``(at - window_s, at]`` a mention at ``at`` is judged in."""
    return at - timedelta(seconds=policy.window_s), at


def alert_id_for(entity_key: str, window_start: datetime, window_end: datetime) -> str:
    """Deterministic alert key of entity key + window (millisecond epoch bounds): 32 hex
    characters whatever the entity's surface form, so any key fits the ``alerts`` table."""
    start_ms = round(window_start.timestamp() * 1000)
    end_ms = round(window_end.timestamp() * 1000)
    return hashlib.sha256(f"{entity_key}\n{start_ms}-{end_ms}".encode()).hexdigest()[:32]


def decide(policy: AlertPolicy, stats: WindowStats) -> Decision:
    """Pure policy on the window's counts: fire or not, and why (logged and tested). The
    cooldown is checked before the counts (:func:`cooldown_blocker`), since it is cheaper."""
    if stats.negative_mentions < policy.min_negative:
        return Decision(False, f"{stats.negative_mentions} negative mentions < "
                               f"{policy.min_negative} needed")
    if stats.negative_share < policy.min_negative_share:
        return Decision(False, f"negative share {stats.negative_share:.2f} < "
                               f"{policy.min_negative_share:.2f}")
    return Decision(True, f"{stats.negative_mentions} of {stats.mentions} mentions negative "
                          f"(share {stats.negative_share:.2f}) in {policy.window_s} s")


def within_cooldown(policy: AlertPolicy, alert_end: datetime, at: datetime) -> bool:
    """Does an alert whose window ended at ``alert_end`` silence a mention at ``at``?"""
    return abs(alert_end - at) < timedelta(seconds=policy.cooldown_s)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; everything here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def window_stats(conn: AsyncConnection, policy: AlertPolicy,
                       mention: NegativeMention) -> WindowStats:
    """Count the entity's mentions in the mention's window, and list its negative tweets.

    The triggering mention always counts, even if its row were not visible (yet) to this
    connection.
    """
    start, end = window_for(policy, mention.created_at)
    em = EntityMention.__table__
    in_window = sa.and_(em.c.entity_key == mention.entity_key, em.c.created_at > start,
                        em.c.created_at <= end)
    is_negative = sa.and_(em.c.sentiment == "negative",
                          em.c.p_negative >= policy.negative_threshold)
    # Distinct tweets, not mention rows: a tweet naming an entity ten times is one voice.
    tweets = sa.distinct(em.c.tweet_id)
    counts = (await conn.execute(
        sa.select(sa.func.count(tweets), sa.func.count(tweets).filter(is_negative))
        .where(in_window)
    )).one()
    total, negatives = int(counts[0]), int(counts[1])
    rows = (await conn.execute(
        sa.select(em.c.tweet_id, Tweet.__table__.c.text)
        .join(Tweet.__table__, Tweet.__table__.c.id == em.c.tweet_id)
        .where(in_window, is_negative)
        .order_by(em.c.created_at.desc(), em.c.tweet_id)
        .limit(MAX_TWEET_IDS)
    )).all()
    ids = list(dict.fromkeys(row[0] for row in rows))
    texts = {row[0]: row[1] for row in rows}
    if mention.tweet_id not in texts:
        seen = await conn.scalar(sa.select(sa.func.count()).where(
            in_window, em.c.tweet_id == mention.tweet_id))
        if not seen:
            total, negatives = total + 1, negatives + 1
        ids.insert(0, mention.tweet_id)
        texts[mention.tweet_id] = mention.text
    ids = ids[:MAX_TWEET_IDS]
    return WindowStats(negative_mentions=negatives, mentions=max(total, negatives),
                       tweet_ids=tuple(ids), texts=tuple(texts[i] for i in ids[:PROMPT_TWEETS]))


async def alert_exists(conn: AsyncConnection, alert_id: str) -> bool:
    table = Alert.__table__
    return await conn.scalar(sa.select(table.c.alert_id).where(table.c.alert_id == alert_id)) \
        is not None


async def cooldown_blocker(conn: AsyncConnection, policy: AlertPolicy, entity_key: str,
                           at: datetime) -> str | None:
    """Id of an alert of this entity whose window ends within the cooldown of ``at``, if any."""
    if policy.cooldown_s <= 0:
        return None
    table = Alert.__table__
    cooldown = timedelta(seconds=policy.cooldown_s)
    return await conn.scalar(
        sa.select(table.c.alert_id)
        .where(table.c.entity_key == entity_key, table.c.window_end > at - cooldown,
               table.c.window_end < at + cooldown)
        .order_by(table.c.window_end.desc())
        .limit(1)
    )


async def insert_alert(conn: AsyncConnection, alert: dict[str, Any]) -> bool:
    """Store an alert (wire record) idempotently; True when this call stored it."""
    row = {
        "alert_id": alert["alert_id"],
        "entity_key": alert["entity_key"],
        "entity": alert["entity"],
        "type": alert["type"],
        "window_start": datetime.fromisoformat(alert["window_start"]),
        "window_end": datetime.fromisoformat(alert["window_end"]),
        "negative_mentions": alert["negative_mentions"],
        "mentions": alert["mentions"],
        "tweet_ids": list(alert["tweet_ids"]),
        "text": alert["text"],
        "generator": alert["generator"],
        "model": alert["model"],
        "created_at": datetime.fromisoformat(alert["created_at"]),
        "watch": alert.get("watch"),
        "reason": alert.get("reason"),
        "examples": alert.get("examples"),
    }
    table = Alert.__table__
    return bool(await insert_ignore(conn, table, [row], returning=table.c.alert_id))


def alert_from_row(row: Any) -> dict[str, Any]:
    """The wire record (``"v": 1``) of a stored alert row."""
    return {
        "v": WIRE_VERSION,
        "alert_id": row.alert_id,
        "entity": row.entity,
        "entity_key": row.entity_key,
        "type": row.type,
        "window_start": _aware(row.window_start).isoformat(),
        "window_end": _aware(row.window_end).isoformat(),
        "negative_mentions": row.negative_mentions,
        "mentions": row.mentions,
        "tweet_ids": list(row.tweet_ids),
        "text": row.text,
        "generator": row.generator,
        "model": row.model,
        "created_at": _aware(row.created_at).isoformat(),
        "watch": row.watch,
        "reason": row.reason,
        "examples": row.examples,
    }


async def recent_alerts(conn: AsyncConnection, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` stored alerts, oldest first (creation order)."""
    table = Alert.__table__
    rows = (await conn.execute(
        sa.select(table).order_by(table.c.created_at.desc(), table.c.alert_id.desc())
        .limit(limit)
    )).all()
    return [alert_from_row(row) for row in reversed(rows)]

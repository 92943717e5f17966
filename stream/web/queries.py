"""The read queries behind the HTTP API and the dashboard (PostgreSQL or SQLite).

Every function takes an open connection and an explicit ``now`` so that a test can pin the
clock; none writes. Time buckets are computed in SQL (``date_trunc`` on PostgreSQL,
``strftime`` on SQLite), so a week of a busy entity's mentions is a few hundred rows, not
every mention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stream.alerting import alert_from_row
from stream.storage import Alert, EntityMention, Tweet, WatchedEntityRow

Bucket = Literal["minute", "hour", "day"]
Sentiment = Literal["negative", "neutral", "positive"]

_SQLITE_BUCKET = {
    "minute": "%Y-%m-%d %H:%M:00",
    "hour": "%Y-%m-%d %H:00:00",
    "day": "%Y-%m-%d 00:00:00",
}
_mentions = EntityMention.__table__
_tweets = Tweet.__table__
_alerts = Alert.__table__
_watched = WatchedEntityRow.__table__


def aware(value: datetime | str) -> datetime:
    """A UTC-aware datetime from what the drivers return (SQLite drops the zone and returns
    strings for computed columns)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bucket_expr(conn: AsyncConnection, bucket: Bucket, column: Any) -> Any:
    """The start of ``column``'s time bucket, in UTC."""
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc(bucket, sa.func.timezone("UTC", column))
    return sa.func.strftime(_SQLITE_BUCKET[bucket], column)


@dataclass(frozen=True, slots=True)
class EntitySummary:
    """An entity's mentions in a period, against the period before it."""

    entity_key: str
    entity: str
    type: str
    mentions: int
    negative: int
    previous_mentions: int
    previous_negative: int
    alerts: int
    watched: bool
    first_seen: datetime
    last_seen: datetime

    def as_json(self) -> dict[str, Any]:
        share = self.negative / self.mentions if self.mentions else 0.0
        prev_share = (self.previous_negative / self.previous_mentions
                      if self.previous_mentions else None)
        return {
            "entity_key": self.entity_key,
            "entity": self.entity,
            "type": self.type,
            "mentions": self.mentions,
            "negative": self.negative,
            "negative_share": round(share, 4),
            "previous_mentions": self.previous_mentions,
            "previous_negative_share": None if prev_share is None else round(prev_share, 4),
            "mentions_change": (round((self.mentions - self.previous_mentions)
                                      / self.previous_mentions, 4)
                                if self.previous_mentions else None),
            "negative_share_change": (None if prev_share is None
                                      else round(share - prev_share, 4)),
            "alerts": self.alerts,
            "watched": self.watched,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


async def _display_names(conn: AsyncConnection, keys: Sequence[str],
                         since: datetime) -> dict[str, tuple[str, str]]:
    """The most common spelling (and type) of each key since ``since``."""
    if not keys:
        return {}
    count = sa.func.count()
    rows = (await conn.execute(
        sa.select(_mentions.c.entity_key, _mentions.c.entity, _mentions.c.type, count)
        .where(_mentions.c.entity_key.in_(keys), _mentions.c.created_at >= since)
        .group_by(_mentions.c.entity_key, _mentions.c.entity, _mentions.c.type)
    )).all()
    best: dict[str, tuple[int, str, str]] = {}
    for key, surface, kind, n in rows:
        current = best.get(key)
        # Most mentions first, then the alphabetically first spelling: stable across calls.
        if current is None or (n, current[1]) > (current[0], surface):
            best[key] = (int(n), surface, kind)
    return {key: (surface, kind) for key, (_, surface, kind) in best.items()}


async def entity_summaries(conn: AsyncConnection, hours: int, limit: int,
                           now: datetime) -> list[EntitySummary]:
    """The entities mentioned in the last ``hours`` hours, watched ones (on the watchlist)
    first, then most-mentioned first, each with its counts in the ``hours`` before that and
    the alerts that fired for it in the period."""
    start = now - timedelta(hours=hours)
    previous_start = start - timedelta(hours=hours)
    c = _mentions.c
    current = c.created_at >= start
    negative = c.sentiment == "negative"
    mentions = sa.func.sum(sa.case((current, 1), else_=0))
    watched = (_watched.c.key.isnot(None)).label("watched")
    query = (
        sa.select(
            c.entity_key,
            watched,
            mentions.label("mentions"),
            sa.func.sum(sa.case((current & negative, 1), else_=0)).label("negative"),
            sa.func.sum(sa.case((current, 0), else_=1)).label("previous_mentions"),
            sa.func.sum(sa.case((~current & negative, 1), else_=0)).label("previous_negative"),
            sa.func.min(sa.case((current, c.created_at), else_=None)).label("first_seen"),
            sa.func.max(sa.case((current, c.created_at), else_=None)).label("last_seen"),
        )
        .outerjoin(_watched, _watched.c.key == c.entity_key)
        .where(c.created_at >= previous_start, c.created_at <= now, c.entity_key != "")
        .group_by(c.entity_key, _watched.c.key)
        .having(mentions > 0)
        .order_by(watched.desc(), mentions.desc(), c.entity_key)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    keys = [row.entity_key for row in rows]
    names = await _display_names(conn, keys, start)
    alert_counts: dict[str, int] = {}
    if keys:
        alert_counts = {key: int(n) for key, n in (await conn.execute(
            sa.select(_alerts.c.entity_key, sa.func.count())
            .where(_alerts.c.entity_key.in_(keys), _alerts.c.window_end >= start)
            .group_by(_alerts.c.entity_key))).all()}
    return [
        EntitySummary(
            entity_key=row.entity_key,
            entity=names.get(row.entity_key, (row.entity_key, ""))[0],
            type=names.get(row.entity_key, ("", "other"))[1],
            mentions=int(row.mentions),
            negative=int(row.negative),
            previous_mentions=int(row.previous_mentions),
            previous_negative=int(row.previous_negative),
            alerts=alert_counts.get(row.entity_key, 0),
            watched=bool(row.watched),
            first_seen=aware(row.first_seen),
            last_seen=aware(row.last_seen),
        )
        for row in rows
    ]


async def entity_known(conn: AsyncConnection, key: str) -> bool:
    """Whether the entity key has any stored mention."""
    found = await conn.scalar(sa.select(_mentions.c.tweet_id)
                              .where(_mentions.c.entity_key == key).limit(1))
    return found is not None


async def entity_history(conn: AsyncConnection, key: str, bucket: Bucket, days: int,
                         now: datetime) -> dict[str, Any]:
    """Mentions of one entity per time bucket and sentiment over the last ``days`` days
    (buckets without mentions are left out), with the alerts that fired in that span."""
    since = now - timedelta(days=days)
    c = _mentions.c
    start = _bucket_expr(conn, bucket, c.created_at).label("bucket")
    rows = (await conn.execute(
        sa.select(start, c.sentiment, sa.func.count())
        .where(c.entity_key == key, c.created_at >= since, c.created_at <= now)
        .group_by(start, c.sentiment)
        .order_by(start)
    )).all()
    points: dict[datetime, dict[str, int]] = {}
    for at, sentiment, n in rows:
        counts = points.setdefault(aware(at), {"negative": 0, "neutral": 0, "positive": 0})
        counts[sentiment] = counts.get(sentiment, 0) + int(n)
    alerts = (await conn.execute(
        sa.select(_alerts)
        .where(_alerts.c.entity_key == key, _alerts.c.window_end >= since)
        .order_by(_alerts.c.window_start, _alerts.c.alert_id)
    )).all()
    names = await _display_names(conn, [key], since)
    out_points = []
    for at, counts in sorted(points.items()):
        total = sum(counts.values())
        out_points.append({
            "start": at.isoformat(),
            "mentions": total,
            **counts,
            "negative_share": round(counts["negative"] / total, 4) if total else 0.0,
        })
    return {
        "entity_key": key,
        "entity": names.get(key, (key, ""))[0],
        "bucket": bucket,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "points": out_points,
        "alerts": [_alert_json(row) for row in alerts],
    }


async def entity_mentions(conn: AsyncConnection, key: str, sentiment: Sentiment | None,
                          limit: int, since: datetime | None,
                          until: datetime | None) -> list[dict[str, Any]]:
    """The mentions of one entity with their tweets, newest first."""
    c = _mentions.c
    query = (
        sa.select(c.tweet_id, c.entity, c.type, c.sentiment, c.score, c.created_at,
                  _tweets.c.text, _tweets.c.sentiment.label("tweet_sentiment"))
        .join(_tweets, _tweets.c.id == c.tweet_id)
        .where(c.entity_key == key)
        .order_by(c.created_at.desc(), c.tweet_id, c.start)
        .limit(limit)
    )
    if sentiment is not None:
        query = query.where(c.sentiment == sentiment)
    if since is not None:
        query = query.where(c.created_at >= since)
    if until is not None:
        query = query.where(c.created_at < until)
    return [{
        "tweet_id": row.tweet_id,
        "entity": row.entity,
        "type": row.type,
        "sentiment": row.sentiment,
        "score": round(row.score, 4),
        "created_at": aware(row.created_at).isoformat(),
        "text": row.text,
        "tweet_sentiment": row.tweet_sentiment,
    } for row in (await conn.execute(query)).all()]


def _alert_json(row: Any) -> dict[str, Any]:
    """A stored alert as the API returns it: its wire record (``stream.records.AlertRecord``)."""
    return alert_from_row(row).model_dump(mode="json")


async def alerts(conn: AsyncConnection, since: datetime | None, key: str | None,
                 limit: int) -> list[dict[str, Any]]:
    """Stored alerts (wire records), newest first."""
    query = (sa.select(_alerts).order_by(_alerts.c.created_at.desc(), _alerts.c.alert_id)
             .limit(limit))
    if since is not None:
        query = query.where(_alerts.c.created_at >= since)
    if key is not None:
        query = query.where(_alerts.c.entity_key == key)
    return [_alert_json(row) for row in (await conn.execute(query)).all()]


async def alert_with_tweets(conn: AsyncConnection, alert_id: str) -> dict[str, Any] | None:
    """One alert with the tweets behind it (the window's negative mentions)."""
    row = (await conn.execute(sa.select(_alerts).where(_alerts.c.alert_id == alert_id))).first()
    if row is None:
        return None
    alert = _alert_json(row)
    tweets = (await conn.execute(
        sa.select(_tweets.c.id, _tweets.c.text, _tweets.c.created_at, _tweets.c.sentiment)
        .where(_tweets.c.id.in_(alert["tweet_ids"]))
        .order_by(_tweets.c.created_at, _tweets.c.id)
    )).all()
    alert["tweets"] = [{"tweet_id": t.id, "text": t.text,
                        "created_at": aware(t.created_at).isoformat(),
                        "tweet_sentiment": t.sentiment} for t in tweets]
    return alert

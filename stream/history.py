"""Reputation history: daily mention counts per entity and sentiment, read from the
``entity_daily_history`` view (the same query users can run in plain SQL)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stream.storage import EntityMention
from stream.storage import entity_daily_history as view
from stream.textproc import entity_key


@dataclass(frozen=True, slots=True)
class DayCount:
    """One entity's mentions on one day, split by the sentiment toward it."""

    day: date
    entity: str
    negative: int
    neutral: int
    positive: int

    @property
    def mentions(self) -> int:
        return self.negative + self.neutral + self.positive

    @property
    def negative_share(self) -> float:
        return self.negative / self.mentions if self.mentions else 0.0

    def as_json(self) -> dict[str, Any]:
        """The ``tweetwatch history --json`` form of the day."""
        out = asdict(self)
        out["day"] = self.day.isoformat()
        out["mentions"] = self.mentions
        out["negative_share"] = round(self.negative_share, 4)
        return out


@dataclass(frozen=True, slots=True)
class EntityTotal:
    """An entity's mentions (and negative ones) over a period."""

    entity_key: str
    entity: str
    mentions: int
    negative: int


def _since(days: int, today: date | None) -> date:
    return (today or datetime.now(UTC).date()) - timedelta(days=days - 1)


async def display_name(engine: AsyncEngine, key: str) -> str | None:
    """The most common spelling of an entity key in the mentions (``Obama`` rather than
    whichever of ``OBAMA``/``obama``/``Obama`` sorts first)."""
    count = sa.func.count()
    query = (sa.select(EntityMention.entity).where(EntityMention.entity_key == key)
             .group_by(EntityMention.entity).order_by(count.desc(), EntityMention.entity)
             .limit(1))
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar()


async def entity_history(engine: AsyncEngine, entity: str, days: int,
                         today: date | None = None, name: str | None = None) -> list[DayCount]:
    """Daily counts for ``entity`` (any spelling: ``@Apple``, ``#apple`` and ``Apple`` are the
    same key) over the last ``days`` days including today, oldest first; days without
    mentions are left out. ``name``: how to call it (a watched entity's name), else the most
    common spelling in the mentions."""
    key = entity_key(entity)
    query = (
        sa.select(view.c.day, view.c.sentiment, view.c.mentions, view.c.entity)
        .where(view.c.entity_key == key, view.c.day >= _since(days, today))
        .order_by(view.c.day)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    per_day: dict[date, dict[str, Any]] = {}
    for day, sentiment, mentions, surface in rows:
        entry = per_day.setdefault(day, {"entity": surface, "negative": 0, "neutral": 0,
                                         "positive": 0})
        entry[sentiment] = entry.get(sentiment, 0) + int(mentions)
    name = name or (await display_name(engine, key) if per_day else None)
    return [DayCount(day=day, entity=name or e["entity"], negative=e["negative"],
                     neutral=e["neutral"], positive=e["positive"])
            for day, e in sorted(per_day.items())]


async def top_entities(engine: AsyncEngine, limit: int, days: int = 30,
                       today: date | None = None) -> list[EntityTotal]:
    """The most-mentioned entities of the last ``days`` days."""
    negative = sa.func.sum(sa.case((view.c.sentiment == "negative", view.c.mentions), else_=0))
    total = sa.func.sum(view.c.mentions)
    query = (
        sa.select(view.c.entity_key, sa.func.min(view.c.entity), total, negative)
        .where(view.c.day >= _since(days, today))
        .group_by(view.c.entity_key)
        .order_by(total.desc(), view.c.entity_key)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [EntityTotal(key, await display_name(engine, key) or surface, int(n), int(neg or 0))
            for key, surface, n, neg in rows]


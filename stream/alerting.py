"""The alert policy's bookkeeping per entity: window, cooldown, alert ids and stored alerts.

The alert agent decides with the spike rules of ``stream.spikes`` (each entity against its own
baseline); this module holds what surrounds that decision:

- the window: sliding, event time. A negative mention of entity key K at time t (the tweet's
  ``created_at``, or its ingest time) is judged in the window ``(t - window_s, t]``;
- the cooldown: no alert of K whose window ends within ``alert_cooldown_s`` of t (0 disables
  it); this worker's memory of the alerts it stored answers first, the ``alerts`` table next;
- the alert id: deterministic, a hash of the entity key and the window bounds, so a
  redelivered mention maps to the same id, which is looked up before any LLM call and
  inserted with ``ON CONFLICT DO NOTHING``;
- the ``alerts`` table: an :class:`~stream.records.AlertRecord` is stored as one row, field
  for field, and read back as the same record.

All state lives in the database (the ``alerts`` table is the cooldown memory and the dedup
index), so a restarted worker decides exactly as the old one would have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stream.records import AlertRecord
from stream.settings import Settings
from stream.storage import Alert, insert_ignore


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """The window and the cooldown (see the module docstring); the thresholds that decide
    whether a window fires are the spike rules' (``stream.spikes.SpikeThresholds``)."""

    window_s: int
    cooldown_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(window_s=settings.alert_window_s, cooldown_s=settings.alert_cooldown_s)


def window_for(policy: AlertPolicy, at: datetime) -> tuple[datetime, datetime]:
    """The window ``(at - window_s, at]`` a mention at ``at`` is judged in."""
    return at - timedelta(seconds=policy.window_s), at


def alert_id_for(entity_key: str, window_start: datetime, window_end: datetime) -> str:
    """Deterministic alert key of entity key + window (millisecond epoch bounds): 32 hex
    characters whatever the entity's surface form, so any key fits the ``alerts`` table."""
    start_ms = round(window_start.timestamp() * 1000)
    end_ms = round(window_end.timestamp() * 1000)
    return hashlib.sha256(f"{entity_key}\n{start_ms}-{end_ms}".encode()).hexdigest()[:32]


def within_cooldown(policy: AlertPolicy, alert_end: datetime, at: datetime) -> bool:
    """Does an alert whose window ended at ``alert_end`` silence a mention at ``at``?"""
    return abs(alert_end - at) < timedelta(seconds=policy.cooldown_s)


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


async def insert_alert(conn: AsyncConnection, alert: AlertRecord) -> bool:
    """Store an alert idempotently; True when this call stored it."""
    table = Alert.__table__
    return bool(await insert_ignore(conn, table, [alert.row()], returning=table.c.alert_id))


def alert_from_row(row: Any) -> AlertRecord:
    """The record of a stored alert row."""
    return AlertRecord.from_row(row)


async def recent_alerts(conn: AsyncConnection, limit: int) -> list[AlertRecord]:
    """The last ``limit`` stored alerts, oldest first (creation order)."""
    table = Alert.__table__
    rows = (await conn.execute(
        sa.select(table).order_by(table.c.created_at.desc(), table.c.alert_id.desc())
        .limit(limit)
    )).all()
    return [alert_from_row(row) for row in reversed(rows)]

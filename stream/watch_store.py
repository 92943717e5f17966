"""The watchlist in the database, and how running workers follow its changes.

Every change (add, remove, import) runs in one transaction that also bumps the single
``watchlist_version`` row. A worker keeps a :class:`WatchlistFollower`: at most every
``watchlist_poll_s`` seconds it reads that one integer, and only when it changed does it load
the entities and build a new matcher (in a thread, off the event loop). So ``tweetwatch watch
add`` is seen by every worker within a poll interval, without a restart, and an idle watchlist
costs one primary-key read per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stream.matcher import WatchMatcher
from stream.storage import WatchedEntityRow, WatchlistVersion
from stream.textproc import entity_key
from stream.watchlist import WatchedEntity

log = logging.getLogger(__name__)

_ENTITIES = WatchedEntityRow.__table__
_VERSION = WatchlistVersion.__table__


def _entity(row: sa.Row) -> WatchedEntity:
    return WatchedEntity(name=row.name, type=row.type, aliases=tuple(row.aliases or ()),
                         exclude=tuple(row.exclude or ()))


async def watchlist_version(conn: AsyncConnection) -> int:
    """The current watchlist version (0 before any change)."""
    value = await conn.scalar(sa.select(_VERSION.c.version).where(_VERSION.c.id == 1))
    return int(value or 0)


async def load_watchlist(conn: AsyncConnection) -> tuple[int, list[WatchedEntity]]:
    """The version and the entities (by name), read in one transaction."""
    version = await watchlist_version(conn)
    rows = (await conn.execute(sa.select(_ENTITIES).order_by(_ENTITIES.c.name))).all()
    return version, [_entity(row) for row in rows]


async def _bump(conn: AsyncConnection, now: datetime) -> None:
    await conn.execute(sa.update(_VERSION).where(_VERSION.c.id == 1)
                       .values(version=_VERSION.c.version + 1, updated_at=now))


async def save_entities(conn: AsyncConnection, entities: Sequence[WatchedEntity],
                        replace_all: bool = False) -> int:
    """Insert or replace ``entities`` (by key); with ``replace_all`` the watchlist becomes
    exactly ``entities``. Returns how many entities were written. Call inside a transaction."""
    now = datetime.now(UTC)
    if replace_all:
        await conn.execute(sa.delete(_ENTITIES))
    elif entities:
        await conn.execute(sa.delete(_ENTITIES).where(
            _ENTITIES.c.key.in_([e.key for e in entities])))
    if entities:
        await conn.execute(sa.insert(_ENTITIES), [
            {"key": e.key, "name": e.name, "type": e.type, "aliases": list(e.aliases),
             "exclude": list(e.exclude), "updated_at": now} for e in entities])
    await _bump(conn, now)
    return len(entities)


async def remove_entity(conn: AsyncConnection, name: str) -> str | None:
    """Remove the entity named ``name`` (any spelling of its key); returns its stored name,
    or None when there is no such entity. Call inside a transaction."""
    key = entity_key(name)
    stored = await conn.scalar(sa.select(_ENTITIES.c.name).where(_ENTITIES.c.key == key))
    if stored is None:
        return None
    await conn.execute(sa.delete(_ENTITIES).where(_ENTITIES.c.key == key))
    await _bump(conn, datetime.now(UTC))
    return str(stored)


async def find_entity(conn: AsyncConnection, name: str) -> WatchedEntity | None:
    """The watched entity whose key is ``name``'s key, or whose alias ``name`` is."""
    key = entity_key(name)
    row = (await conn.execute(sa.select(_ENTITIES).where(_ENTITIES.c.key == key))).first()
    if row is not None:
        return _entity(row)
    folded = name.strip().casefold()
    for entity in (await load_watchlist(conn))[1]:
        if any(a.casefold() == folded for a in entity.aliases):
            return entity
    return None


class WatchlistFollower:
    """The matcher of the latest watchlist version, refreshed by polling (module docstring)."""

    def __init__(self, engine: AsyncEngine, poll_s: float) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.version: int | None = None
        self.matcher: WatchMatcher | None = None
        self._checked = float("-inf")

    async def current(self) -> WatchMatcher | None:
        """The matcher to use for the next batch (None while the watchlist is empty)."""
        now = time.monotonic()
        if now - self._checked < self.poll_s:
            return self.matcher
        self._checked = now
        async with self.engine.connect() as conn:
            version = await watchlist_version(conn)
            if version == self.version:
                return self.matcher
            version, entities = await load_watchlist(conn)
        matcher = (await asyncio.to_thread(WatchMatcher, entities)) if entities else None
        log.info("watchlist version %d: %d entities, %d patterns", version, len(entities),
                 matcher.patterns if matcher else 0)
        self.version, self.matcher = version, matcher
        return matcher

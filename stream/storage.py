"""Storage: SQLAlchemy 2 models and idempotent, batched writes (PostgreSQL or SQLite).

Kafka delivers at least once; the sinks make it effectively once. Every row has a natural key
(tweet id; tweet id + span start; alert id) and is written with ``ON CONFLICT DO NOTHING``, one
transaction per micro-batch, so a redelivered batch changes nothing. The same models run on
PostgreSQL (psycopg 3, async) in production and on SQLite (aiosqlite) for the no-server demo.
The schema itself is owned by the Alembic migrations in ``infra/migrations``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the tables the migrations create."""


class Tweet(Base):
    """One analysed tweet with its tweet-level sentiment."""

    __tablename__ = "tweets"
    __table_args__ = (sa.Index("ix_tweets_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    ingested_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    author: Mapped[str | None] = mapped_column(sa.String(256))
    lang: Mapped[str | None] = mapped_column(sa.String(256))
    sentiment: Mapped[str] = mapped_column(sa.String(8))
    p_negative: Mapped[float] = mapped_column(sa.Float)
    p_neutral: Mapped[float] = mapped_column(sa.Float)
    p_positive: Mapped[float] = mapped_column(sa.Float)
    model_version: Mapped[str] = mapped_column(sa.String(128))


class EntityMention(Base):
    """One entity span in a tweet with the sentiment expressed toward that entity."""

    __tablename__ = "entity_mentions"
    __table_args__ = (sa.Index("ix_entity_mentions_key_created", "entity_key", "created_at"),)

    tweet_id: Mapped[str] = mapped_column(
        sa.String(128), sa.ForeignKey("tweets.id", ondelete="CASCADE"), primary_key=True
    )
    start: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    end: Mapped[int] = mapped_column(sa.Integer)
    entity: Mapped[str] = mapped_column(sa.Text)
    entity_key: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(32))
    sentiment: Mapped[str] = mapped_column(sa.String(8))
    score: Mapped[float] = mapped_column(sa.Float)
    p_negative: Mapped[float] = mapped_column(sa.Float)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    # The watched entity's name (stream.watchlist) when a watchlist alias matched; None for an
    # entity only the model found (discovered).
    watch: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class Alert(Base):
    """One alert about an entity for one window (written by the alert worker)."""

    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_key_window", "entity_key", "window_start"),)

    alert_id: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    entity_key: Mapped[str] = mapped_column(sa.Text)
    entity: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str] = mapped_column(sa.String(32))
    window_start: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    negative_mentions: Mapped[int] = mapped_column(sa.Integer)
    mentions: Mapped[int] = mapped_column(sa.Integer)
    tweet_ids: Mapped[list[str]] = mapped_column(sa.JSON)
    text: Mapped[str] = mapped_column(sa.Text)
    generator: Mapped[str] = mapped_column(sa.String(16))
    model: Mapped[str | None] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))
    watch: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    reason: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    examples: Mapped[list[str] | None] = mapped_column(sa.JSON, nullable=True)


class WatchedEntityRow(Base):
    """One tracked entity of the watchlist (``stream.watchlist``), keyed by its entity key."""

    __tablename__ = "watched_entities"

    key: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    name: Mapped[str] = mapped_column(sa.Text)
    type: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    aliases: Mapped[list[str]] = mapped_column(sa.JSON)
    exclude: Mapped[list[str]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


class WatchlistVersion(Base):
    """One row: a counter bumped by every watchlist change, which running workers poll."""

    __tablename__ = "watchlist_version"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    version: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


# The daily-history view (created by the migration); declared on its own MetaData so that it is
# never mistaken for a table.
view_metadata = sa.MetaData()
entity_daily_history = sa.Table(
    "entity_daily_history",
    view_metadata,
    sa.Column("day", sa.Date),
    sa.Column("entity_key", sa.String),
    sa.Column("entity", sa.Text),
    sa.Column("sentiment", sa.String),
    sa.Column("mentions", sa.Integer),
    sa.Column("avg_score", sa.Float),
)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``postgresql+psycopg://`` or ``sqlite+aiosqlite://`` URLs."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # One writer at a time; wait for the lock instead of failing with "database is locked".
        kwargs.setdefault("connect_args", {"timeout": 30})
    return create_async_engine(parsed, **kwargs)


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {name!r} (use PostgreSQL or SQLite)")


async def insert_ignore(conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]],
                        returning: sa.Column[Any] | None = None) -> list[Any]:
    """Bulk ``INSERT ... ON CONFLICT DO NOTHING``; returns the ``returning`` column of the rows
    that were new (so the caller knows what a redelivery had already stored).

    On PostgreSQL one ``INSERT ... SELECT FROM unnest(arrays)`` (see
    ``_insert_ignore_unnest``); elsewhere (SQLite, tables with JSON columns) one executemany
    that SQLAlchemy's "insertmanyvalues" turns into multi-row INSERTs (pages of up to 1000
    rows, within the drivers' parameter limits) from a statement compiled once and cached.
    """
    if not rows:
        return []
    if conn.dialect.name == "postgresql" and not any(
            isinstance(col.type, sa.JSON) for col in table.columns):
        return await _insert_ignore_unnest(conn, table, rows, returning)
    pk = [col.name for col in table.primary_key.columns]
    stmt = _insert(conn, table).on_conflict_do_nothing(index_elements=pk)
    if returning is None:
        await conn.execute(stmt, list(rows))
        return []
    result = await conn.execute(stmt.returning(returning), list(rows))
    return list(result.scalars().all())


async def _insert_ignore_unnest(conn: AsyncConnection, table: sa.Table,
                                rows: Sequence[dict[str, Any]],
                                returning: sa.Column[Any] | None) -> list[Any]:
    """PostgreSQL: ``INSERT ... SELECT * FROM unnest(<one array per column>) ON CONFLICT DO
    NOTHING``, one statement whatever the row count.

    The SQL text is the same for every batch, so psycopg converts and prepares it once; the
    multi-row ``VALUES`` of insertmanyvalues is new text per batch size with a placeholder per
    value, and psycopg's parsing of it was half of the worker's database CPU in the pipeline
    benchmark's profile (DB transaction 405 -> 246 µs per tweet; benchmarks/results/ab/unnest).
    """
    prep = conn.dialect.identifier_preparer
    names = list(rows[0])
    casts = ", ".join(f"%s::{table.c[n].type.compile(dialect=conn.dialect)}[]" for n in names)
    pk = ", ".join(prep.quote(col.name) for col in table.primary_key.columns)
    sql = (f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(n) for n in names)}) "
           f"SELECT * FROM unnest({casts}) ON CONFLICT ({pk}) DO NOTHING")
    if returning is not None:
        sql += f" RETURNING {prep.quote(returning.name)}"
    result = await conn.exec_driver_sql(sql, tuple([row[n] for row in rows] for n in names))
    return [r[0] for r in result] if returning is not None else []


async def store_batch(conn: AsyncConnection, tweets: Sequence[dict[str, Any]],
                      mentions: Sequence[dict[str, Any]]) -> set[str]:
    """Write one micro-batch of tweets and their mentions; returns the ids that were new.

    Runs inside the caller's transaction (one per micro-batch). Duplicate ids inside the batch
    keep their first occurrence.
    """
    first: dict[str, dict[str, Any]] = {}
    for row in tweets:
        first.setdefault(row["id"], row)
    unique_tweets = list(first.values())
    new_ids = set(await insert_ignore(conn, Tweet.__table__, unique_tweets,
                                      returning=Tweet.__table__.c.id))
    fresh_mentions = [m for m in mentions if m["tweet_id"] in new_ids]
    unique_mentions = list({(m["tweet_id"], m["start"]): m for m in fresh_mentions}.values())
    await insert_ignore(conn, EntityMention.__table__, unique_mentions)
    return new_ids

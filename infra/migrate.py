"""Run the Alembic migrations programmatically (``tweetwatch db upgrade``, worker and demo start).

The schema is only ever created or changed by these migrations, on PostgreSQL and on SQLite
alike, so the demo's store and production's are the same schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def sync_url(url: str) -> sa.URL:
    """The synchronous form of a runtime URL (aiosqlite -> pysqlite; psycopg stays psycopg)."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend not in _SYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: use postgresql+psycopg:// or "
                         "sqlite+aiosqlite://")
    return parsed.set(drivername=_SYNC_DRIVERS[backend])


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` without an ini file (the URL is never interpolated)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (idempotent)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``base`` = empty)."""
    command.downgrade(alembic_config(url), revision)


def check_database(url: str) -> None:
    """Connect once and run ``SELECT 1``: a worker started without migrating must still fail
    at start, not at its first batch, when the database cannot be reached."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The revision the database is at (None when it has never been migrated)."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


@contextlib.contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database ``name`` on the server of ``server_url``, migrated to head;
    yields its URL (same driver as ``server_url``) and drops it afterwards, even when the
    caller fails. Tests and the pipeline benchmark each get a store of their own this way."""
    url = sa.make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("a scratch database needs PostgreSQL: use a postgresql+psycopg:// URL "
                         "of a server where it may create a database")
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    scratch = url.set(database=name).render_as_string(False)
    try:
        upgrade(scratch)
        yield scratch
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

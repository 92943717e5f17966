"""Alembic environment: runs migrations over a synchronous connection.

The runtime uses async drivers (psycopg async, aiosqlite); migrations run before the event loop
starts, so they use the synchronous form of the same URL (``infra.migrate.sync_url``).
"""

from alembic import context
from sqlalchemy import create_engine, pool

from infra.migrate import sync_url
from stream.settings import Settings
from stream.storage import Base

config = context.config
url = config.attributes.get("database_url") or Settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=sync_url(url), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

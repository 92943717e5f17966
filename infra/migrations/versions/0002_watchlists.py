"""Watchlists: tracked entities, the version workers poll, and the watched entity of mentions
and alerts (with why an alert fired and example tweets).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in 0001: the day of a mention in UTC.
_DAY = {
    "postgresql": "CAST(created_at AT TIME ZONE 'UTC' AS date)",
    "sqlite": "date(created_at)",
}


def upgrade() -> None:
    op.create_table(
        "watched_entities",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(32)),
        sa.Column("aliases", sa.JSON, nullable=False),
        sa.Column("exclude", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "watchlist_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("INSERT INTO watchlist_version (id, version, updated_at) "
               "VALUES (1, 0, CURRENT_TIMESTAMP)")
    # Plain ADD COLUMN (nullable): PostgreSQL and SQLite both do it in place.
    op.add_column("entity_mentions", sa.Column("watch", sa.Text, nullable=True))
    op.add_column("alerts", sa.Column("watch", sa.Text, nullable=True))
    op.add_column("alerts", sa.Column("reason", sa.JSON, nullable=True))
    op.add_column("alerts", sa.Column("examples", sa.JSON, nullable=True))


def downgrade() -> None:
    # SQLite drops a column by copying the table, which a view on it forbids: the history
    # view goes while entity_mentions is rebuilt and comes back unchanged (0001's text).
    op.execute("DROP VIEW entity_daily_history")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("examples")
        batch.drop_column("reason")
        batch.drop_column("watch")
    with op.batch_alter_table("entity_mentions") as batch:
        batch.drop_column("watch")
    day = _DAY[op.get_bind().dialect.name]
    op.execute(
        "CREATE VIEW entity_daily_history AS "
        f"SELECT {day} AS day, entity_key, MIN(entity) AS entity, sentiment, "
        "COUNT(*) AS mentions, AVG(score) AS avg_score "
        "FROM entity_mentions "
        f"GROUP BY {day}, entity_key, sentiment"
    )
    op.drop_table("watchlist_version")
    op.drop_table("watched_entities")

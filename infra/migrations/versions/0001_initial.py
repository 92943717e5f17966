"""Initial schema: tweets, entity_mentions, alerts and the daily history view.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Day of a mention in UTC. SQLite stores timestamps as UTC text, so date() is the day.
_DAY = {
    "postgresql": "CAST(created_at AT TIME ZONE 'UTC' AS date)",
    "sqlite": "date(created_at)",
}


def upgrade() -> None:
    op.create_table(
        "tweets",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(256)),
        sa.Column("lang", sa.String(256)),
        sa.Column("sentiment", sa.String(8), nullable=False),
        sa.Column("p_negative", sa.Float, nullable=False),
        sa.Column("p_neutral", sa.Float, nullable=False),
        sa.Column("p_positive", sa.Float, nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
    )
    op.create_index("ix_tweets_created_at", "tweets", ["created_at"])
    op.create_table(
        "entity_mentions",
        sa.Column("tweet_id", sa.String(128),
                  sa.ForeignKey("tweets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("start", sa.Integer, primary_key=True),
        sa.Column("end", sa.Integer, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("entity_key", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("sentiment", sa.String(8), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("p_negative", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_entity_mentions_key_created", "entity_mentions",
                    ["entity_key", "created_at"])
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(300), primary_key=True),
        sa.Column("entity_key", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("negative_mentions", sa.Integer, nullable=False),
        sa.Column("mentions", sa.Integer, nullable=False),
        sa.Column("tweet_ids", sa.JSON, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("generator", sa.String(16), nullable=False),
        sa.Column("model", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_alerts_key_window", "alerts", ["entity_key", "window_start"])
    day = _DAY[op.get_bind().dialect.name]
    op.execute(
        "CREATE VIEW entity_daily_history AS "
        f"SELECT {day} AS day, entity_key, MIN(entity) AS entity, sentiment, "
        "COUNT(*) AS mentions, AVG(score) AS avg_score "
        "FROM entity_mentions "
        f"GROUP BY {day}, entity_key, sentiment"
    )


def downgrade() -> None:
    op.execute("DROP VIEW entity_daily_history")
    op.drop_index("ix_alerts_key_window", table_name="alerts")
    op.drop_table("alerts")
    op.drop_index("ix_entity_mentions_key_created", table_name="entity_mentions")
    op.drop_table("entity_mentions")
    op.drop_index("ix_tweets_created_at", table_name="tweets")
    op.drop_table("tweets")

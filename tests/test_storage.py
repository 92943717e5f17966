"""Storage against real PostgreSQL and SQLite: migrations, idempotent batches, history view."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from infra.migrate import current_revision, downgrade, upgrade
from stream.history import entity_history, top_entities
from stream.storage import EntityMention, Tweet, create_engine, store_batch

pytestmark = pytest.mark.integration


def _tweet(tweet_id: str, created: datetime, sentiment: str = "neutral") -> dict:
    return {"id": tweet_id, "text": f"text of {tweet_id}", "created_at": created,
            "ingested_at": created, "author": None, "lang": None, "sentiment": sentiment,
            "p_negative": 0.2, "p_neutral": 0.6, "p_positive": 0.2, "model_version": "test"}


def _mention(tweet_id: str, start: int, surface: str, key: str, sentiment: str,
             created: datetime) -> dict:
    return {"tweet_id": tweet_id, "start": start, "end": start + len(surface),
            "entity": surface, "entity_key": key, "type": "company", "sentiment": sentiment,
            "score": 0.8, "p_negative": 0.8 if sentiment == "negative" else 0.1,
            "created_at": created}


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, pg_url: str, sqlite_url: str) -> str:
    return pg_url if request.param == "postgresql" else sqlite_url


async def test_batches_are_idempotent(db_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    key = f"acme{run}"
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    tweets = [_tweet(f"{run}-1", now), _tweet(f"{run}-2", yesterday), _tweet(f"{run}-1", now)]
    mentions = [
        _mention(f"{run}-1", 0, "@Acme", key, "negative", now),
        _mention(f"{run}-1", 20, "ACME", key, "neutral", now),
        _mention(f"{run}-2", 5, "#acme", key, "negative", yesterday),
    ]
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            first = await store_batch(conn, tweets, mentions)
        async with engine.begin() as conn:
            again = await store_batch(conn, tweets, mentions)
        assert first == {f"{run}-1", f"{run}-2"}
        assert again == set()
        async with engine.connect() as conn:
            n_tweets = (await conn.execute(sa.select(sa.func.count()).select_from(Tweet)
                                           .where(Tweet.id.like(f"{run}-%")))).scalar()
            n_mentions = (await conn.execute(
                sa.select(sa.func.count()).select_from(EntityMention)
                .where(EntityMention.entity_key == key))).scalar()
            stored_at = (await conn.execute(
                sa.select(Tweet.created_at).where(Tweet.id == f"{run}-2"))).scalar()
        assert (n_tweets, n_mentions) == (2, 3)
        # PostgreSQL returns an aware timestamp, SQLite the naive UTC one it stored.
        assert stored_at.replace(tzinfo=stored_at.tzinfo or UTC) == yesterday

        days = await entity_history(engine, "#ACME" + run, days=7)
        assert [(d.day, d.negative, d.neutral, d.positive) for d in days] == [
            (yesterday.date(), 1, 0, 0), (now.date(), 1, 1, 0)]
        assert days[-1].mentions == 2 and days[-1].negative_share == 0.5
        assert await entity_history(engine, key, days=7, today=now.date() + timedelta(days=30)) \
            == []
        top = [t for t in await top_entities(engine, 1000, days=7) if t.entity_key == key]
        assert len(top) == 1 and (top[0].mentions, top[0].negative) == (3, 2)
    finally:
        await engine.dispose()


async def test_large_batches_span_several_pages(db_url: str) -> None:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    tweets = [_tweet(f"{run}-{i}", now) for i in range(3500)]
    mentions = [_mention(f"{run}-{i}", 0, "Big", f"big{run}", "neutral", now)
                for i in range(3500)]
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            assert len(await store_batch(conn, tweets, mentions)) == 3500
        days = await entity_history(engine, f"big{run}", days=1)
        assert [d.neutral for d in days] == [3500]
    finally:
        await engine.dispose()


def test_migrations_go_down_and_up(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    assert current_revision(url) is None
    upgrade(url)
    assert current_revision(url) == "0002"
    downgrade(url, "0001")
    inspector = sa.inspect(sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}"))
    assert "watched_entities" not in inspector.get_table_names()
    assert "watch" not in {c["name"] for c in inspector.get_columns("entity_mentions")}
    downgrade(url, "base")
    assert current_revision(url) is None
    inspector = sa.inspect(sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}"))
    assert inspector.get_table_names() == ["alembic_version"]
    upgrade(url)
    inspector = sa.inspect(sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}"))
    assert {"tweets", "entity_mentions", "alerts"} <= set(inspector.get_table_names())
    assert inspector.get_view_names() == ["entity_daily_history"]


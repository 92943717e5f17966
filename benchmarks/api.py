"""How long the dashboard's queries take on a store of production size.

``tweetwatch bench api --mentions 1000000 --database-url postgresql://...`` (or
``python -m benchmarks.api ...``) fills the
(empty, migrated) store with ``--mentions`` entity mentions spread over the last ``--days``
days, entity keys drawn from a Zipf law over ``--entities`` keys (a few entities get most of
the talk, as on Twitter), then times each query of the API ``--repeat`` times and prints the
median and the slowest run, in milliseconds. The rows are generated: the benchmark measures
the database's work, which depends on row counts and their spread, not on the text.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import sqlalchemy as sa

from infra.migrate import upgrade
from stream.storage import Alert, create_engine, store_batch
from stream.web import queries

_CHUNK = 5000
_SENTIMENTS = ("negative", "neutral", "positive")


def _rows(count: int, entities: int, days: int, now: datetime,
          rng: random.Random) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    weights = [1.0 / (rank + 1) for rank in range(entities)]
    keys = rng.choices(range(entities), weights=weights, k=count)
    span_s = days * 86400
    out = []
    for i, key in enumerate(keys):
        at = now - timedelta(seconds=rng.uniform(0, span_s))
        sentiment = rng.choices(_SENTIMENTS, weights=(3, 5, 2))[0]
        tweet = {"id": f"bench-{i}", "text": f"about entity {key}", "created_at": at,
                 "ingested_at": at, "author": None, "lang": None, "sentiment": sentiment,
                 "p_negative": 0.3, "p_neutral": 0.5, "p_positive": 0.2,
                 "model_version": "bench"}
        mention = {"tweet_id": tweet["id"], "start": 13, "end": 20, "entity": f"Entity{key}",
                   "entity_key": f"entity{key}", "type": "company", "sentiment": sentiment,
                   "score": 0.8, "p_negative": 0.3, "created_at": at}
        out.append((tweet, mention))
    return out


async def _fill(url: str, count: int, entities: int, days: int, now: datetime) -> None:
    engine = create_engine(url)
    rng = random.Random(7)
    try:
        rows = _rows(count, entities, days, now, rng)
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            async with engine.begin() as conn:
                await store_batch(conn, [t for t, _ in chunk], [m for _, m in chunk])
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql("ANALYZE")
    finally:
        await engine.dispose()


async def _time(engine: Any, repeat: int,
                step: Callable[[Any], Awaitable[Any]]) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        async with engine.connect() as conn:
            began = time.perf_counter()
            await step(conn)
            runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs), max(runs)


async def _measure(url: str, repeat: int, now: datetime) -> list[tuple[str, float, float]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            top = (await queries.entity_summaries(conn, 24, 1, now))[0].entity_key
            alerts = int(await conn.scalar(sa.select(sa.func.count()).select_from(Alert)))
        cases: list[tuple[str, Callable[[Any], Awaitable[Any]]]] = [
            ("/api/entities?hours=24&limit=12",
             lambda c: queries.entity_summaries(c, 24, 12, now)),
            ("/api/entities?hours=168&limit=50",
             lambda c: queries.entity_summaries(c, 168, 50, now)),
            (f"/api/entities/{top}/history?bucket=hour&days=7 (top entity)",
             lambda c: queries.entity_history(c, top, "hour", 7, now)),
            (f"/api/entities/{top}/history?bucket=minute&days=1 (top entity)",
             lambda c: queries.entity_history(c, top, "minute", 1, now)),
            (f"/api/entities/{top}/mentions?sentiment=negative&limit=50",
             lambda c: queries.entity_mentions(c, top, "negative", 50, None, None)),
            (f"/api/alerts?limit=100 ({alerts} alerts)",
             lambda c: queries.alerts(c, None, None, 100)),
        ]
        return [(name, *await _time(engine, repeat, step)) for name, step in cases]
    finally:
        await engine.dispose()


@click.command("api", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--database-url", required=True,
              help="An EMPTY database (it is migrated and filled).")
@click.option("--mentions", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Entity mentions to generate.")
@click.option("--entities", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Entity keys, drawn from a Zipf law.")
@click.option("--days", type=click.IntRange(min=1), default=14, show_default=True,
              help="Days the mentions are spread over (up to now).")
@click.option("--repeat", type=click.IntRange(min=1), default=7, show_default=True,
              help="Timed runs of each query.")
def main(database_url: str, mentions: int, entities: int, days: int, repeat: int) -> None:
    """How long the dashboard's queries take on a store of production size (median and
    slowest run per query, in milliseconds)."""
    now = datetime.now(UTC)
    upgrade(database_url)
    began = time.perf_counter()
    asyncio.run(_fill(database_url, mentions, entities, days, now))
    click.echo(f"filled {mentions} mentions of {entities} entities over {days} "
               f"days in {time.perf_counter() - began:.0f} s")
    click.echo(f"| query | median ms | slowest ms (of {repeat}) |")
    click.echo("|---|---|---|")
    for name, median, worst in asyncio.run(_measure(database_url, repeat, now)):
        click.echo(f"| `{name}` | {median:.1f} | {worst:.1f} |")


if __name__ == "__main__":
    main()

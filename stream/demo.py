"""``tweetwatch demo``: the whole pipeline on one machine with nothing running beforehand.

Embedded Kafka-protocol broker -> ``tweetwatch worker`` (a child process, as in production) ->
a SQLite store migrated by Alembic (or the given database) -> replay of real tweets from the
shared data. While it replays, negative entity mentions (and alerts, when an alert agent is
registered) are printed as they arrive on their topics; at the end, the reputation history of
the most-mentioned entities.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from infra.migrate import upgrade
from stream.broker import EmbeddedBroker
from stream.history import entity_history, top_entities
from stream.publish import publish, replay_messages
from stream.records import AlertRecord, NegativeMention, parse_record
from stream.settings import Settings
from stream.storage import EntityMention, Tweet, create_engine
from stream.topics import ensure_topics, topic_names
from stream.watch_store import save_entities
from stream.watchlist import WatchedEntity, read_watchlist
from stream.worker_process import WorkerProcess

DEMO_WATCHLIST = Path(__file__).resolve().parent / "data" / "demo_watchlist.yaml"

_PRINT_NEGATIVES = 25
_PRINT_ALERTS = 10
_TOP_ENTITIES = 8
_WORKER_TIMEOUT_S = 600.0
_ALERT_CATCH_UP_S = 60.0


@dataclass(slots=True)
class Tally:
    """What the demo saw arrive: rows, dead letters, negative mentions, alerts."""

    stored: int = 0
    rejected: int = 0
    negatives: int = 0
    alerts: int = 0
    top_entity: str = "<entity>"


async def _count_rows(engine: sa.ext.asyncio.AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(Tweet))).scalar())


async def _topic_consumer(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer of every partition of ``topic``, from the start."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    return consumer


async def _watch(consumer: AIOKafkaConsumer, console: Console, tally: Tally, kind: str,
                 stop: asyncio.Event) -> None:
    """Print records of the negative-entity / alerts / DLQ topics as they arrive."""
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    _show(record.value, console, tally, kind)
    finally:
        await consumer.stop()


def _show(value: bytes, console: Console, tally: Tally, kind: str) -> None:
    if kind == "negative":
        tally.negatives += 1
        if tally.negatives <= _PRINT_NEGATIVES:
            mention = parse_record(NegativeMention, value)
            text = " ".join(mention.text.split())
            text = text if len(text) <= 90 else text[:89] + "…"
            console.print(f"[red]negative[/] [bold]{escape(mention.entity)}[/] ({mention.type}, "
                          f"p={mention.score:.2f}, tweet {mention.tweet_sentiment}): "
                          f"[dim]{escape(text)}[/]")
        elif tally.negatives == _PRINT_NEGATIVES + 1:
            console.print("[dim]... more negative mentions stream on; counted below[/]")
    elif kind == "alerts":
        tally.alerts += 1
        if tally.alerts <= _PRINT_ALERTS:
            alert = parse_record(AlertRecord, value)
            reason = (alert.reason or {}).get("text")
            console.print(f"[magenta]ALERT[/] [bold]{escape(alert.entity)}[/] "
                          f"({alert.generator}): {escape(alert.text)}"
                          + (f"\n      [dim]why: {escape(str(reason))}[/]" if reason else ""))
    else:
        tally.rejected += 1


async def _run(settings: Settings, count: int, source: str, rate: float,
               worker: WorkerProcess, console: Console,
               watched: Sequence[WatchedEntity] = (), span: timedelta | None = None) -> Tally:
    messages = replay_messages(settings.data_dir, count, source, span=span)
    bootstrap = settings.kafka_bootstrap_servers
    tally = Tally()
    stop = asyncio.Event()
    watchers = [
        asyncio.create_task(_watch(await _topic_consumer(bootstrap, topic), console, tally,
                                   kind, stop))
        for topic, kind in ((settings.topic_negative, "negative"),
                            (settings.topic_alerts, "alerts"), (settings.topic_dlq, "dlq"))
    ]
    engine = create_engine(settings.database_url)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            replay = progress.add_task("replaying tweets  ", total=len(messages))
            stored = progress.add_task("analysed + stored ", total=len(messages))
            sender = asyncio.create_task(publish(
                bootstrap, settings.topic_tweets, messages, rate,
                lambda n: progress.advance(replay, n)))
            deadline = time.monotonic() + _WORKER_TIMEOUT_S
            while True:
                tally.stored = await _count_rows(engine)
                progress.update(stored, completed=tally.stored + tally.rejected)
                if sender.done():
                    sender.result()  # re-raise a publishing failure
                    if tally.stored + tally.rejected >= len(messages):
                        break
                if not worker.alive():
                    raise RuntimeError(f"the worker exited (status {worker.returncode()}); "
                                       f"its log: {worker.log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not finish in {_WORKER_TIMEOUT_S:.0f}s; "
                                       f"its log: {worker.log_path}")
                await asyncio.sleep(0.5)
        await _wait_for_alert_agent(settings, worker, console)
        await asyncio.sleep(1.0)  # let the last alerts arrive on their topic
        stop.set()
        await asyncio.gather(*watchers)
        await _print_samples(engine, console)
        tally.top_entity = (await _print_history(engine, console, watched)
                            or tally.top_entity)
    finally:
        stop.set()
        for task in watchers:
            task.cancel()
        await engine.dispose()
    return tally


async def _wait_for_alert_agent(settings: Settings, worker: WorkerProcess,
                                console: Console) -> None:
    """Wait until the worker's consumer group has committed the whole negative-entity topic.

    The alert agent commits a mention's offset only after its alert decision is stored, so a
    committed offset at the topic's end means every alert the replay can fire has fired;
    stopping the worker earlier would cut the demo's alerts short.
    """
    bootstrap = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await probe.start()
    try:
        # The demo created the topic with this many partitions.
        partitions = [TopicPartition(settings.topic_negative, p)
                      for p in range(settings.topic_partitions)]
        ends = await probe.end_offsets(partitions)
        deadline = time.monotonic() + _ALERT_CATCH_UP_S
        with console.status("waiting for the alert agent to work through the negative "
                            "mentions"):
            while time.monotonic() < deadline and worker.alive():
                committed = await admin.list_consumer_group_offsets(settings.app_id,
                                                                    partitions=partitions)
                if all(tp not in ends or ends[tp] == 0
                       or (tp in committed and committed[tp].offset >= ends[tp])
                       for tp in partitions):
                    return
                await asyncio.sleep(0.5)
        console.print("[yellow]the alert agent had not caught up when the demo stopped; "
                      "`tweetwatch alerts` shows what it stored[/]")
    finally:
        await probe.stop()
        await admin.close()


async def _print_samples(engine: sa.ext.asyncio.AsyncEngine, console: Console) -> None:
    """A few analysed tweets with their entities, as stored."""
    query = (sa.select(Tweet.id, Tweet.sentiment, Tweet.text)
             .where(Tweet.id.in_(sa.select(EntityMention.tweet_id)))
             .order_by(Tweet.ingested_at.desc(), Tweet.id).limit(8))
    async with engine.connect() as conn:
        tweets = (await conn.execute(query)).all()
        ids = [t.id for t in tweets]
        mentions = (await conn.execute(
            sa.select(EntityMention.tweet_id, EntityMention.entity, EntityMention.type,
                      EntityMention.sentiment, EntityMention.score)
            .where(EntityMention.tweet_id.in_(ids)).order_by(EntityMention.start))).all()
    table = Table(title="sample of analysed tweets (as stored)")
    table.add_column("tweet sentiment")
    table.add_column("entities: type, sentiment toward it")
    table.add_column("text", overflow="fold")
    for tweet in tweets:
        ents = "; ".join(f"{escape(m.entity)} ({m.type}, {m.sentiment} {m.score:.2f})"
                         for m in mentions if m.tweet_id == tweet.id)
        table.add_row(tweet.sentiment, ents, escape(" ".join(tweet.text.split())[:140]))
    console.print(table)


async def _print_history(engine: sa.ext.asyncio.AsyncEngine, console: Console,
                         watched: Sequence[WatchedEntity] = ()) -> str | None:
    """The reputation history table of the most-mentioned watched entities (of all entities
    when nothing is watched); returns the top one."""
    names = {e.key: e.name for e in watched}
    title = ("reputation history: most-mentioned watched entities" if names
             else "reputation history: most-mentioned entities (entity_daily_history)")
    table = Table(title=title)
    table.add_column("entity", min_width=16)
    for column in ("day", "mentions", "neg", "neu", "pos", "neg %"):
        table.add_column(column, justify="left" if column == "day" else "right", no_wrap=True)
    totals = await top_entities(engine, 10_000 if names else _TOP_ENTITIES, days=7)
    if names:
        totals = [t for t in totals if t.entity_key in names][:_TOP_ENTITIES]
    for total in totals:
        name = names.get(total.entity_key)
        for day in await entity_history(engine, name or total.entity_key, days=7, name=name):
            table.add_row(escape(day.entity), day.day.isoformat(), str(day.mentions),
                          str(day.negative), str(day.neutral), str(day.positive),
                          f"{day.negative_share:.0%}")
    console.print(table)
    return (names.get(totals[0].entity_key) or totals[0].entity) if totals else None


async def _store_watchlist(url: str, entities: Sequence[WatchedEntity]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await save_entities(conn, entities, replace_all=True)
    finally:
        await engine.dispose()


def run_demo(settings: Settings, tweets: int, source: str, database_url: str | None,
             rate: float, console: Console | None = None,
             watchlist: Path | None = None, serve_port: int | None = None,
             span: timedelta | None = None) -> str:
    """Set everything up, replay ``tweets`` real tweets, print what the pipeline found;
    returns the store's URL (``serve_port``: the dashboard will be served on it next).
    ``span``: the replayed tweets' event times cover that much time up to now
    (``stream.publish.replay_messages``).

    The store's watchlist becomes ``watchlist`` (default: ``DEMO_WATCHLIST``, the people,
    organisations and brands of the demo's tweets), so the alerts are about tracked entities.
    """
    console = console or Console()
    entities = read_watchlist(watchlist or DEMO_WATCHLIST)
    if not settings.model_path.is_file():
        raise FileNotFoundError(f"model artifact not found: {settings.model_path}")
    workdir = Path(tempfile.mkdtemp(prefix="tweetwatch-demo-"))
    db_url = database_url or f"sqlite+aiosqlite:///{workdir / 'tweetwatch.db'}"
    started = time.monotonic()
    with EmbeddedBroker() as broker:
        ensure_topics(broker, topic_names(settings), settings.topic_partitions)
        demo_settings = settings.model_copy(update={
            "kafka_bootstrap_servers": broker.bootstrap_servers,
            "database_url": db_url,
            "app_id": "tweetwatch-demo",
        })
        console.print(f"embedded Kafka-protocol broker on [bold]{broker.bootstrap_servers}"
                      f"[/]; topics: {', '.join(topic_names(settings))}")
        upgrade(db_url)
        asyncio.run(_store_watchlist(db_url, entities))
        console.print(f"store: {db_url} (migrated to head); watching {len(entities)} entities "
                      f"from {watchlist or DEMO_WATCHLIST}")
        worker = WorkerProcess(demo_settings, workdir / "worker.log").start()
        console.print(f"worker started (pid {worker.pid}, log {worker.log_path}); alerts use "
                      + (f"the LLM at {settings.llm_base_url}" if settings.llm_base_url
                         else "the template text (no TWEETWATCH_LLM_BASE_URL set)"))
        try:
            tally = asyncio.run(_run(demo_settings, tweets, source, rate, worker, console,
                                     entities, span))
        finally:
            worker.stop()
    elapsed = time.monotonic() - started
    console.print(
        f"[bold]done[/] in {elapsed:.0f}s: {tally.stored} tweets stored, {tally.rejected} "
        f"rejected to the DLQ, {tally.negatives} negative entity mentions published, "
        f"{tally.alerts} alerts")
    console.print(f"query it: TWEETWATCH_DATABASE_URL='{db_url}' tweetwatch history "
                  f"'{tally.top_entity}' --days 7")
    if serve_port is None:
        console.print(f"see it: TWEETWATCH_DATABASE_URL='{db_url}' tweetwatch serve, then open "
                      "[bold]http://localhost:8080/[/] (or run the demo with --serve)")
    else:
        console.print(f"dashboard: open [bold]http://localhost:{serve_port}/[/] (Ctrl-C stops)")
    return db_url

"""``tweetwatch alerts``: read the alerts the alert worker produced.

Two sources, each for what it is good at:

- the ``alerts`` table (default): the stored history, the last ``--limit`` alerts;
- the alerts topic (``--follow``): what subscribers see, printed as it arrives. Following
  reads the topic without a consumer group from its current end (or from the beginning with
  ``--from-beginning``), so it never moves any worker's offsets.

``--json`` prints each alert as its wire record (``"v": 1``), one per line, for scripts.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable

import click

from stream.records import AlertRecord, parse_record
from stream.settings import Settings


def format_alert(alert: AlertRecord) -> str:
    """One readable line per alert."""
    end = alert.window_end.strftime("%Y-%m-%d %H:%M:%S")
    source = alert.generator + (f":{alert.model}" if alert.model else "")
    return (f"{end}  {alert.entity} ({alert.type})  "
            f"{alert.negative_mentions}/{alert.mentions} negative  [{source}]  {alert.text}")


def emit(alert: AlertRecord, as_json: bool) -> None:
    """Print one alert: its wire record (``--json``, one line) or a readable line."""
    if as_json:
        click.echo(json.dumps(alert.model_dump(mode="json"), ensure_ascii=False))
    else:
        click.echo(format_alert(alert))


async def stored(settings: Settings, limit: int) -> list[AlertRecord]:
    """The last ``limit`` alerts from the alerts table, oldest first."""
    from stream.alerting import recent_alerts
    from stream.storage import create_engine

    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return await recent_alerts(conn, limit)
    finally:
        await engine.dispose()


async def follow(settings: Settings, from_beginning: bool, max_alerts: int | None,
                 on_alert: Callable[[AlertRecord], None],
                 on_ready: Callable[[], None] | None = None) -> int:
    """Hand alerts from the topic to ``on_alert`` as they arrive; returns how many.

    ``on_ready`` runs once the consumer sits at its start position, so nothing published
    after it is missed.
    """
    import asyncio

    from aiokafka import AIOKafkaConsumer

    topic = settings.topic_alerts
    # No consumer group: every partition is ours and no worker's offsets move.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    count = 0
    try:
        if topic not in await consumer.topics():
            raise RuntimeError(f"topic {topic!r} does not exist")
        for _ in range(100):  # partitions are assigned once the topic's metadata arrives
            if consumer.assignment():
                break
            await asyncio.sleep(0.1)
        for tp in consumer.assignment():  # resolve start offsets before announcing readiness
            await consumer.position(tp)
        if on_ready is not None:
            on_ready()
        async for message in consumer:
            try:
                alert = parse_record(AlertRecord, message.value)
            except ValueError as exc:
                click.echo(f"skipping a message that is not an alert at {message.topic}/"
                           f"{message.partition}@{message.offset}: {exc}", err=True)
                continue
            on_alert(alert)
            count += 1
            if max_alerts is not None and count >= max_alerts:
                break
    finally:
        await consumer.stop()
    return count


@click.command("alerts")
@click.option("--follow", "follow_", is_flag=True,
              help="Keep printing alerts from the alerts topic as they arrive (Ctrl-C stops).")
@click.option("--from-beginning", is_flag=True,
              help="With --follow: start at the beginning of the topic, not its end.")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="Stored alerts to print first (from the alerts table); 0 for none.")
@click.option("--max-alerts", type=click.IntRange(min=1), default=None,
              help="With --follow: stop after this many alerts.")
@click.option("--json", "as_json", is_flag=True, help="One JSON alert record per line.")
def alerts_command(follow_: bool, from_beginning: bool, limit: int, max_alerts: int | None,
                   as_json: bool) -> None:
    """Print alerts: the last stored ones (alerts table), then, with --follow, new ones from
    the alerts topic as they arrive."""
    from stream.cli_common import load_settings, run_async
    from stream.settings import safe_url

    settings = load_settings()
    if from_beginning and not follow_:
        raise click.UsageError("--from-beginning needs --follow")
    if max_alerts is not None and not follow_:
        raise click.UsageError("--max-alerts needs --follow")
    if limit and not (follow_ and from_beginning):
        rows = run_async(f"cannot read alerts from {safe_url(settings.database_url)}",
                         lambda: stored(settings, limit))
        for alert in rows:
            emit(alert, as_json)
        if not rows and not follow_ and not as_json:
            click.echo("no alerts stored yet", err=True)
    if not follow_:
        return

    def announce() -> None:
        click.echo(f"following {settings.topic_alerts} on {settings.kafka_bootstrap_servers} "
                   "(Ctrl-C stops)", err=True)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how --follow ends
        run_async(f"cannot follow {settings.topic_alerts} on "
                  f"{settings.kafka_bootstrap_servers}",
                  lambda: follow(settings, from_beginning, max_alerts,
                                 lambda alert: (emit(alert, as_json), sys.stdout.flush()),
                                 announce))

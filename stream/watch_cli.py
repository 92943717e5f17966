"""``tweetwatch watch ...``: manage the watchlist in the database (workers follow within
``TWEETWATCH_WATCHLIST_POLL_S`` seconds, without a restart)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncConnection

from stream.watchlist import InvalidWatchlist, WatchedEntity, dump_watchlist, make_entity


def _with_store(action: str, step: Callable[[AsyncConnection], Awaitable[Any]],
                write: bool) -> Any:
    from stream.cli_common import load_settings, run_async
    from stream.settings import safe_url
    from stream.storage import create_engine

    settings = load_settings()

    async def run() -> Any:
        engine = create_engine(settings.database_url)
        try:
            if write:
                async with engine.begin() as conn:
                    return await step(conn)
            async with engine.connect() as conn:
                return await step(conn)
        finally:
            await engine.dispose()

    return run_async(f"{action} ({safe_url(settings.database_url)})", run)


def _entity_or_usage(build: Callable[[], WatchedEntity]) -> WatchedEntity:
    try:
        return build()
    except InvalidWatchlist as exc:
        raise click.UsageError(str(exc)) from None


@click.group("watch")
def watch_group() -> None:
    """The watchlist: tracked entities with aliases (@handles, #hashtags) and exclusions."""


@watch_group.command("add")
@click.argument("name")
@click.option("--alias", "aliases", multiple=True, metavar="A",
              help="Another way the entity is written: a name, @handle or #hashtag "
                   "(repeatable).")
@click.option("--exclude", "exclude", multiple=True, metavar="X",
              help="A phrase that vetoes an overlapping match, e.g. 'apple pie' (repeatable).")
@click.option("--type", "type_", default=None, metavar="T",
              help="The entity's type (company, person, ...), used in alert texts.")
def watch_add(name: str, aliases: tuple[str, ...], exclude: tuple[str, ...],
              type_: str | None) -> None:
    """Track NAME (replaces an entity of the same name)."""
    from stream.watch_store import save_entities

    entity = _entity_or_usage(lambda: make_entity(name, type_, aliases, exclude))
    _with_store("cannot update the watchlist", lambda conn: save_entities(conn, [entity]),
                write=True)
    click.echo(f"watching {entity.name} ({len(entity.all_aliases())} aliases"
               f"{f', {len(entity.exclude)} exclusions' if entity.exclude else ''})")


@watch_group.command("remove")
@click.argument("name")
def watch_remove(name: str) -> None:
    """Stop tracking NAME (its stored mentions stay)."""
    from stream.watch_store import remove_entity

    removed = _with_store("cannot update the watchlist", lambda conn: remove_entity(conn, name),
                          write=True)
    if removed is None:
        raise click.ClickException(f"no watched entity named {name!r}")
    click.echo(f"removed {removed}")


@watch_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def watch_list(as_json: bool) -> None:
    """The watched entities."""
    from stream.watch_store import load_watchlist

    _, entities = _with_store("cannot read the watchlist", load_watchlist, write=False)
    if as_json:
        for entity in entities:
            click.echo(json.dumps(entity.as_json(), ensure_ascii=False))
        return
    if not entities:
        click.echo("the watchlist is empty (add entities with `tweetwatch watch add NAME`)")
        return
    from stream.render import watchlist_table

    watchlist_table(entities)


@watch_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--replace", is_flag=True,
              help="Make the watchlist exactly the file's (default: add to it, replacing "
                   "entities of the same name).")
def watch_import(file: Path, replace: bool) -> None:
    """Add the entities of a YAML watchlist FILE (see docs/watchlists.md for the format)."""
    from stream.watch_store import save_entities
    from stream.watchlist import read_watchlist

    try:
        entities = read_watchlist(file)
    except InvalidWatchlist as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    count = _with_store("cannot update the watchlist",
                        lambda conn: save_entities(conn, entities, replace_all=replace),
                        write=True)
    click.echo(f"imported {count} entities from {file}")


@watch_group.command("export")
def watch_export() -> None:
    """Print the watchlist as YAML (the format `watch import` reads)."""
    from stream.watch_store import load_watchlist

    _, entities = _with_store("cannot read the watchlist", load_watchlist, write=False)
    sys.stdout.write(dump_watchlist(entities))

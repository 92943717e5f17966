"""Human-readable output of the CLI (rich tables) and the README's configuration table.

Kept apart from the commands so the demo and the CLI print the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream.history import DayCount
from stream.settings import Settings, safe_url


def _env_name(name: str) -> str:
    return f"TWEETWATCH_{name.upper()}"


def _default(info: Any) -> str:
    value = info.default
    if value is None:
        return "(unset)"
    return str(value)


def settings_markdown() -> str:
    """The configuration table for the README, generated from the settings' descriptions."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = _default(info)
        if name in ("model_dir", "data_dir"):
            default = {"model_dir": "stream/artifacts/model (in the package)",
                       "data_dir": "../shared/data (beside the checkout)"}[name]
        description = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{_env_name(name)}` | `{default}` | {description} |")
    return "\n".join(lines)


def settings_table(settings: Settings, console: Console | None = None) -> None:
    """Every setting with its current value (secrets masked)."""
    table = Table(title="tweetwatch settings (environment variables)")
    table.add_column("variable", style="cyan", no_wrap=True)
    table.add_column("value")
    table.add_column("meaning")
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if "key" in name and value:
            value = "***"
        elif name == "alert_webhook_url" and value:
            from stream.webhook import redacted_url

            value = redacted_url(str(value))  # a Slack webhook's path is its secret
        elif name.endswith("_url") and value:
            value = safe_url(str(value))
        table.add_row(_env_name(name), str(value), info.description or "")
    (console or Console()).print(table)


def history_table(entity: str, days: int, rows: Sequence[DayCount],
                  console: Console | None = None) -> None:
    """An entity's daily mentions by sentiment."""
    out = console or Console()
    if not rows:
        out.print(f"no mentions of {entity!r} in the last {days} days")
        return
    table = Table(title=f"{rows[-1].entity}: mentions per day, last {days} days")
    for column in ("day", "mentions", "negative", "neutral", "positive", "negative share"):
        table.add_column(column, justify="right" if column != "day" else "left", no_wrap=True)
    for row in rows:
        table.add_row(row.day.isoformat(), str(row.mentions), str(row.negative),
                      str(row.neutral), str(row.positive), f"{row.negative_share:.0%}")
    out.print(table)


def analysis_table(results: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """``tweetwatch analyze`` without --json: one row per tweet."""
    table = Table(title="tweetwatch analyze", show_lines=False)
    table.add_column("id", no_wrap=True, style="dim")
    table.add_column("sentiment")
    table.add_column("entities (type, sentiment toward it, probability)")
    table.add_column("text", overflow="fold")
    colours = {"negative": "red", "neutral": "yellow", "positive": "green"}
    for result in results:
        if "error" in result:
            table.add_row(escape(str(result.get("id") or f"line {result['line']}")),
                          "[red]rejected[/]", escape(result["error"]), "")
            continue
        sentiment = result["sentiment"]
        entities = "; ".join(
            (f"[bold]{escape(e['watch'])}[/] as " if e.get("watch") else "")
            + f"{escape(e['entity'])} ({escape(e['type'] or 'watched')}, "
            f"[{colours[e['sentiment']]}]{e['sentiment']}[/] {e['score']:.2f})"
            for e in result["entities"]
        ) or "-"
        table.add_row(escape(result["id"]), f"[{colours[sentiment]}]{sentiment}[/]", entities,
                      escape(result["text"]))
    (console or Console()).print(table)


def watchlist_table(entities: Sequence[Any], console: Console | None = None) -> None:
    """``tweetwatch watch list``: one row per watched entity."""
    table = Table(title=f"watchlist ({len(entities)} entities)")
    for column in ("name", "type", "aliases", "exclude"):
        table.add_column(column, overflow="fold")
    for e in entities:
        table.add_row(escape(e.name), escape(e.type or "-"), escape(", ".join(e.aliases) or "-"),
                      escape(", ".join(e.exclude) or "-"))
    (console or Console()).print(table)

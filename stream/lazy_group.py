"""A click group whose subcommands are imported only when they are used.

The runtime CLI lists the training (``train``, ``eval``) and benchmark (``bench``) commands,
but their modules import torch, gensim, matplotlib or the benchmark harness. Naming them as
``"module:attribute"`` strings keeps ``import stream.cli`` free of that code (the runtime never
imports training), while ``tweetwatch --help`` and ``tweetwatch train ...`` still find them.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class MissingExtra(click.ClickException):
    """A lazy command's package is not installed (the runtime image has no training code)."""

    def __init__(self, command: str, module: str) -> None:
        super().__init__(f"'{command}' needs {module}, which is not installed "
                         "(pip install 'tweetwatch[train,bench]')")
        self.module = module


class LazyGroup(click.Group):
    """``lazy_subcommands={"train": "model_export.cli:train_command"}``: imported on first use."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``; a lazy command whose package is not installed is
        listed as such instead of failing the whole help text."""
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            try:
                command = self.get_command(ctx, name)
            except MissingExtra as exc:
                rows.append((name, f"(not installed: {exc.module})"))
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(
                    max(formatter.width - 6 - max(len(n) for n in self.list_commands(ctx)),
                        20))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _load(self, cmd_name: str) -> click.Command:
        module_name, _, attribute = self.lazy_subcommands[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # The [train] or [bench] extra is not installed: say which, in one line.
            raise MissingExtra(cmd_name, exc.name or module_name) from exc
        command = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_subcommands[cmd_name]} is not a click command")
        return command

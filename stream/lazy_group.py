"""A click group whose subcommands are imported only when they are used.

The runtime CLI lists the training (``train``, ``eval``) and benchmark (``bench``) commands,
but their modules import torch, gensim, matplotlib or the benchmark harness. Naming them as
``"module:attribute"`` strings keeps ``import stream.cli`` free of that code (the runtime never
imports training), while ``tweetwatch --help`` and ``tweetwatch train ...`` still find them.

The benchmarks (``benchmarks/``) are not installed at all: they run from a checkout of the
repository. A command of theirs finds the package beside the ``stream`` package it runs
(an editable install) or in the working directory.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click

# Top-level packages that exist in a checkout only (not in the wheel).
CHECKOUT_ONLY = frozenset({"benchmarks"})


class MissingExtra(click.ClickException):
    """A lazy command's package is not installed (the runtime image has no training code, and
    no installation has the benchmarks)."""

    def __init__(self, command: str, module: str) -> None:
        hint = ("they run from a checkout of the tweetwatch repository"
                if module in CHECKOUT_ONLY else "pip install 'tweetwatch[train,bench]'")
        super().__init__(f"'{command}' needs {module}, which is not installed ({hint})")
        self.module = module


def _checkout_root(package: str) -> Path | None:
    """The folder holding ``package`` in a checkout: beside ``stream``, else the working
    directory; None when neither has it."""
    beside_runtime = Path(__file__).resolve().parents[1]
    for root in (beside_runtime, Path.cwd()):
        if (root / package / "__init__.py").is_file():
            return root
    return None


def import_command_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``; a checkout-only package is looked for in the
    checkout (see the module docstring) before giving up."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.partition(".")[0]
        root = _checkout_root(top) if exc.name == top and top in CHECKOUT_ONLY else None
        if root is None:
            raise
        sys.path.append(str(root))
        return importlib.import_module(name)


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
            module = import_command_module(module_name)
        except ImportError as exc:
            # The [train] or [bench] extra is not installed: say which, in one line.
            raise MissingExtra(cmd_name, exc.name or module_name) from exc
        command = getattr(module, attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_subcommands[cmd_name]} is not a click command")
        return command

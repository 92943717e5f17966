"""What every command module shares: settings from the environment with command-line
overrides, and expected failures as one line on stderr.

Command modules (``stream.cli``, ``stream.alerts_cli``, ``stream.watch_cli``,
``stream.web.cli``, ``benchmarks.cli``) import these from here, not from ``stream.cli``, which
imports them: no command module and the CLI import each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from stream.settings import Settings, get_settings

_EXPECTED_ERRORS = (OSError, ValueError, DBAPIError, RuntimeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Turn expected failures (unreachable broker or database, missing files) into a one-line
    ``ClickException`` that names what was being done."""
    try:
        yield
    except click.ClickException:
        raise
    except _EXPECTED_ERRORS as exc:
        raise click.ClickException(f"{action}: {_first_line(exc)}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with non-None command-line overrides applied."""
    try:
        base = get_settings()
        values = {k: v for k, v in overrides.items() if v is not None}
        return base.model_copy(update=values) if values else base
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"TWEETWATCH_{field.upper()}" if field in Settings.model_fields else field
        raise click.ClickException(f"invalid setting {env}: {err['msg']}") from None


def run_async(action: str, coro_factory: Callable[[], Any]) -> Any:
    """Run a coroutine to completion; expected failures become one-line errors."""
    # aiokafka logs each failed connection attempt; the one-line error below says it once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with user_errors(action):
        return asyncio.run(coro_factory())

"""What the agents do when something fails: wait out an outage, or set the message aside.

Two kinds of failure reach an agent, and they need opposite answers:

- an **outage** (the database, the broker or the network unreachable) is about the world, not
  the message: the same message will succeed later, so the agent pauses and retries with
  backoff, and nothing is skipped;
- anything else is about the message (a value the database refuses, a bug that one input
  triggers): retrying it would fail forever and, since it is never acknowledged, come back
  after every restart. Such a **poison message** goes to the dead-letter topic with the
  exception as its reason, and the stream goes on.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTAGE_RETRY_MAX_S = 30.0


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says a service is unreachable (retry) rather than the input is bad."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError)
    return isinstance(exc, ConnectionError | TimeoutError | socket.gaierror)


def failure_reason(exc: BaseException) -> str:
    """The dead-letter reason for a message that failed with ``exc``: type and first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (%s); retrying in %.1fs", what,
                    failure_reason(exc) if exc else "?", delay)
    return before_sleep


async def retry_outages(step: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``step`` until it succeeds or fails with something other than an outage.

    Outages are retried with exponential backoff (0.5 s doubling to 30 s) and one log line
    per attempt; any other exception propagates at once, for the caller's poison rule.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_outage),
        wait=wait_exponential(multiplier=0.5, max=OUTAGE_RETRY_MAX_S),
        before_sleep=_log_retry(what),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await step()
    raise AssertionError("unreachable: tenacity either returns or reraises")

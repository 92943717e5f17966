"""The worker process's last lines of defence: it always exits, and its log stays readable.

Faust's graceful shutdown waits for the consumer, the producer and every agent to stop. When
the broker or the database is down those waits can last for ever (seen: workers idle in
``Worker.stop_and_shutdown`` for minutes after SIGTERM or an agent crash), and a process that
never exits is never restarted. So every stop arms a watchdog thread that ends the process
after a deadline, whatever the event loop is doing.

During a broker outage aiokafka logs every failed connection attempt, hundreds of lines a
second; :class:`RepeatFilter` keeps one line per library message template per interval and
says how many it held back.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import faust

log = logging.getLogger(__name__)

STOP_DEADLINE_S = 7.0  # SIGTERM to exit, at most (container runtimes wait 10 s by default)
CRASH_DEADLINE_S = 5.0  # an agent crash to exit status 1, at most
REPEAT_INTERVAL_S = 10.0

_armed = threading.Lock()


def arm_exit_watchdog(deadline_s: float, status: int, why: str) -> None:
    """End the process with ``status`` in ``deadline_s`` unless it has exited by then.
    Only the first call counts: a crash during a stop keeps the stop's deadline."""
    if not _armed.acquire(blocking=False):
        return

    def expire() -> None:
        time.sleep(deadline_s)
        sys.stderr.write(f"tweetwatch worker: {why}; still running after {deadline_s:.0f} s, "
                         f"exiting with status {status}\n")
        sys.stderr.flush()
        logging.shutdown()
        os._exit(status)

    threading.Thread(target=expire, name="exit-watchdog", daemon=True).start()


async def crash_worker(app: faust.App, exc: BaseException) -> None:
    """Stop the worker with exit status 1 after an agent failed beyond the poison rule,
    within ``CRASH_DEADLINE_S`` even if the graceful stop hangs."""
    arm_exit_watchdog(CRASH_DEADLINE_S, 1, f"agent crashed ({type(exc).__name__})")
    await app.crash(exc)


class RepeatFilter(logging.Filter):
    """Let one record per (logger, message template) through per ``interval_s``; the next one
    let through says how many were held back in between."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] == "stream":
            return True  # our own lines are already one per event or per retry interval
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            seen = self._last.get(key)
            if seen is not None and now - seen[0] < self.interval_s:
                self._last[key] = (seen[0], seen[1] + 1)
                return False
            held = seen[1] if seen is not None else 0
            self._last[key] = (now, 0)
            if len(self._last) > 10_000:
                self._last.clear()
        if held:
            record.msg = f"{record.msg} [{held} similar lines held back in {self.interval_s:.0f} s]"
        return True


class GuardedWorker(faust.Worker):
    """``faust.Worker`` that exits within ``STOP_DEADLINE_S`` of SIGTERM or SIGINT, and whose
    log lines repeat at most once per ``REPEAT_INTERVAL_S``."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        repeat = RepeatFilter()
        for handler in logger.handlers:
            handler.addFilter(repeat)

    def _schedule_shutdown(self, signal: signal.Signals) -> None:  # noqa: A002 - Mode's name
        arm_exit_watchdog(STOP_DEADLINE_S, 0, f"stopping on {signal.name}")
        super()._schedule_shutdown(signal)


def run_worker(app: faust.App, loglevel: str, **kwargs: Any) -> None:
    """Run ``app`` in a :class:`GuardedWorker` until stopped (never returns)."""
    GuardedWorker(app, loglevel=loglevel.upper(), quiet=True, **kwargs).execute_from_commandline()

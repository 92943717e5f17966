"""The worker's repeat filter: a library that logs a failure hundreds of times a second (as
aiokafka does while the broker is down) costs one line per interval."""

from __future__ import annotations

import logging
import time

from stream.worker_guard import RepeatFilter


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_repeats_of_a_library_line_are_held_back_and_counted() -> None:
    repeat = RepeatFilter(interval_s=0.2)
    records = [_record("aiokafka.conn", "Unable connect to node %s: %s", 1, "refused")
               for _ in range(500)]
    passed = [r for r in records if repeat.filter(r)]
    assert len(passed) == 1
    assert repeat.filter(_record("aiokafka.conn", "another template %s", 1))
    time.sleep(0.25)
    later = _record("aiokafka.conn", "Unable connect to node %s: %s", 1, "refused")
    assert repeat.filter(later)
    assert "499 similar lines held back" in later.getMessage()


def test_the_products_own_lines_always_pass() -> None:
    repeat = RepeatFilter(interval_s=60)
    assert all(repeat.filter(_record("stream.alert_agent", "alert %s", i)) for i in range(50))

"""Per-key lanes: messages of one key in order, different keys side by side.

The alert agent's work per message can wait seconds on an LLM. Awaiting each message in turn
would queue every entity's alerts behind one slow call; Faust's agent ``concurrency`` would
lose the per-entity order the alert policy relies on. A lane per key keeps both: one task per
key that has work, handling that key's messages in arrival order, with at most
``max_pending`` messages accepted but not yet handled (backpressure on the consumer).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class KeyedLanes(Generic[T]):
    """Run ``handle(item)`` for each submitted item, in order per key, concurrently across
    keys. ``handle`` must deal with its own errors: one that escapes is kept and raised by
    the next :meth:`submit` (and by :meth:`join`), and that lane stops."""

    def __init__(self, handle: Callable[[T], Awaitable[None]], max_pending: int) -> None:
        self._handle = handle
        self._slots = asyncio.Semaphore(max_pending)
        self._lanes: dict[Hashable, deque[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    @property
    def pending(self) -> int:
        """Items accepted and not yet handled."""
        return sum(len(lane) for lane in self._lanes.values())

    async def submit(self, key: Hashable, item: T) -> None:
        """Queue ``item`` behind the earlier items of ``key``; waits while ``max_pending``
        items are in hand."""
        self._raise_error()
        await self._slots.acquire()
        self._raise_error()
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append(item)
            return
        self._lanes[key] = deque([item])
        task = asyncio.create_task(self._drain(key), name=f"lane-{key!r:.40}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until every submitted item is handled."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._raise_error()

    async def close(self) -> None:
        """Cancel the lanes; unhandled items are dropped (their messages are not acked, so
        Kafka delivers them again)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._lanes.clear()

    async def _drain(self, key: Hashable) -> None:
        lane = self._lanes[key]
        try:
            while lane:
                try:
                    await self._handle(lane[0])
                except Exception as exc:
                    self._error = self._error or exc
                    raise
                finally:
                    lane.popleft()
                    self._slots.release()
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]
            # Items left behind an error are never handled: give their slots back.
            for _ in lane:
                self._slots.release()
            lane.clear()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

"""Per-key lanes: messages of one key in order, different keys side by side.

The alert agent's work per message can wait seconds on an LLM. Awaiting each message in turn
would queue every entity's alerts behind one slow call; Faust's agent ``concurrency`` would
lose the per-entity order the alert policy relies on. A lane per key keeps both: one task per
key that has work, handling that key's messages in arrival order, with at most
``max_pending`` messages accepted but not yet handled (backpressure on the consumer).
Finishing out of order, the messages must still be acknowledged in offset order
(:class:`InOrderAcks`), or a commit could pass over one still in a lane.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
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


@dataclass(slots=True)
class Ticket(Generic[T]):
    """One taken item, waiting to be acknowledged."""

    item: T
    source: Hashable
    done: bool = False


class InOrderAcks(Generic[T]):
    """Acknowledge items in the order they were taken, per source (a topic partition), even
    when they finish out of order.

    Faust commits the first run of consecutive acknowledged offsets it holds, and when the
    partition has no committed offset yet it does not check that the run starts where the
    last commit ended: acknowledging offset 12 before 10 and 11 would commit past them, and a
    crash or a rebalance would then lose them. So a finished item is acknowledged only once
    every earlier item of its partition has finished too.
    """

    def __init__(self, ack: Callable[[T], None]) -> None:
        self._ack = ack
        self._queues: dict[Hashable, deque[Ticket[T]]] = {}

    def take(self, source: Hashable, item: T) -> Ticket[T]:
        """Register ``item`` behind the earlier items of ``source``."""
        ticket = Ticket(item, source)
        self._queues.setdefault(source, deque()).append(ticket)
        return ticket

    def finish(self, ticket: Ticket[T]) -> None:
        """Mark the ticket done and acknowledge every done item at the head of its queue."""
        ticket.done = True
        queue = self._queues.get(ticket.source)
        while queue and queue[0].done:
            self._ack(queue.popleft().item)
        if queue is not None and not queue:
            del self._queues[ticket.source]

"""Per-key lanes and in-order acknowledgement, on the event loop with no services."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.lanes import InOrderAcks, KeyedLanes


async def test_lanes_keep_each_keys_order_and_run_keys_side_by_side() -> None:
    done: list[tuple[str, int]] = []
    gate = asyncio.Event()

    async def handle(item: tuple[str, int]) -> None:
        if item[0] == "slow":
            await gate.wait()
        done.append(item)

    lanes: KeyedLanes[tuple[str, int]] = KeyedLanes(handle, max_pending=100)
    for i in range(3):
        await lanes.submit("slow", ("slow", i))
        await lanes.submit("fast", ("fast", i))
    await asyncio.sleep(0.01)
    assert done == [("fast", 0), ("fast", 1), ("fast", 2)]  # not behind the slow key
    gate.set()
    await lanes.join()
    assert [i for k, i in done if k == "slow"] == [0, 1, 2]


async def test_submit_waits_while_max_pending_items_are_in_hand() -> None:
    release = asyncio.Event()

    async def handle(item: int) -> None:
        await release.wait()

    lanes: KeyedLanes[int] = KeyedLanes(handle, max_pending=2)
    await lanes.submit("a", 1)
    await lanes.submit("b", 2)
    third = asyncio.create_task(lanes.submit("c", 3))
    await asyncio.sleep(0.01)
    assert not third.done()
    release.set()
    await third
    await lanes.join()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=60),
       st.randoms(use_true_random=False))
def test_acks_follow_offsets_whatever_order_items_finish_in(partitions: list[int],
                                                            rng: random.Random) -> None:
    acked: list[tuple[int, int]] = []
    acks: InOrderAcks[tuple[int, int]] = InOrderAcks(acked.append)
    tickets = []
    offsets = dict.fromkeys(range(4), 0)
    for partition in partitions:
        tickets.append(acks.take(partition, (partition, offsets[partition])))
        offsets[partition] += 1
    rng.shuffle(tickets)
    for ticket in tickets:
        acks.finish(ticket)
        # Never an offset acknowledged while an earlier one of its partition is unfinished.
        for partition in range(4):
            mine = [o for p, o in acked if p == partition]
            assert mine == list(range(len(mine)))
    assert sorted(acked) == sorted((p, o) for p, n in offsets.items() for o in range(n))

"""The group-capable broker (Tansu): several members share one group's partitions, each
message is consumed once, committed offsets and consumer lag read back; bad topics say why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.broker import BrokerError
from stream.consumer_lag import group_lag
from stream.tansu import TansuBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    with TansuBroker() as broker:
        yield broker


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    # Idempotence stays off: Tansu's idempotent producer fails (see stream.tansu).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, f"m{i}".encode(), key=str(i).encode())
                               for i in range(n)])
    finally:
        await producer.stop()


async def _two_members(bootstrap: str, topic: str, group: str, n: int
                       ) -> tuple[list[set[int]], Counter]:
    members = [AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=6000, heartbeat_interval_ms=500)
               for _ in range(2)]
    for member in members:
        await member.start()
    seen: Counter = Counter()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        # Both members own partitions before any message is counted as consumed.
        while not all(m.assignment() for m in members) or \
                sum(len(m.assignment()) for m in members) < 4:
            await asyncio.gather(*[m.getmany(timeout_ms=200, max_records=1) for m in members])
            assert loop.time() < deadline, "the group never split its partitions"
        for member in members:
            for tp in member.assignment():
                member.seek(tp, 0)
        while sum(seen.values()) < n and loop.time() < deadline:
            for member in members:
                for records in (await member.getmany(timeout_ms=100)).values():
                    seen.update(r.value for r in records)
        assignments = [{tp.partition for tp in m.assignment()} for m in members]
        for member in members:
            await member.commit()
    finally:
        for member in members:
            await member.stop()
    return assignments, seen


def test_two_members_split_the_partitions_and_lag_reaches_zero(tansu: TansuBroker) -> None:
    tansu.create_topics(["split"], partitions=4)
    asyncio.run(_produce(tansu.bootstrap_servers, "split", 2000))
    before = asyncio.run(group_lag(tansu.bootstrap_servers, "g-split", "split"))
    # The log end comes from fetches: ListOffsets would report one past the last batch start.
    assert sum(p.end for p in before) == 2000
    assert all(p.committed is None for p in before)

    assignments, seen = asyncio.run(_two_members(tansu.bootstrap_servers, "split", "g-split",
                                                 2000))
    assert all(assignments) and not (assignments[0] & assignments[1])
    assert assignments[0] | assignments[1] == {0, 1, 2, 3}
    assert len(seen) == 2000 and max(seen.values()) == 1
    after = asyncio.run(group_lag(tansu.bootstrap_servers, "g-split", "split"))
    assert [p.lag for p in after] == [0, 0, 0, 0]


def test_topic_errors_are_one_line(tansu: TansuBroker) -> None:
    tansu.create_topic("twice", 2)
    with pytest.raises(BrokerError, match="cannot create topic 'twice': .*already exists"):
        tansu.create_topic("twice", 2)
    stopped = TansuBroker()
    with pytest.raises(BrokerError, match="not running"):
        stopped.create_topic("x")


def test_broker_command_runs_tansu_with_the_app_topics() -> None:
    """`tweetwatch broker --kind tansu` prints its address, has the app's topics, stops on
    SIGTERM."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TWEETWATCH_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["TWEETWATCH_TOPIC_PARTITIONS"] = "3"
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "broker", "--kind", "tansu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:"), line
        bootstrap = line.strip().split("=", 1)[1]
        lags = asyncio.run(group_lag(bootstrap, "nobody", "tweets"))
        assert [p.partition for p in lags] == [0, 1, 2]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0

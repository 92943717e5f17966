"""The embedded broker speaks the Kafka protocol: producers, consumer groups, committed
offsets (what the worker relies on)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.broker import BrokerError, EmbeddedBroker, find_librdkafka


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, f"m{i}".encode(), key=str(i).encode())
                               for i in range(n)])
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, group: str, want: int,
                   timeout_s: float = 10.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=3000, heartbeat_interval_ms=500)
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                got += [r.value for r in records]
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_library_is_found() -> None:
    assert "rdkafka" in find_librdkafka().name


async def test_produce_consume_and_committed_offsets() -> None:
    with EmbeddedBroker() as broker:
        assert broker.running and broker.bootstrap_servers.startswith("127.0.0.1:")
        broker.create_topic("events", partitions=3)
        await _produce(broker.bootstrap_servers, "events", 30)
        first = await _consume(broker.bootstrap_servers, "events", "g1", 30)
        assert sorted(first) == sorted(f"m{i}".encode() for i in range(30))
        # The group's offsets were committed: a new member of the group sees nothing old.
        assert await _consume(broker.bootstrap_servers, "events", "g1", 1, timeout_s=2) == []
        # Another group reads everything again.
        assert len(await _consume(broker.bootstrap_servers, "events", "g2", 30)) == 30
    assert not broker.running and broker.bootstrap_servers == ""


def test_topics_need_a_running_broker() -> None:
    broker = EmbeddedBroker()
    with pytest.raises(BrokerError, match="not running"):
        broker.create_topic("x")
    broker.stop()  # stopping a stopped broker is harmless

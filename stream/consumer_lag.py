"""Consumer lag of a group on a topic: log end minus committed offset, per partition.

The log end is taken from a fetch response's high watermark, not from ListOffsets: Tansu
answers ListOffsets(latest) with the base offset of the last record batch + 1, which is wrong
whenever a batch holds several records (see ``stream.tansu``); the high watermark of a fetch is
right on Tansu and on Kafka alike. The group's committed offsets are read by a consumer that
only assigns partitions (it never joins the group, so it triggers no rebalance) and never
commits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition: its log end, the group's committed offset (None: nothing committed)."""

    partition: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


async def log_end_offsets(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                          timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """High watermark of every partition, from fetches (the consumer must have them assigned)."""
    for tp in partitions:
        consumer.seek(tp, 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    ends: dict[TopicPartition, int] = {}
    while True:
        await consumer.getmany(*partitions, timeout_ms=200, max_records=1)
        for tp in partitions:
            high = consumer.highwater(tp)
            if high is not None:
                ends[tp] = high
        if len(ends) == len(partitions):
            return ends
        if loop.time() > deadline:
            missing = sorted(tp.partition for tp in partitions if tp not in ends)
            raise TimeoutError(f"no high watermark for partitions {missing} in {timeout_s}s")


async def group_lag(bootstrap_servers: str, group: str, topic: str,
                    timeout_s: float = 10.0) -> list[PartitionLag]:
    """Lag of ``group`` on every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # fetches the cluster's metadata
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            raise ValueError(f"topic {topic!r} not found on {bootstrap_servers}")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await log_end_offsets(consumer, tps, timeout_s)
        return [PartitionLag(tp.partition, ends[tp], await consumer.committed(tp))
                for tp in tps]
    finally:
        await consumer.stop()

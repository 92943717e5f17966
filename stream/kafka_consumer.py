"""Kafka client glue: Faust's aiokafka transport with a configurable fetch wait for the
worker's consumer, and the broker check the worker runs before it starts.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Apache Kafka answers a
fetch as soon as data arrives, so there the value only paces idle polling; librdkafka's mock
cluster (the embedded broker) holds every empty fetch for the full wait even when data arrives
meanwhile, so an idle worker saw each new tweet up to 1.5 s late: publish-to-commit p50 1.22 s
at 300 tweets/s with 1500 ms, 0.24 s with 50 ms (``tweetwatch bench pipeline``, same machine,
back to back). ``kafka_fetch_max_wait_ms`` sets it.

The consumer also logs a warning for every hole in a partition's offsets. Faust fills such a
gap as if its messages had been acknowledged (it expects them on compacted topics), so they
are never processed and later commits pass them. The app's topics are not compacted, so on
Kafka no gap is expected; Tansu 0.6.0 (``stream.tansu``) makes a later batch readable before
an earlier one when several producers write to one partition, and a consumer at the log's end
skips the earlier one: the warning names what was skipped.

And it never commits past an offset that was not acknowledged. Faust computes the offset to
commit from the acknowledged offsets of a partition but lets the first of them be one past the
committed offset: with ``c`` committed (the next offset to read, Kafka's convention) and
``[c+1, c+2]`` acknowledged it commits ``c+3``, and whoever reads the partition after a
rebalance or a crash never sees ``c``. That needs acknowledgements out of offset order (the
alert agent's per-entity lanes finishing a later message first); the agent acknowledges in
offset order per partition (``InOrderAcks``), and this guard keeps a slip there from losing a
message.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP

log = logging.getLogger(__name__)


def transport_class(fetch_max_wait_ms: int) -> type[driver.Transport]:
    """The aiokafka transport whose worker consumer waits at most ``fetch_max_wait_ms``."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka reads this when the consumer starts (its fetcher is built then).
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class WaitConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
            # Called with the last offset read + 1 and the offset just read.
            log.warning("gap in %s partition %d: offsets %d..%d were never delivered; Faust "
                        "counts them as acknowledged", tp.topic, tp.partition, offset_from,
                        offset_to - 1)
            await super()._add_gap(tp, offset_from, offset_to)

        def _new_offset(self, tp: TP) -> int | None:
            return None if holds_commit(self, tp) else super()._new_offset(tp)

    class Transport(driver.Transport):
        Consumer = WaitConsumer

    return Transport


async def check_broker(bootstrap_servers: str, timeout_s: float = 15.0) -> None:
    """Fetch the cluster's metadata once: a worker whose broker cannot be reached fails at
    start with one line, instead of Faust's traceback (a broker lost later is waited out)."""
    import asyncio

    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    except TimeoutError:
        raise ConnectionError(f"no answer within {timeout_s:.0f} s") from None
    finally:
        await client.close()


def holds_commit(consumer: Any, tp: TP) -> bool:
    """True while ``tp``'s committed offset itself is unacknowledged but later ones are: then
    nothing may be committed for ``tp`` (see the module docstring). Partitions with Faust's gap
    bookkeeping are left to Faust's own rule, which fills the gap first."""
    acked = consumer._acked[tp]
    committed = consumer._committed_offset[tp]
    if not acked or committed is None or consumer._gap.get(tp):
        return False
    return min(acked) > committed

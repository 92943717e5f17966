"""Kafka client glue: Faust's aiokafka transport with a configurable fetch wait for the
worker's consumer, and the broker check the worker runs before it starts.

Faust hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Apache Kafka answers a
fetch as soon as data arrives, so there the value only paces idle polling; librdkafka's mock
cluster (the embedded broker) holds every empty fetch for the full wait even when data arrives
meanwhile, so an idle worker saw each new tweet up to 1.5 s late: publish-to-commit p50 1.22 s
at 300 tweets/s with 1500 ms, 0.24 s with 50 ms (``tweetwatch bench pipeline``, same machine,
back to back). ``kafka_fetch_max_wait_ms`` sets it.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver


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

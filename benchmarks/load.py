"""The load generator: real tweets, sampled with replacement, published at a fixed rate.

The producer is confluent-kafka (librdkafka, C threads) rather than the product's aiokafka
publisher, because the load generator shares the two CPUs with the system under test and must
cost as little as possible per message. Every record carries its publish time as
``created_at`` (stored by the worker in ``tweets.created_at``); the worker stamps its commit
time with the same machine clock (``time.time()``), so latency is one clock minus itself.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import KafkaException, Producer

from stream.publish import REPLAY_SOURCES, read_shared_tweets

_POLL_EVERY = 1000


def sample_tweets(data_dir: Path, count: int, seed: int = 7) -> list[str]:
    """``count`` real tweets from the shared SemEval test files, sampled with replacement."""
    pool = [t for source in REPLAY_SOURCES for t in read_shared_tweets(data_dir, source)]
    rng = random.Random(seed)
    return [rng.choice(pool) for _ in range(count)]


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What the load generator did: how many, over which wall-clock interval."""

    sent: int
    started: float
    finished: float

    @property
    def offered_rate(self) -> float:
        return self.sent / max(self.finished - self.started, 1e-9)


def make_producer(bootstrap_servers: str) -> Producer:
    """A producer with the product's durability (acks=all) and a short linger."""
    return Producer({"bootstrap.servers": bootstrap_servers, "acks": "all", "linger.ms": 5,
                     "queue.buffering.max.messages": 1_000_000, "log_level": 3})


def publish_tweets(producer: Producer, topics: Sequence[str], texts: Sequence[str],
                   id_prefix: str, rate: float = 0.0,
                   on_progress: Callable[[int], None] | None = None) -> PublishResult:
    """Publish ``texts`` as tweet records (ids ``<prefix>-<n>``, tweet n to
    ``topics[n % len(topics)]``) at ``rate`` per second (0 = as fast as the producer goes);
    returns once the broker acknowledged all of them."""
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    started = time.time()
    for n, text in enumerate(texts):
        if rate > 0:
            ahead = started + n / rate - time.time()
            if ahead > 0.001:
                time.sleep(ahead)
        tweet_id = f"{id_prefix}-{n}"
        record = {"v": 1, "id": tweet_id, "text": text,
                  "created_at": datetime.now(UTC).isoformat()}
        value = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        while True:
            try:
                producer.produce(topics[n % len(topics)], value, key=tweet_id.encode(),
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        if n % _POLL_EVERY == 0:
            producer.poll(0)
            if on_progress is not None and n:
                on_progress(_POLL_EVERY)
    remaining = producer.flush(60)
    finished = time.time()
    if remaining or errors:
        reason = errors[0] if errors else f"{remaining} messages undelivered after 60 s"
        raise KafkaException(f"publishing to {', '.join(topics)} failed: {reason}")
    return PublishResult(len(texts), started, finished)

"""Publishing tweets to the input topic: from files/stdin (`tweetwatch publish`) and from the
shared research data (the demo's replay).

Input lines are either JSON objects (sent as they are, so the worker's validation decides and
bad ones land in the dead-letter topic, as they would from any producer) or plain text, which
becomes a ``{"v": 1, "id", "text"}`` record whose id is derived from the text: publishing the
same file twice stores each tweet once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from stream.records import tweet_record

# Real tweets in the shared data, by name: (file relative to the data folder, text column).
REPLAY_SOURCES: dict[str, tuple[str, int]] = {
    "topic": ("targeted_sentiment/semeval2017_topic/test.tsv", 2),
    "sentiment": ("sentiment/test.tsv", 1),
}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the input topic."""

    key: bytes | None
    value: bytes
    line: int | None = None  # where it came from in the input, for messages about it


def text_id(text: str) -> str:
    """Stable id for a plain-text tweet (same text, same id)."""
    return "txt-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def line_to_message(line: str, number: int | None = None) -> Outgoing | None:
    """A message for one input line; None for a blank line.

    Lines that start with ``{`` are JSON records and are sent unchanged (keyed by their id
    when it can be read); anything else is the text of a tweet.
    """
    stripped = line.strip()
    if not stripped:
        return None
    if stripped.startswith("{"):
        key: bytes | None = None
        try:
            doc = json.loads(stripped)
            if isinstance(doc, dict) and isinstance(doc.get("id"), str | int):
                key = str(doc["id"]).encode("utf-8")[:1024]
        except (ValueError, RecursionError):
            pass  # the worker rejects it to the dead-letter topic with the reason
        return Outgoing(key, stripped.encode("utf-8", "surrogateescape"), number)
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError:
        # Undecodable bytes (read with surrogateescape) go out as they came; the worker
        # rejects them to the dead-letter topic as invalid UTF-8.
        return Outgoing(None, stripped.encode("utf-8", "surrogateescape"), number)
    tweet_id = text_id(stripped)
    return Outgoing(tweet_id.encode("utf-8"), tweet_record(tweet_id, stripped).to_json(), number)


def messages_from_lines(lines: Iterable[str]) -> Iterator[Outgoing]:
    """Messages for the non-blank lines, lazily (stdin can be endless)."""
    for number, line in enumerate(lines, start=1):
        message = line_to_message(line, number)
        if message is not None:
            yield message


def read_shared_tweets(data_dir: Path, source: str = "topic") -> list[str]:
    """Tweet texts of one shared data file (see ``REPLAY_SOURCES``)."""
    if source not in REPLAY_SOURCES:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(REPLAY_SOURCES)}")
    relative, column = REPLAY_SOURCES[source]
    path = Path(data_dir) / relative
    if not path.is_file():
        raise FileNotFoundError(f"shared data file not found: {path} (set TWEETWATCH_DATA_DIR)")
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) > column and parts[column].strip():
                texts.append(parts[column].strip())
    return texts


def replay_messages(data_dir: Path, count: int, source: str = "topic",
                    seed: int = 13, span: timedelta | None = None,
                    end: datetime | None = None) -> list[Outgoing]:
    """``count`` real tweets from the shared data, shuffled with a fixed seed, each with a
    replay id (``<source>-<line>``) so a replay is idempotent too.

    With ``span``, the tweets' ``created_at`` are spread evenly over the ``span`` before
    ``end`` (default: now), in replay order: spike detection judges event time, so a replay of
    a few seconds then shows hours of windows, each entity's baseline and the spikes against
    it, instead of one window holding every tweet."""
    texts = read_shared_tweets(data_dir, source)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    chosen = order[: min(count, len(order))]
    end = end or datetime.now(UTC)
    step = span / max(1, len(chosen)) if span else None
    out = []
    for position, index in enumerate(chosen):
        tweet_id = f"{source}-{index}"
        at = None if step is None else end - step * (len(chosen) - 1 - position)
        out.append(Outgoing(tweet_id.encode(),
                            tweet_record(tweet_id, texts[index], created_at=at).to_json()))
    return out


async def _paced(messages: Iterable[Outgoing], rate: float) -> AsyncIterator[Outgoing]:
    start = time.monotonic()
    for sent, message in enumerate(messages):
        if rate > 0:
            due = start + sent / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        yield message


async def publish(bootstrap_servers: str, topic: str, messages: Iterable[Outgoing],
                  rate: float = 0.0, on_sent: Callable[[int], None] | None = None,
                  on_skipped: Callable[[Outgoing, str], None] | None = None) -> int:
    """Send messages (at ``rate`` per second, 0 = as fast as possible); returns how many the
    broker acknowledged. A message the producer refuses outright (larger than a request may
    be) is reported to ``on_skipped`` with the reason, and the rest still go out."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()  # releases the half-started client before reporting
        raise
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        async for message in _paced(messages, rate):
            try:
                pending.append(await producer.send(topic, message.value, key=message.key))
            except MessageSizeTooLargeError as exc:
                if on_skipped is None:
                    raise
                on_skipped(message, str(exc).strip().splitlines()[0])
                continue
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                sent += len(pending)
                if on_sent:
                    on_sent(len(pending))
                pending = []
        await asyncio.gather(*pending)
        sent += len(pending)
        if on_sent and pending:
            on_sent(len(pending))
    finally:
        await producer.stop()
    return sent


def read_lines(source: IO[str]) -> Iterator[str]:
    """Lines of a text stream (a file or stdin), newline stripped."""
    for line in source:
        yield line.rstrip("\n")

"""The analyze agent: tweets in, rows in the database and negative mentions out.

Per micro-batch (``stream.take_events(max_batch, within=max_latency)``):
validate every message (rejects go to the dead-letter topic with the raw bytes and a reason),
run the model in a thread pool so the event loop never blocks, then, inside ONE database
transaction, insert tweets and mentions idempotently and publish the negative mentions of the
newly stored tweets (waiting for the broker's acknowledgement). Only after the commit are the
batch's offsets acknowledged to Faust.

Why the ``incref``: Faust's ``take_events`` acknowledges the buffered events in a ``finally``
when the generator resumes *or is closed* -- also when the agent body failed or was cancelled
half-way. Taking one extra reference on each message before doing any work, and releasing it
only after the commit, makes the failure path leave the offsets uncommitted, so the batch is
delivered again after a restart (and ``ON CONFLICT DO NOTHING`` absorbs what was stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import IO, TYPE_CHECKING, Any

import faust
from faust.types import EventT, StreamT
from faust.types.tuples import Message
from sqlalchemy.ext.asyncio import AsyncEngine

from stream import metrics
from stream.faults import failure_reason, is_outage, retry_outages
from stream.inference import Analyzer
from stream.matcher import WatchMatcher
from stream.predictions import TweetPrediction
from stream.records import (
    InvalidTweet,
    TweetIn,
    check_time,
    dead_letter_record,
    encode,
    is_negative,
    negative_entity_record,
    parse_tweet,
)
from stream.settings import Settings
from stream.storage import create_engine, store_batch
from stream.watch_store import WatchlistFollower
from stream.worker_guard import crash_worker

if TYPE_CHECKING:
    from stream.topics import Topics

log = logging.getLogger(__name__)

_STATS_EVERY_S = 10.0


@dataclass(slots=True)
class BatchStats:
    """Running totals, logged every few seconds (a worker's pulse in its log)."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    negative: int = 0
    since: float = field(default_factory=time.monotonic)

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self.since >= _STATS_EVERY_S:
            log.info("analyze: %d batches, %d tweets stored, %d duplicates, %d to DLQ, "
                     "%d negative mentions", self.batches, self.stored, self.duplicates,
                     self.rejected, self.negative)
            self.since = now


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What one batch's transaction did, and how long the database and the broker took."""

    stored: int
    negatives: int
    db_s: float
    kafka_s: float


def tweet_rows(tweets: Sequence[TweetIn], predictions: Sequence[TweetPrediction],
               created: Sequence[datetime], ingested_at: datetime,
               model_version: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for ``tweets`` and ``entity_mentions`` (timestamps in UTC)."""
    tweet_rows_: list[dict[str, Any]] = []
    mention_rows: list[dict[str, Any]] = []
    for tweet, pred, created_at in zip(tweets, predictions, created, strict=True):
        tweet_rows_.append({
            "id": tweet.id, "text": tweet.text, "created_at": created_at,
            "ingested_at": ingested_at, "author": tweet.author, "lang": tweet.lang,
            "sentiment": pred.sentiment, "p_negative": pred.probs[0],
            "p_neutral": pred.probs[1], "p_positive": pred.probs[2],
            "model_version": model_version,
        })
        for m in pred.mentions:
            mention_rows.append({
                "tweet_id": tweet.id, "start": m.start, "end": m.end, "entity": m.entity,
                "entity_key": m.entity_key, "type": m.type, "sentiment": m.sentiment,
                "score": m.score, "p_negative": m.probs[0], "created_at": created_at,
                "watch": m.watch,
            })
    return tweet_rows_, mention_rows


class BatchProcessor:
    """Everything the agent does with one micro-batch, apart from Faust's acknowledgement."""

    def __init__(self, settings: Settings, topics: Topics, analyzer: Analyzer,
                 engine: AsyncEngine, executor: ThreadPoolExecutor) -> None:
        self.settings = settings
        # One JSON line per committed batch (the pipeline benchmark's clock), when asked.
        self.trace: IO[str] | None = None
        if settings.batch_trace_path is not None:
            settings.batch_trace_path.parent.mkdir(parents=True, exist_ok=True)
            self.trace = open(settings.batch_trace_path, "a", encoding="utf-8")  # noqa: SIM115
        self.topics = topics
        self.analyzer = analyzer
        self.engine = engine
        self.executor = executor
        self.stats = BatchStats()
        self.watchlist = WatchlistFollower(engine, settings.watchlist_poll_s)

    async def process(self, events: Sequence[EventT]) -> None:
        """Validate, analyse, store and publish one batch; returns once it is committed."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        good: list[TweetIn] = []
        sources: list[Message] = []
        created: list[datetime] = []
        sends: list[asyncio.Future[Any]] = []
        seen: set[str] = set()
        for event in events:
            message = event.message
            try:
                tweet = parse_tweet(message.value, self.settings.max_text_chars)
            except InvalidTweet as exc:
                sends.append(await self._dead_letter(message, str(exc), now))
                continue
            if tweet.id in seen:  # same id twice in one batch: the first one is the tweet
                self.stats.duplicates += 1
                continue
            seen.add(tweet.id)
            good.append(tweet)
            sources.append(message)
            created.append(tweet.created_at or _message_time(message.timestamp, now))
        parsed = time.perf_counter()

        predictions: list[TweetPrediction | None] = []
        if good:
            predictions = await self._analyze(good, await self._matcher())
        for index in reversed(range(len(good))):
            if predictions[index] is None:
                reason = "analysis failed (model error, see the worker log)"
                sends.append(await self._dead_letter(sources[index], reason, now))
                del good[index], created[index], predictions[index]
        analysed = [p for p in predictions if p is not None]
        modelled = time.perf_counter()
        self.stats.rejected += len(sends)
        tweets, mentions = tweet_rows(good, analysed, created, now, self.analyzer.model_version)
        rows_done = time.perf_counter()
        result = await self._commit(good, analysed, created, tweets, mentions, sends)
        self.stats.batches += 1
        self.stats.maybe_log()
        if self.trace is not None:
            self.trace.write(json.dumps({
                "ingested_at": now.isoformat(), "committed": time.time(),
                "events": len(events), "stored": result.stored,
                "rejected": len(sends),
                "negative": result.negatives,
                "parse_s": parsed - started, "model_s": modelled - parsed,
                "rows_s": rows_done - modelled, "db_s": result.db_s, "kafka_s": result.kafka_s,
            }) + "\n")
            self.trace.flush()

    async def _matcher(self) -> WatchMatcher | None:
        """The current watchlist's matcher; while the database cannot be read, the last one."""
        try:
            return await self.watchlist.current()
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("cannot read the watchlist (%s); matching with the last one read",
                        failure_reason(exc))
            return self.watchlist.matcher

    async def _analyze(self, tweets: Sequence[TweetIn],
                       matcher: WatchMatcher | None = None) -> list[TweetPrediction | None]:
        """The model on the whole batch in the thread pool; if the batch fails, tweet by tweet,
        so one text the model cannot handle goes to the DLQ instead of stopping the stream."""
        loop = asyncio.get_running_loop()
        texts = [t.text for t in tweets]
        analyze = partial(self.analyzer.analyze, matcher=matcher)
        try:
            return list(await loop.run_in_executor(self.executor, analyze, texts))
        except Exception:
            log.exception("model failed on a batch of %d; retrying tweet by tweet", len(texts))
        results: list[TweetPrediction | None] = []
        for text in texts:
            try:
                results.append((await loop.run_in_executor(
                    self.executor, analyze, [text]))[0])
            except Exception:
                log.exception("model failed on one tweet; sending it to the DLQ")
                results.append(None)
        return results

    async def _dead_letter(self, message: Message, reason: str,
                           now: datetime) -> asyncio.Future[Any]:
        metrics.dead_letter(reason)
        record = dead_letter_record(message.value, reason, message.topic, message.partition,
                                    message.offset, now)
        return await self.topics.dlq.send(key=message.key, value=encode(record), force=True)

    async def _commit(self, good: Sequence[TweetIn], predictions: Sequence[TweetPrediction],
                      created: Sequence[datetime], tweets: list[dict[str, Any]],
                      mentions: list[dict[str, Any]],
                      sends: list[asyncio.Future[Any]]) -> CommitResult:
        """One transaction, retried with backoff while the database or the broker is
        unreachable, so an outage pauses the stream instead of losing or skipping messages.
        Anything else propagates to the poison rule (:meth:`process_or_dead_letter`)."""
        timings = {"began": 0.0, "kafka_s": 0.0}

        async def attempt() -> tuple[set[str], list[asyncio.Future[Any]]]:
            timings["began"] = time.perf_counter()
            timings["kafka_s"] = 0.0
            async with self.engine.begin() as conn:
                new_ids = await store_batch(conn, tweets, mentions)
                publishing = time.perf_counter()
                negatives = await self._publish_negatives(good, predictions, created, new_ids)
                # Delivery confirmed before the commit: a crash in between re-sends
                # (at-least-once) rather than loses.
                await asyncio.gather(*sends, *negatives)
                timings["kafka_s"] = time.perf_counter() - publishing
            return new_ids, negatives

        new_ids, negatives = await retry_outages(attempt, "storing a batch")
        self.stats.stored += len(new_ids)
        self.stats.duplicates += len(tweets) - len(new_ids)
        self.stats.negative += len(negatives)
        return CommitResult(stored=len(new_ids), negatives=len(negatives),
                            db_s=time.perf_counter() - timings["began"] - timings["kafka_s"],
                            kafka_s=timings["kafka_s"])

    async def _publish_negatives(self, good: Sequence[TweetIn],
                                 predictions: Sequence[TweetPrediction],
                                 created: Sequence[datetime],
                                 new_ids: set[str]) -> list[asyncio.Future[Any]]:
        """One record per newly stored tweet and negatively mentioned entity: a tweet that
        names an entity ten times is one complaint, not ten."""
        futures: list[asyncio.Future[Any]] = []
        threshold = self.settings.negative_threshold
        for tweet, pred, created_at in zip(good, predictions, created, strict=True):
            if tweet.id not in new_ids:
                continue  # stored, and its mentions published, by an earlier delivery
            published: set[str] = set()
            for mention in pred.mentions:
                if is_negative(mention, threshold) and mention.entity_key not in published:
                    published.add(mention.entity_key)
                    record = negative_entity_record(tweet, pred, mention, created_at)
                    futures.append(await self.topics.negative.send(
                        key=mention.entity_key.encode("utf-8"), value=encode(record),
                        force=True))
        return futures

    async def process_or_dead_letter(self, events: Sequence[EventT]) -> None:
        """:meth:`process`, with the poison-message rule: when a batch fails for a reason
        other than an outage, its messages are tried one by one, and each one that fails on
        its own goes to the dead-letter topic with the exception as the reason. The stream
        never stops for a message. (A message the batch attempt had already rejected may
        reach the dead-letter topic twice: at-least-once, like every topic here.)"""
        try:
            await retry_outages(lambda: self.process(events), "processing a batch")
            return
        except Exception as exc:
            if len(events) == 1:
                await self._dead_letter_failed(events[0].message, exc)
                return
            log.warning("batch of %d failed (%s); retrying message by message",
                        len(events), failure_reason(exc))
        for event in events:
            try:
                await retry_outages(lambda e=event: self.process([e]), "processing a message")
            except Exception as exc:
                await self._dead_letter_failed(event.message, exc)

    async def _dead_letter_failed(self, message: Message, exc: BaseException) -> None:
        reason = failure_reason(exc)
        log.error("message %s[%d]@%d to the DLQ: %s", message.topic, message.partition,
                  message.offset, reason, exc_info=exc)
        now = datetime.now(UTC)

        async def send() -> None:
            await (await self._dead_letter(message, reason, now))

        await retry_outages(send, "sending a dead letter")
        self.stats.rejected += 1


def _message_time(timestamp: float | None, fallback: datetime) -> datetime:
    """Kafka's message timestamp (seconds) when the tweet carries no ``created_at``; the
    ingest time when the producer set none, or one outside the range the pipeline accepts."""
    if not timestamp or timestamp <= 0:
        return fallback
    try:
        return check_time(datetime.fromtimestamp(timestamp, UTC), "timestamp")
    except (InvalidTweet, OverflowError, OSError, ValueError):
        return fallback


def register_analyze_agent(app: faust.App, settings: Settings, topics: Topics) -> None:
    """Add the analyze agent to ``app``; loads the model now so a missing artifact fails the
    worker at start, not at the first tweet."""
    analyzer = Analyzer(settings.model_dir, settings.model_variant, settings.intra_op_threads)
    executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="inference")
    engine = create_engine(settings.database_url)
    processor = BatchProcessor(settings, topics, analyzer, engine, executor)
    metrics.watch_batch_stats(processor.stats)
    within = settings.max_latency_ms / 1000.0

    async def analyze(stream: StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=within):
            for event in events:
                event.message.incref()  # see the module docstring
            started = time.perf_counter()
            try:
                await processor.process_or_dead_letter(events)
            except Exception as exc:
                # Only a dead letter that cannot be sent gets here. Stop the worker (exit
                # status 1) rather than leave a dead agent in a live process: the batch is
                # not acknowledged and is redelivered after a restart.
                log.exception("analyze agent failed; stopping the worker")
                await crash_worker(app, exc)
                raise
            metrics.batch_committed(events, time.perf_counter() - started)
            for event in events:
                event.message.ack(app.consumer)

    app.agent(topics.tweets, name="tweetwatch.analyze")(analyze)


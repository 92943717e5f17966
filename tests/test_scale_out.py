"""Scale-out on a real group-capable broker: several ``tweetwatch worker`` processes in ONE
consumer group, both agents, while one worker is killed (SIGKILL) and restarted and another
joins mid-stream.

The same real tweets are replayed twice: through the group (kill, restart, join) and through a
single worker, each on fresh topics and a fresh database. Afterwards:

- every tweet is stored exactly once;
- every negative mention of a stored tweet is on the negative topic (duplicates counted: a
  worker killed after its broker acknowledgement and before its commit sends a batch again);
- no alert is doubled in the table; on the alerts topic a duplicate can only come from the
  killed worker (an alert acknowledged by the broker but not yet committed when it died is
  sent again by the worker that takes the mention over): counted and reported, and none in
  the single-worker replay;
- the alerts are the single worker's alerts (same ids), except where the broker is Tansu and
  a worker logged the negative mention's offset as never delivered: Tansu 0.6.0 lets a reader
  at the log's end skip a batch when several producers write one partition (here: the
  workers writing the negative topic), and Faust then commits past it (see
  ``stream.kafka_consumer``); those are counted and reported, any other miss fails;
- the group's lag is 0 on every partition of both consumed topics.

The alert policy is set so that the decision depends on the data alone (every negative mention
fires, no cooldown; see ``_settings``): with the default spike policy a decision depends on
which mentions were stored when it was made (the window's count against its baseline) and on
which alert came first (the cooldown), so it varies with arrival order, even between two
single-worker runs. Alert ids are whatever ``stream.alerting`` computes.

The replays run once per module; the checks of the alert decisions are a test of their own.

Set ``SCALE_OUT_TWEETS`` for a shorter run while developing (30,000 by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.migrate import scratch_database
from stream.alerting import AlertPolicy, alert_id_for, window_for
from stream.consumer_lag import group_lag, log_end_offsets
from stream.publish import REPLAY_SOURCES, Outgoing, publish, read_shared_tweets
from stream.records import TweetIn
from stream.settings import Settings
from stream.worker_process import WorkerProcess

if TYPE_CHECKING:
    from conftest import Broker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TWEETS = int(os.environ.get("SCALE_OUT_TWEETS", "30000"))
PARTITIONS = 12
PUBLISH_RATE = 600.0  # tweets/s: the replay lasts long enough for the rebalances to land in it
STORE_TIMEOUT_S = 1800.0
LAG_TIMEOUT_S = 180.0
BASE_TIME = datetime(2026, 3, 1, tzinfo=UTC)


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(False)


def _replay(count: int) -> tuple[list[Outgoing], dict[str, str]]:
    """``count`` real tweets (SemEval-2017 test tweets of both replay sources, sampled with
    replacement, unique ids) with fixed ``created_at`` 100 ms apart, so both replays carry the
    same records."""
    pool = [t for source in REPLAY_SOURCES for t in read_shared_tweets(
        Settings().data_dir, source)]
    rng = random.Random(32)
    messages, texts = [], {}
    for n in range(count):
        tweet_id = f"scale-{n}"
        text = rng.choice(pool)
        created = BASE_TIME + timedelta(milliseconds=100 * n)
        record = TweetIn(id=tweet_id, text=text, created_at=created)
        messages.append(Outgoing(tweet_id.encode(), record.to_json()))
        texts[tweet_id] = text
    return messages, texts


def _settings(broker: Broker, db_url: str, tag: str) -> Settings:
    prefix = f"scale-{tag}-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, database_url=db_url,
        app_id=f"{prefix}-app", topic_tweets=f"{prefix}-tweets", topic_dlq=f"{prefix}-dlq",
        topic_negative=f"{prefix}-negative", topic_alerts=f"{prefix}-alerts",
        topic_partitions=PARTITIONS, max_batch=64, max_latency_ms=50,
        # Every negative mention fires, whatever arrived before it (module docstring): all
        # entities alert, one negative tweet is enough, no cooldown, and a one-day window
        # whose baseline (the days before the replay) is empty, so the spike threshold is the
        # sensitivity times 1.
        alert_scope="all", alert_window_s=86_400, alert_min_negative=1,
        alert_discovered_min_negative=1, alert_sensitivity=0.001,
        alert_discovered_sensitivity=0.001, alert_min_negative_share=0.0, alert_cooldown_s=0,
        llm_base_url=None,
    )
    broker.create_topics([settings.topic_tweets, settings.topic_dlq, settings.topic_negative,
                          settings.topic_alerts], PARTITIONS)
    return settings


@dataclass
class Run:
    """One replay: its workers, their batch traces and what happened when."""

    settings: Settings
    folder: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    traces: list[Path] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)

    def start_worker(self, name: str) -> WorkerProcess:
        trace = self.folder / f"{name}.trace.jsonl"
        worker = WorkerProcess(self.settings.model_copy(update={"batch_trace_path": trace}),
                               self.folder / f"{name}.log", agents=["analyze", "alert"])
        self.workers.append(worker.start())
        self.traces.append(trace)
        return worker

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def commits(self) -> list[tuple[float, int, int]]:
        """(commit time, events, stored) of every committed analyze batch, in time order."""
        out = []
        for path in self.traces:
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.endswith("}"):
                        batch = json.loads(line)
                        out.append((batch["committed"], batch["events"], batch["stored"]))
        return sorted(out)


def _stored(db_url: str) -> int:
    with psycopg.connect(_libpq(db_url)) as conn:
        return int(conn.execute("SELECT count(*) FROM tweets").fetchone()[0])


def _wait_stored(run: Run, db_url: str, at_least: int, killed: set[int]) -> int:
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while True:
        stored = _stored(db_url)
        if stored >= at_least:
            return stored
        for k, worker in enumerate(run.workers):
            assert k in killed or worker.alive(), (
                f"worker {k} exited ({worker.returncode()}):\n{worker.log_tail()}")
        assert time.monotonic() < deadline, f"{stored}/{at_least} stored after {STORE_TIMEOUT_S}s"
        time.sleep(0.5)


def _wait_no_lag(settings: Settings, run: Run, killed: set[int]) -> dict[str, list[int]]:
    """Until the group has committed the end of every partition of both consumed topics."""
    deadline = time.monotonic() + LAG_TIMEOUT_S
    while True:
        lags = {topic: [p.lag for p in asyncio.run(group_lag(
                    settings.kafka_bootstrap_servers, settings.app_id, topic))]
                for topic in (settings.topic_tweets, settings.topic_negative)}
        if all(lag == 0 for values in lags.values() for lag in values):
            return lags
        for k, worker in enumerate(run.workers):
            assert k in killed or worker.alive(), (
                f"worker {k} exited ({worker.returncode()}):\n{worker.log_tail()}")
        assert time.monotonic() < deadline, f"lag not 0 after {LAG_TIMEOUT_S}s: {lags}"
        time.sleep(2.0)


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic``, up to each partition's high watermark now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        ends = await log_end_offsets(consumer, tps)
        for tp in tps:
            consumer.seek(tp, 0)
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            assert loop.time() < deadline, f"could not read {topic} to its end"
            for batch in (await consumer.getmany(timeout_ms=200, max_records=5000)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(
                    r.topic, r.partition)])
        return records
    finally:
        await consumer.stop()


@dataclass
class Outcome:
    """What a replay left behind."""

    stored_ids: set[str]
    negatives_expected: Counter
    negatives_on_topic: Counter
    alerts_in_table: list[str]
    alerts_on_topic: Counter
    where: dict[tuple[str, str], list[tuple[int, int, int]]]


def _outcome(settings: Settings) -> Outcome:
    with psycopg.connect(_libpq(settings.database_url)) as conn:
        stored_ids = {r[0] for r in conn.execute("SELECT id FROM tweets")}
        # One record per stored tweet and negatively mentioned entity (stream.analyze_agent).
        negatives = Counter({(r[0], r[1]): 1 for r in conn.execute(
            "SELECT DISTINCT tweet_id, entity_key FROM entity_mentions "
            "WHERE sentiment = 'negative' AND p_negative >= %s",
            (settings.negative_threshold,))})
        alert_ids = [r[0] for r in conn.execute("SELECT alert_id FROM alerts")]
    on_topic = asyncio.run(_read_all(settings.kafka_bootstrap_servers, settings.topic_negative))
    alerts = asyncio.run(_read_all(settings.kafka_bootstrap_servers, settings.topic_alerts))
    out = Outcome(
        stored_ids=stored_ids, negatives_expected=negatives,
        negatives_on_topic=Counter((d["tweet_id"], d["entity_key"]) for d in
                                   (json.loads(r.value) for r in on_topic)),
        alerts_in_table=alert_ids,
        alerts_on_topic=Counter(json.loads(r.value)["alert_id"] for r in alerts),
        where={})
    for r in on_topic:
        d = json.loads(r.value)
        out.where.setdefault((d["tweet_id"], d["entity_key"]), []).append(
            (r.partition, r.offset, r.timestamp))
    return out


_GAP = re.compile(r"gap in (\S+) partition (\d+): offsets (\d+)\.\.(\d+) were never delivered")


def _logged_gaps(run: Run, topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of every message of ``topic`` a worker logged as never delivered."""
    gaps = set()
    for path in run.folder.glob("*.log"):
        for match in _GAP.finditer(path.read_text(encoding="utf-8", errors="replace")):
            if match.group(1) == topic:
                gaps.update((int(match.group(2)), o)
                            for o in range(int(match.group(3)), int(match.group(4)) + 1))
    return gaps


def _pauses(commits: list[tuple[float, int, int]], at: float, until: float) -> float:
    """Longest stretch without any analyze commit in the group between ``at`` and ``until``
    (the next event or the end): what a rebalance costs the whole group."""
    times = [at] + [c[0] for c in commits if at < c[0] <= until]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def _replay_in_group(broker: Broker, server: str, messages: list[Outgoing], folder: Path,
                     report: Callable[[str], None]) -> tuple[Outcome, Run, dict[str, Any]]:
    """3 workers in one group; kill one at 20 %, restart it at 40 %, add a 4th at 60 %."""
    total = len(messages)
    with scratch_database(server, f"tweetwatch_scale_{uuid.uuid4().hex[:8]}") as db_url:
        settings = _settings(broker, db_url, "group")
        run = Run(settings, folder / "group")
        killed: set[int] = set()
        started = time.time()
        for k in range(3):
            run.start_worker(f"worker{k}")
        publisher = threading.Thread(target=lambda: asyncio.run(publish(
            settings.kafka_bootstrap_servers, settings.topic_tweets, messages, PUBLISH_RATE)))
        publisher.start()
        try:
            _wait_stored(run, db_url, total // 5, killed)
            run.workers[1].kill()
            killed.add(1)
            run.events.append(("SIGKILL worker1", time.time()))
            _wait_stored(run, db_url, 2 * total // 5, killed)
            run.start_worker("worker1-restarted")
            run.events.append(("worker1 restarted", time.time()))
            _wait_stored(run, db_url, 3 * total // 5, killed)
            run.start_worker("worker3")
            run.events.append(("worker3 added", time.time()))
            publisher.join()
            _wait_stored(run, db_url, total, killed)
            stored_at = time.time()
            lags = _wait_no_lag(settings, run, killed)
            drained_at = time.time()
        finally:
            publisher.join()
            run.stop()
        outcome = _outcome(settings)
        commits = run.commits()
        stats = {
            "tweets": total, "wall_s": drained_at - started,
            "all_stored_after_s": stored_at - started,
            "analyze_events": sum(c[1] for c in commits),
            # Deliveries beyond one per tweet (a killed worker's last batches may be stored
            # without a trace line, so this is a lower bound).
            "redelivered": max(sum(c[1] for c in commits) - total, 0),
            "pauses_s": {name: _pauses(commits, at, until) for (name, at), until in zip(
                run.events, [at for _, at in run.events[1:]] + [stored_at], strict=True)},
            "lag": lags,
        }
        report(f"group replay: {json.dumps(stats)}")
        return outcome, run, stats


def _replay_alone(broker: Broker, server: str, messages: list[Outgoing], folder: Path,
                  report: Callable[[str], None]) -> Outcome:
    with scratch_database(server, f"tweetwatch_scale_{uuid.uuid4().hex[:8]}") as db_url:
        settings = _settings(broker, db_url, "single")
        run = Run(settings, folder / "single")
        started = time.time()
        run.start_worker("worker0")
        try:
            asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets,
                                messages))
            _wait_stored(run, db_url, len(messages), set())
            _wait_no_lag(settings, run, set())
        finally:
            run.stop()
        report(f"single-worker replay: {time.time() - started:.0f}s")
        return _outcome(settings)


@dataclass
class Replays:
    """Both replays of the same tweets and what the group's replay measured."""

    messages: list[Outgoing]
    texts: dict[str, str]
    group: Outcome
    alone: Outcome
    run: Run
    stats: dict[str, Any]
    lines: list[str]


@pytest.fixture(scope="module")
def replays(group_broker: Broker, pg_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Replays:
    """The group replay (kill, restart, join) and the single-worker replay, run once for the
    module's tests (scratch databases on the test server)."""
    messages, texts = _replay(TWEETS)
    lines: list[str] = []
    folder = tmp_path_factory.mktemp("scale-out")
    group, run, stats = _replay_in_group(group_broker, pg_url, messages, folder, lines.append)
    alone = _replay_alone(group_broker, pg_url, messages, folder, lines.append)
    return Replays(messages, texts, group, alone, run, stats, lines)


def _report(capsys: pytest.CaptureFixture[str], lines: list[str]) -> None:
    with capsys.disabled():
        for line in lines:
            print(f"\n[scale-out] {line}", flush=True)


def test_group_stores_every_tweet_once_and_publishes_every_negative(
        replays: Replays, capsys: pytest.CaptureFixture[str]) -> None:
    group, alone, stats = replays.group, replays.alone, replays.stats
    _report(capsys, replays.lines)
    # Every tweet stored exactly once (the primary key makes "more than once" impossible in
    # the table; the batch traces show how many deliveries the store absorbed). The group's
    # lag reached 0 on every partition of both consumed topics (checked in the replay).
    assert group.stored_ids == set(replays.texts)
    assert alone.stored_ids == set(replays.texts)
    assert all(lag == 0 for lags in stats["lag"].values() for lag in lags)

    # Every negative mention of a stored tweet is on the negative topic; nothing else is.
    assert group.negatives_expected, "no negative mention in the replayed tweets"
    missing = group.negatives_expected - group.negatives_on_topic
    assert not missing, f"negative mentions never published: {list(missing)[:5]}"
    assert set(group.negatives_on_topic) == set(group.negatives_expected)
    negative_dups = sum((group.negatives_on_topic - group.negatives_expected).values())
    # The single worker was never killed: no duplicate there.
    assert alone.negatives_on_topic == alone.negatives_expected

    # No alert doubled in the table; duplicates on the topic only from the kill (docstring).
    assert group.alerts_in_table, "no alert fired"
    assert len(group.alerts_in_table) == len(set(group.alerts_in_table))
    assert set(group.alerts_on_topic) == set(group.alerts_in_table)
    alert_dups = sum(n - 1 for n in group.alerts_on_topic.values())
    assert max(alone.alerts_on_topic.values()) == 1
    _report(capsys, [
        f"{len(group.stored_ids)} tweets stored once; {stats['redelivered']} deliveries "
        f"absorbed by the store; commit pauses {stats['pauses_s']}; "
        f"{sum(group.negatives_expected.values())} negative records expected, "
        f"{negative_dups} duplicates on the topic; {len(group.alerts_in_table)} alerts of the "
        f"group, {len(alone.alerts_in_table)} of the single worker, {alert_dups} duplicates "
        f"on the topic; lag 0 on {PARTITIONS} x 2 partitions"])


def test_group_alerts_are_the_single_workers(replays: Replays,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    group, alone, run = replays.group, replays.alone, replays.run
    # The same alert decisions as the single worker, and as the policy computes them from the
    # stored negative mentions (every negative mention fires: see the module docstring).
    policy = AlertPolicy.from_settings(run.settings)
    created = {m.key.decode(): json.loads(m.value)["created_at"] for m in replays.messages}

    def expected_ids(outcome: Outcome) -> set[str]:
        return {alert_id_for(key, *window_for(policy, datetime.fromisoformat(created[tweet])))
                for tweet, key in outcome.negatives_expected}

    assert set(alone.alerts_in_table) == expected_ids(alone)
    # A mention without its alert is allowed only where the broker is Tansu and a worker
    # logged the mention's offsets as a gap it never received (stream.kafka_consumer): Tansu
    # 0.6.0 lets a tail reader skip a batch when several producers write one partition.
    gaps = _logged_gaps(run, run.settings.topic_negative)
    tansu = replays.run.settings.kafka_bootstrap_servers != os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS")
    stored = set(group.alerts_in_table)
    lost, skipped = [], set()
    for tweet, key in group.negatives_expected:
        alert_id = alert_id_for(key, *window_for(policy, datetime.fromisoformat(created[tweet])))
        if alert_id in stored:
            continue
        records = group.where[(tweet, key)]
        if tansu and all((p, o) in gaps for p, o, _ in records):
            skipped.add(alert_id)
        else:
            lost.append((tweet, key, records))
    _report(capsys, [f"alerts: single worker {len(alone.alerts_in_table)}, group "
                     f"{len(stored)}; {len(skipped)} missing behind offsets the broker "
                     f"skipped, {len(lost)} lost otherwise"])
    assert not lost, (f"{len(lost)} negative mentions on the topic that no alert came from "
                      f"(tweet, entity, [(partition, offset, timestamp ms)]): {lost[:5]}; "
                      f"events {run.events}")
    assert stored | skipped == expected_ids(group)
    only_group = set(group.negatives_expected) - set(alone.negatives_expected)
    only_alone = set(alone.negatives_expected) - set(group.negatives_expected)
    assert not only_group and not only_alone, (
        f"negative mentions differ: group only {sorted(only_group)[:10]}, "
        f"single only {sorted(only_alone)[:10]}")
    assert stored | skipped == set(alone.alerts_in_table)

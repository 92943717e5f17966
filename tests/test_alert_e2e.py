"""Real tweets end to end: broker -> analyze agent -> negative-entity topic -> alert agent ->
alerts topic + alerts table, with the loopback LLM server up, then down across a restart.

Which entities deserve an alert is not hard-coded: an oracle replays the policy over the rows
the pipeline stored (the model's mentions of the real tweets) and the test checks that the
worker fired exactly those alerts, once each, on the topic and in the table.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from llm_server import MODEL, LLMServer
from test_alert_agent import read_topic

from stream.alerting import alert_from_row, alert_id_for
from stream.prompts import display_name
from stream.publish import Outgoing, publish, read_shared_tweets
from stream.records import TweetIn
from stream.settings import Settings
from stream.spikes import SpikeStats, SpikeThresholds, WindowCounts, judge
from stream.storage import Alert, EntityMention, Tweet, create_engine
from stream.worker_process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE = datetime(2021, 6, 1, 8, 0, tzinfo=UTC)
STEP_S = 2  # event time between consecutive tweets
PHASE = 200  # tweets per phase


def real_tweets(settings: Settings, run: str) -> list[tuple[str, str, datetime]]:
    """The first 2 x PHASE tweets of the SemEval-2017 topic test set, in file order (grouped
    by topic, so entities come in bursts as they do when something trends)."""
    texts = read_shared_tweets(settings.data_dir, "topic")[: 2 * PHASE]
    return [(f"{run}-{i}", text, BASE + timedelta(seconds=STEP_S * i))
            for i, text in enumerate(texts)]


def messages(tweets: list[tuple[str, str, datetime]]) -> list[Outgoing]:
    return [Outgoing(i.encode(), TweetIn(id=i, text=text, created_at=at).to_json())
            for i, text, at in tweets]


async def stored_count(url: str, ids: list[str]) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(
                sa.select(sa.func.count()).select_from(Tweet).where(Tweet.id.in_(ids))))
    finally:
        await engine.dispose()


def wait_stored(url: str, ids: list[str], worker: WorkerProcess, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while asyncio.run(stored_count(url, ids)) < len(ids):
        assert worker.alive(), worker.log_tail()
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.2)


async def rows(url: str, ids: list[str]) -> tuple[list, list[dict]]:
    engine = create_engine(url)
    em = EntityMention.__table__
    try:
        async with engine.connect() as conn:
            mentions = (await conn.execute(
                sa.select(em).where(em.c.tweet_id.in_(ids))
                .order_by(em.c.created_at, em.c.start))).all()
            keys = {m.entity_key for m in mentions}
            table = Alert.__table__
            alerts = (await conn.execute(
                sa.select(table).where(
                    table.c.entity_key.in_(keys),
                    table.c.window_end.between(BASE, BASE + timedelta(days=1)))
                .order_by(table.c.window_end))).all()
    finally:
        await engine.dispose()
    return mentions, [alert_from_row(a).model_dump(mode="json") for a in alerts]


def oracle(settings: Settings, mentions: list) -> dict[str, tuple[int, int, datetime]]:
    """The alerts the policy must fire, replayed in event-time order: id -> (negative tweets,
    tweets). The counts per window are recomputed here from the stored rows; the decision on
    them is ``stream.spikes.judge`` (discovered entities' thresholds). The window end is
    the third item (alert ids are hashes)."""
    by_key = defaultdict(list)
    for m in mentions:
        by_key[m.entity_key].append(m)
    window = timedelta(seconds=settings.alert_window_s)
    cooldown = timedelta(seconds=settings.alert_cooldown_s)
    thresholds = SpikeThresholds.from_settings(settings, watched=False)
    fired: dict[str, list[datetime]] = defaultdict(list)
    expected: dict[str, tuple[int, int, datetime]] = {}

    def negative(o) -> bool:
        return o.sentiment == "negative" and o.p_negative >= settings.negative_threshold

    for m in mentions:
        if not negative(m):
            continue
        end = m.created_at
        alert_id = alert_id_for(m.entity_key, end - window, end)
        if alert_id in expected:
            continue
        if any(abs(other - end) < cooldown for other in fired[m.entity_key]):
            continue
        counts = []
        for k in range(settings.alert_baseline_windows + 1):
            inside = [o for o in by_key[m.entity_key]
                      if end - (k + 1) * window < o.created_at <= end - k * window]
            counts.append(WindowCounts(negative=len({o.tweet_id for o in inside if negative(o)}),
                                       tweets=len({o.tweet_id for o in inside})))
        # Windows that end before the entity's first mention are no history, not quiet.
        first = min(o.created_at for o in by_key[m.entity_key])
        known = 1 + sum(1 for k in range(1, settings.alert_baseline_windows + 1)
                        if end - k * window > first)
        stats = SpikeStats(current=counts[0], baseline=tuple(counts[1:known]))
        if not judge(thresholds, stats).fire:
            continue
        fired[m.entity_key].append(end)
        expected[alert_id] = (counts[0].negative, counts[0].tweets, end)
    return expected


async def test_real_tweets_alert_once_per_window_llm_then_template_across_restart(
        broker, pg_url, tmp_path: Path):
    run = f"e2e{uuid.uuid4().hex[:8]}"
    names = {f"topic_{kind}": f"{run}-{kind}" for kind in ("tweets", "dlq", "negative",
                                                           "alerts")}
    # One partition: events reach the alert agent in event-time order, as the oracle replays.
    broker.create_topics(list(names.values()), 1)
    server = await LLMServer().start()
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, database_url=pg_url,
        app_id=f"{run}-app", topic_partitions=1, kafka_session_timeout_s=3.0, max_batch=32,
        alert_window_s=300, alert_min_negative=2, alert_min_negative_share=0.5,
        alert_scope="all", alert_discovered_min_negative=2, alert_discovered_sensitivity=2.0,
        alert_cooldown_s=600, llm_base_url=server.base_url, llm_timeout_s=3.0,
        llm_retries=0, **names)
    tweets = real_tweets(settings, run)
    first, second = tweets[:PHASE], tweets[PHASE:]

    # Phase 1: LLM up.
    worker = WorkerProcess(settings, tmp_path / "worker1.log", ["analyze", "alert"]).start()
    try:
        await publish(settings.kafka_bootstrap_servers, settings.topic_tweets, messages(first))
        await asyncio.to_thread(wait_stored, pg_url, [t[0] for t in first], worker)
        phase1 = await read_topic(settings, settings.topic_alerts, expect=1, timeout=60,
                                  quiet=4.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    await server.stop()

    # Phase 2: the LLM endpoint is gone; a restarted worker gets new tweets and, again, the
    # first 50 (as a producer retrying would send them).
    worker = WorkerProcess(settings, tmp_path / "worker2.log", ["analyze", "alert"]).start()
    try:
        await publish(settings.kafka_bootstrap_servers, settings.topic_tweets,
                      messages(second + first[:50]))
        await asyncio.to_thread(wait_stored, pg_url, [t[0] for t in tweets], worker)
        # Every row is stored now, so the oracle knows how many alerts to wait for (on a
        # loaded machine the last ones can come many seconds after the rows).
        mentions, _ = await rows(pg_url, [t[0] for t in tweets])
        expected = oracle(settings, mentions)
        on_topic = await read_topic(settings, settings.topic_alerts, expect=len(expected),
                                    timeout=120, quiet=4.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    mentions, in_table = await rows(pg_url, [t[0] for t in tweets])
    split = second[0][2]
    before = [i for i, (_, _, end) in expected.items() if end < split]
    assert before, "these real tweets should trigger alerts before the restart"
    assert len(before) < len(expected), "... and after it"

    # Right entities, each alert exactly once, the same on the topic and in the table.
    topic_ids = [a["alert_id"] for a in on_topic]
    assert len(topic_ids) == len(set(topic_ids)), "an alert was published twice"
    assert set(topic_ids) == set(expected)
    # One tweet can fire alerts of two entities at the same window end: order by id too.
    def order(a: dict) -> tuple[str, str]:
        return a["window_end"], a["alert_id"]

    assert sorted(in_table, key=order) == sorted(on_topic, key=order)
    for alert in in_table:
        assert (alert["negative_mentions"], alert["mentions"]) == \
            expected[alert["alert_id"]][:2]
        assert set(alert["tweet_ids"]) <= {t[0] for t in tweets}
        phase_one = datetime.fromisoformat(alert["window_end"]) < split
        if phase_one:
            assert (alert["generator"], alert["model"]) == ("llm", MODEL), alert
            assert display_name(alert["entity"]) in alert["text"]
        else:
            assert (alert["generator"], alert["model"]) == ("template", None), alert
            # Discovered entities: the model's type word is not printed.
            assert alert["text"].startswith(
                f"Alert: negative sentiment toward {display_name(alert['entity'])}: "
                f"{alert['negative_mentions']} of {alert['mentions']} tweets mentioning it")
            assert alert["reason"]["rule"] in ("count", "share")
            assert alert["examples"], alert
    assert {a["alert_id"] for a in phase1} <= set(topic_ids)
    # One alert per window per entity: fired alerts of an entity are a cooldown apart.
    ends = defaultdict(list)
    for alert in in_table:
        ends[alert["entity_key"]].append(datetime.fromisoformat(alert["window_end"]))
    for times in ends.values():
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(gap >= settings.alert_cooldown_s for gap in gaps)

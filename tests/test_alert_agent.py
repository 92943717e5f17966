"""The alert worker as deployed: a `tweetwatch worker --agent alert` process on the embedded
Kafka-protocol broker, real PostgreSQL, and the loopback Chat Completions server.

The mentions the policy counts are stored rows, and the negative mentions arrive on the
negative-entity topic as the analyze agent would publish them; what comes out is checked on
the alerts topic and in the alerts table, across a worker restart with redelivered input.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from llm_server import MODEL, LLMServer

from stream.alerting import alert_from_row
from stream.prompts import AlertContext, template_alert
from stream.records import AlertRecord, NegativeMention
from stream.settings import Settings
from stream.storage import Alert, create_engine, store_batch
from stream.worker_process import WorkerProcess, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Event times far from the present, so no other test's mentions share these windows.
T0 = datetime(2020, 3, 2, 12, 0, tzinfo=UTC)


def make_settings(topic_settings: Settings, **overrides) -> Settings:
    """The test's own topics and consumer group (conftest) with the alert policy under test."""
    values = {
        # These records carry no watched entity: discovered entities, alerting by opt-in,
        # with thresholds that make the first two negative tweets of an entity a spike.
        "alert_scope": "all",
        "alert_discovered_min_negative": 2,
        "alert_discovered_sensitivity": 1.0,
        "alert_window_s": 300,
        "alert_min_negative": 2,
        "alert_min_negative_share": 0.5,
        "alert_cooldown_s": 900,
        "llm_timeout_s": 2.0,
        "llm_retries": 1,
        "llm_backoff_s": 0.05,
    }
    values.update(overrides)
    return topic_settings.model_copy(update=values)


TWEETS = {
    # Verizon: three negatives in five minutes -> one alert (the third is in the cooldown).
    "v1": ("verizon", "Verizon", "Verizon dropped my calls all day", "negative", -20),
    "v2": ("verizon", "@Verizon", "@Verizon no signal downtown again, fix it", "negative", -10),
    "v3": ("verizon", "#verizon", "#verizon support kept me on hold 2 hours", "negative", 0),
    # Comcast: one negative among neutral mentions -> below the minimum count.
    "c1": ("comcast", "Comcast", "Comcast raised my bill again", "negative", -5),
    "c2": ("comcast", "Comcast", "Comcast store opens at 9", "neutral", -4),
    # United: two negatives after three positive mentions -> share 0.4 < 0.5.
    "u1": ("united", "United", "United crew was lovely", "positive", -60),
    "u2": ("united", "United", "Great flight with United", "positive", -50),
    "u3": ("united", "United", "United upgrade, thanks!", "positive", -40),
    "u4": ("united", "United", "United lost my bag", "negative", -30),
    "u5": ("united", "United", "United delayed us three hours", "negative", -20),
}


async def store(pg_url: str, tweets: dict[str, tuple], base: datetime) -> None:
    """Rows as the analyze agent writes them (tweets + entity_mentions)."""
    tweet_rows, mention_rows = [], []
    for tweet_id, (key, surface, text, sentiment, offset) in tweets.items():
        at = base + timedelta(seconds=offset)
        p_neg = 0.9 if sentiment == "negative" else 0.05
        tweet_rows.append({"id": tweet_id, "text": text, "created_at": at, "ingested_at": at,
                           "author": None, "lang": "en", "sentiment": sentiment,
                           "p_negative": p_neg, "p_neutral": 0.05, "p_positive": 0.05,
                           "model_version": "test"})
        mention_rows.append({"tweet_id": tweet_id, "start": 0, "end": len(surface),
                             "entity": surface, "entity_key": key, "type": "company",
                             "sentiment": sentiment, "score": 0.9, "p_negative": p_neg,
                             "created_at": at})
    engine = create_engine(pg_url)
    try:
        async with engine.begin() as conn:
            await store_batch(conn, tweet_rows, mention_rows)
    finally:
        await engine.dispose()


def negative_records(tweets: dict[str, tuple], base: datetime,
                     watched: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    """Records as the analyze agent publishes them; ``watched`` maps entity keys to the watched
    entity's name (the watchlist gave their type); the others are discovered entities."""
    out = []
    for tweet_id, (key, surface, text, sentiment, offset) in tweets.items():
        if sentiment != "negative":
            continue
        name = (watched or {}).get(key)
        record = NegativeMention(tweet_id=tweet_id, entity=surface, entity_key=key,
                                 type="company", score=0.9, tweet_sentiment="negative",
                                 text=text, created_at=base + timedelta(seconds=offset),
                                 watch=name, type_source="watchlist" if name else "model")
        out.append((key.encode(), record.to_json()))
    return out


async def publish(settings: Settings, topic: str, messages: list[tuple[bytes | None, bytes]]):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str, expect: int, timeout: float,
                     quiet: float = 3.0) -> list[dict]:
    """All messages on ``topic`` once ``expect`` arrived and nothing more came for ``quiet`` s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        await consumer.seek_to_beginning()
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                got.extend(json.loads(r.value) for r in records)
                last_new = time.monotonic()
            if len(got) >= expect and time.monotonic() - last_new >= quiet:
                break
        return got
    finally:
        await consumer.stop()


async def stored_alerts(pg_url: str, keys: set[str], base: datetime) -> list[dict]:
    """This test's alerts as JSON documents, as on the topic: the database is shared by the
    whole test run."""
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            table = Alert.__table__
            rows = (await conn.execute(
                table.select().where(table.c.entity_key.in_(keys),
                                     table.c.window_end.between(base - timedelta(days=1),
                                                                base + timedelta(days=1)))
                .order_by(table.c.window_end)
            )).all()
    finally:
        await engine.dispose()
    return [alert_from_row(r).model_dump(mode="json") for r in rows]


def start_worker(settings: Settings, tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(settings, tmp_path / f"{name}.log", agents=["alert"]).start()


async def test_llm_alerts_once_per_window_across_restart_and_redelivery(topic_settings, pg_url,
                                                                       tmp_path):
    server = await LLMServer().start()
    settings = make_settings(topic_settings, llm_base_url=server.base_url)
    base = T0
    await store(pg_url, TWEETS, base)
    records = negative_records(TWEETS, base)
    await publish(settings, settings.topic_negative, [*records, (b"junk", b"{not json")])

    worker = start_worker(settings, tmp_path, "first")
    try:
        alerts = await read_topic(settings, settings.topic_alerts, expect=1, timeout=60)
        dead = await read_topic(settings, settings.topic_dlq, expect=1, timeout=10, quiet=0)
    finally:
        worker.stop()
    assert len(alerts) == 1, worker.log_tail()
    first = alerts[0]
    assert first["entity_key"] == "verizon" and first["generator"] == "llm"
    assert first["model"] == MODEL and first["v"] == 1
    assert first["window_end"] == (base - timedelta(seconds=10)).isoformat()
    assert (first["negative_mentions"], first["mentions"]) == (2, 2)
    assert first["tweet_ids"] == ["v2", "v1"]
    assert "Verizon" in first["text"] and first["text"].startswith("Alert:")
    assert [d["reason"] for d in dead] == ["not JSON: Expecting property name enclosed in "
                                           "double quotes (line 1, column 2)"]
    assert len(server.requests) == 1

    # Restart: the same mentions are delivered again (as after a crash before the commit),
    # plus a new burst outside the cooldown: three negative tweets, above Verizon's own
    # baseline (the three windows since its first mention: 0, 0 and 3 negative tweets).
    later = {"v4": ("verizon", "Verizon", "Verizon outage again tonight", "negative", 999),
             "v5": ("verizon", "Verizon", "Verizon still down", "negative", 1000),
             "v6": ("verizon", "Verizon", "Verizon down for the whole street", "negative",
                    1001)}
    await store(pg_url, later, base)
    await publish(settings, settings.topic_negative, records + negative_records(later, base))
    worker = start_worker(settings, tmp_path, "second")
    try:
        alerts = await read_topic(settings, settings.topic_alerts, expect=2, timeout=60)
    finally:
        worker.stop()
        await server.stop()
    assert [a["alert_id"] for a in alerts].count(first["alert_id"]) == 1, worker.log_tail()
    assert len(alerts) == 2
    assert alerts[1]["window_end"] == (base + timedelta(seconds=1001)).isoformat()
    assert alerts[1]["tweet_ids"] == ["v6", "v5", "v4"]
    assert len(server.requests) == 2  # the redelivered mentions never reached the LLM
    assert await stored_alerts(pg_url, {"verizon", "comcast", "united"}, base) == alerts

    # `tweetwatch alerts` reads the same alerts from the table (shared by the whole test
    # run, hence the filter) and from the topic.
    ours = {a["alert_id"] for a in alerts}
    from_table = [json.loads(line) for line in
                  cli(settings, "alerts", "--json", "--limit", "100000").splitlines()]
    assert [a for a in from_table if a["alert_id"] in ours] == alerts
    readable = cli(settings, "alerts", "--limit", "100000").splitlines()
    assert sum(line.startswith(f"{(base + timedelta(seconds=1001)):%Y-%m-%d %H:%M:%S}  Verizon "
                               f"(company)  3/3 negative  [llm:{MODEL}]  Alert: ")
               for line in readable) == 1
    from_topic = cli(settings, "alerts", "--follow", "--from-beginning", "--max-alerts", "2",
                     "--json")
    assert [json.loads(line) for line in from_topic.splitlines()] == alerts


def cli(settings: Settings, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env.update(settings_env(settings))
    done = subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_template_when_llm_is_down(topic_settings, pg_url, tmp_path):
    server = await LLMServer().start()
    down_url = server.base_url
    await server.stop()  # nothing listens there any more
    settings = make_settings(topic_settings, llm_base_url=down_url, alert_min_negative=1,
                             alert_sensitivity=0.1, alert_cooldown_s=0, alert_window_s=60,
                             alert_scope="watched")
    base = T0 + timedelta(days=2)
    tweets = {"d1": ("delta", "Delta", "Delta cancelled my flight, no refund", "negative", 0),
              "d2": ("delta", "Delta", "Delta lost my luggage", "negative", 30)}
    await store(pg_url, tweets, base)
    await publish(settings, settings.topic_negative,
                  negative_records(tweets, base, watched={"delta": "Delta"}))
    worker = start_worker(settings, tmp_path, "template")
    try:
        alerts = await read_topic(settings, settings.topic_alerts, expect=2, timeout=60)
    finally:
        worker.stop()
    # min_negative=1, a tiny sensitivity and no cooldown: one alert per negative mention.
    assert [a["tweet_ids"] for a in alerts] == [["d1"], ["d2", "d1"]], worker.log_tail()
    for alert, end in zip(alerts, (base, base + timedelta(seconds=30)), strict=True):
        assert (alert["generator"], alert["model"]) == ("template", None)
        context = AlertContext("Delta", "delta", "company", end - timedelta(seconds=60), end,
                               alert["negative_mentions"], alert["mentions"],
                               [tweets[i][2] for i in alert["tweet_ids"]])
        assert alert["text"] == template_alert(context)
    assert await stored_alerts(pg_url, {"delta"}, base) == alerts
    assert ("Alert: negative sentiment toward the company Delta: 2 of 2 tweets mentioning it "
            "(100%)") in alerts[1]["text"]


async def test_alerts_follow_prints_new_alerts_as_they_arrive(topic_settings, tmp_path):
    """`tweetwatch alerts --follow` starts at the topic's end and prints what comes next."""
    settings = make_settings(topic_settings)
    old = AlertRecord(alert_id="old:1-2", entity="Old", entity_key="old", type="", window_start=T0,
                      window_end=T0, negative_mentions=2, mentions=2, tweet_ids=("o1", "o2"),
                      text="Alert: before", generator="template", created_at=T0)
    await publish(settings, settings.topic_alerts, [(b"old", old.to_json())])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env.update(settings_env(settings))
    follower = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "alerts", "--follow", "--limit", "0",
         "--max-alerts", "1", "--json"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        ready = await asyncio.to_thread(follower.stderr.readline)
        assert ready.startswith(f"following {settings.topic_alerts}"), ready
        new = old.model_copy(update={"alert_id": "new:3-4", "entity": "New",
                                     "text": "Alert: after"})
        await publish(settings, settings.topic_alerts,
                      [(b"new", b"not json"), (b"new", b'{"v": 1, "alert_id": "x"}'),
                       (b"new", new.to_json())])  # one partition
        out, err = await asyncio.to_thread(follower.communicate, timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert [AlertRecord.model_validate_json(line) for line in out.splitlines()] == [new]
    assert "skipping a message that is not an alert" in err and "not JSON" in err
    assert "missing field 'entity'" in err


async def test_a_slow_llm_call_delays_only_its_own_entity(broker, pg_url, tmp_path, request):
    """One entity's LLM call takes 8 s; the alerts of the entities behind it on the same
    partition go out meanwhile (per-entity lanes), and each entity's order holds."""
    prefix = f"lanes-{request.node.name[-8:]}-{os.getpid()}"
    server = await LLMServer(delay_s=8.0, slow_entities={"Slowco"}).start()
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers, database_url=pg_url,
        app_id=f"{prefix}-app", topic_tweets=f"{prefix}-tweets", topic_dlq=f"{prefix}-dlq",
        topic_negative=f"{prefix}-negative", topic_alerts=f"{prefix}-alerts",
        topic_partitions=1, alert_window_s=300, alert_min_negative=2, alert_cooldown_s=900,
        alert_sensitivity=1.0,  # the second negative tweet over an empty baseline fires
        llm_base_url=server.base_url, llm_timeout_s=20.0, llm_retries=0)
    broker.create_topics([settings.topic_tweets, settings.topic_dlq, settings.topic_negative,
                          settings.topic_alerts], 1)
    base = T0 + timedelta(days=30)
    tweets = {f"{prefix}-s{i}": ("slowco", "Slowco", f"Slowco failed me again {i}", "negative",
                                 i) for i in range(2)}
    for name in ("alpha", "beta", "gamma"):
        tweets |= {f"{prefix}-{name}{i}": (f"{name}co", f"{name.title()}co",
                                           f"{name.title()}co is down again {i}", "negative",
                                           i) for i in range(2)}
    await store(pg_url, tweets, base)
    watched = {key: surface for key, surface, *_ in tweets.values()}
    await publish(settings, settings.topic_negative,
                  negative_records(tweets, base, watched=watched))
    worker = start_worker(settings, tmp_path, "lanes")
    try:
        alerts = await read_topic(settings, settings.topic_alerts, expect=4, timeout=90)
    finally:
        worker.stop()
        await server.stop()
    order = [a["entity_key"] for a in alerts]
    assert sorted(order) == ["alphaco", "betaco", "gammaco", "slowco"], worker.log_tail()
    assert order[-1] == "slowco", "the fast entities waited behind the slow LLM call"
    assert all(a["generator"] == "llm" for a in alerts)

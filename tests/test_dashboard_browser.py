"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) over a
store filled by a real pipeline run: real tweets -> broker -> ``tweetwatch worker`` (analyze +
alert agents) -> PostgreSQL, then ``tweetwatch serve`` as a user starts it.

What the page must show is not hard-coded: the expected bars of a chart are the distinct
time buckets of that entity's mentions as stored, read straight from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from serve_process import ServeProcess

from stream.alerting import insert_alert
from stream.publish import Outgoing, publish, read_shared_tweets
from stream.records import AlertRecord, TweetIn
from stream.settings import Settings
from stream.storage import Alert, EntityMention, Tweet, create_engine
from stream.worker_process import WorkerProcess

if TYPE_CHECKING:
    from conftest import ScratchDatabase

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
TWEETS = 300
SPAN = timedelta(hours=3)  # event times of the replayed tweets: the last three hours


async def _stored(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.select(sa.func.count()).select_from(Tweet)))
    finally:
        await engine.dispose()


async def _alert_agent_done(settings: Settings) -> bool:
    """Whether the worker's group committed the whole negative-entity topic (every alert
    decision is stored: the alert agent commits a mention only after that)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    probe = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None)
    await admin.start()
    await probe.start()
    try:
        parts = [TopicPartition(settings.topic_negative, p)
                 for p in range(settings.topic_partitions)]
        ends = await probe.end_offsets(parts)
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=parts)
        return all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp])
                   for tp in parts)
    finally:
        await probe.stop()
        await admin.close()


def _fill_store(settings: Settings, tmp_path: Path) -> None:
    """Replay real tweets, stamped over the last SPAN, through a real worker."""
    texts = read_shared_tweets(settings.data_dir, "topic")[:TWEETS]
    start = datetime.now(UTC) - SPAN
    step = SPAN / TWEETS
    messages = [Outgoing(f"web-{i}".encode(),
                         TweetIn(id=f"web-{i}", text=text, created_at=start + i * step).to_json())
                for i, text in enumerate(texts)]
    worker = WorkerProcess(settings, tmp_path / "worker.log", ["analyze", "alert"]).start()
    try:
        asyncio.run(publish(settings.kafka_bootstrap_servers, settings.topic_tweets, messages))
        deadline = time.monotonic() + 240
        while asyncio.run(_stored(settings.database_url)) < TWEETS:
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
        while not asyncio.run(_alert_agent_done(settings)):
            assert worker.alive(), worker.log_tail()
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.5)
    finally:
        worker.stop()


async def _expected(url: str) -> tuple[str, list[datetime], int]:
    """The most-mentioned entity key, its mention times and its alert count (last day)."""
    engine = create_engine(url)
    em = EntityMention.__table__
    since = datetime.now(UTC) - timedelta(days=1)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(em.c.entity_key, em.c.created_at)
                                       .where(em.c.created_at >= since))).all()
            top = Counter(r.entity_key for r in rows).most_common(1)[0][0]
            alerts = int(await conn.scalar(
                sa.select(sa.func.count()).select_from(Alert)
                .where(Alert.entity_key == top, Alert.window_end >= since)))
    finally:
        await engine.dispose()
    return top, [r.created_at.astimezone(UTC) for r in rows if r.entity_key == top], alerts


async def _insert_alert(url: str, key: str) -> str:
    now = datetime.now(UTC)
    alert_id = f"{key}:browser-test-{now.timestamp():.0f}"
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            assert await insert_alert(conn, AlertRecord(
                alert_id=alert_id, entity=key.title(), entity_key=key, type="person",
                window_start=now - timedelta(minutes=5), window_end=now,
                negative_mentions=3, mentions=4, tweet_ids=("web-0",),
                text="inserted while the page is open", generator="template",
                created_at=now))
    finally:
        await engine.dispose()
    return alert_id


def test_dashboard_over_a_real_pipeline_run(topic_settings: Settings,
                                            scratch_database: ScratchDatabase,
                                            tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), ("Debian's chromium is missing: apt-get install chromium "
                                "(scripts/setup.sh does it when run as root)")
    settings = topic_settings.model_copy(update={"database_url": scratch_database.url})
    _fill_store(settings, tmp_path)
    key, times, alert_count = asyncio.run(_expected(settings.database_url))
    hours = sorted({t.replace(minute=0, second=0, microsecond=0) for t in times})
    minutes = {t.replace(second=0, microsecond=0) for t in times}
    assert len(hours) >= 2  # three hours of event time: a chart, not a dot

    with ServeProcess(settings.database_url, tmp_path / "serve.log") as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-loaded=true]", timeout=30_000)
        card = f'article[data-entity-key="{key}"]'

        # Auto bucket: three hours of data is drawn in minutes.
        assert page.locator(f"{card} svg.chart rect.bar").count() == len(minutes)
        page.select_option("#bucket", "hour")
        page.wait_for_function(
            "([sel, n]) => document.querySelectorAll(sel).length === n",
            arg=[f"{card} svg.chart rect.bar", len(hours)], timeout=15_000)
        assert page.locator(f"{card} svg.chart .marker").count() == alert_count
        page.screenshot(path=str(tmp_path / "dashboard.png"))

        # A bar leads to the tweets behind it.
        page.locator(f"{card} svg.chart rect.bar").last.click()
        in_last_hour = sum(t >= hours[-1] for t in times)
        page.wait_for_function("n => document.querySelectorAll('#detail li[data-tweet-id]')"
                               ".length === n", arg=min(in_last_hour, 100), timeout=10_000)

        # A new alert appears in the live feed without a reload.
        page.evaluate("window.__sameDocument = true")
        # Playwright's sync API runs an event loop in this thread: insert from another one.
        with ThreadPoolExecutor(1) as pool:
            alert_id = pool.submit(asyncio.run, _insert_alert(settings.database_url, key)
                                   ).result()
        page.wait_for_selector(f'#feed li[data-alert-id="{alert_id}"]', timeout=15_000)
        assert page.evaluate("window.__sameDocument") is True
        page.screenshot(path=str(tmp_path / "dashboard-feed.png"))

        # The link a delivered alert carries opens the dashboard on that entity's tweets.
        page.goto(f"{server.url}/#entity={key}")
        page.wait_for_selector(f"{card}.focus", timeout=30_000)
        page.wait_for_function("n => document.querySelectorAll('#detail li[data-tweet-id]')"
                               ".length === n", arg=min(len(times), 100), timeout=10_000)
        browser.close()

    assert problems == []
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'dashboard.png'}, {tmp_path / 'dashboard-feed.png'}")

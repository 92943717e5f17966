"""Alert delivery to a webhook, against a real HTTP server on loopback (the receiver is the
only test double: a Slack workspace is outside our control).

Unit level: retries until the receiver accepts, a dead receiver costs the caller nothing, the
queue is bounded. Worker level: a ``tweetwatch worker --agent alert`` process delivers its
alerts through a receiver that fails at first, while the alerts topic and table get every
alert; its metrics endpoint counts them (scraped over HTTP).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from serve_process import free_port
from test_alert_agent import (
    T0,
    TWEETS,
    make_settings,
    negative_records,
    publish,
    read_topic,
    start_worker,
    store,
    stored_alerts,
)

from stream.records import AlertRecord
from stream.settings import Settings
from stream.webhook import AlertWebhook, entity_link, redacted_url, slack_payload

ALERT = AlertRecord.model_validate({
    "v": 1, "alert_id": "acme:1-2", "entity": "Acme", "entity_key": "acme", "type": "company",
    "window_start": "2026-01-05T10:00:00+00:00", "window_end": "2026-01-05T10:05:00+00:00",
    "negative_mentions": 3, "mentions": 4, "tweet_ids": ["a", "b", "c"],
    "text": "Alert: Acme is criticised for outages.", "generator": "template", "model": None,
    "created_at": "2026-01-05T10:05:01+00:00",
})


def alert_with(**changes: Any) -> AlertRecord:
    return ALERT.model_copy(update=changes)


@dataclass
class Receiver:
    """A webhook receiver: answers ``fail_first`` requests with HTTP 500, then 200; each
    answer after ``delay_s``."""

    fail_first: int = 0
    delay_s: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        await asyncio.sleep(self.delay_s)
        if self.attempts <= self.fail_first:
            return web.Response(status=500, text="try again")
        self.bodies.append(body)
        return web.Response(text="ok")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def test_slack_payload() -> None:
    payload = slack_payload(ALERT, "http://dash.example:8080/")
    assert payload["text"] == "tweetwatch alert: Acme: Alert: Acme is criticised for outages."
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    assert fields[0] == "*Entity*\nAcme (company)"
    assert fields[1] == "*Reason*\n3 of 4 mentions negative (75%)"
    assert fields[2] == "*Window*\n2026-01-05 10:00 – 10:05 UTC"
    link = "http://dash.example:8080/#entity=acme"
    assert payload["dashboard_url"] == link == entity_link("http://dash.example:8080", "acme")
    assert f"<{link}|Open Acme on the dashboard>" in payload["blocks"][2]["elements"][0]["text"]


def test_config_hides_the_webhook_secret() -> None:
    url = "https://hooks.slack.com/services/T000/B000/s3cr3tT0k3n"
    assert redacted_url(url) == "https://hooks.slack.com/***"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env.update({"TWEETWATCH_ALERT_WEBHOOK_URL": url, "COLUMNS": "300"})
    done = subprocess.run([sys.executable, "-m", "stream.cli", "config"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "s3cr3tT0k3n" not in done.stdout and "https://hooks.slack.com/***" in done.stdout


def test_slack_payload_escapes_what_came_from_tweets() -> None:
    alert = alert_with(entity="A&B <!channel>", text="see <http://evil.example|here>")
    payload = slack_payload(alert, "http://127.0.0.1:8080/")
    assert payload["text"] == ("tweetwatch alert: A&amp;B &lt;!channel&gt;: "
                               "see &lt;http://evil.example|here&gt;")
    assert "<!channel>" not in str(payload) and "<http://evil" not in str(payload)


async def test_retries_until_the_receiver_accepts() -> None:
    receiver = await Receiver(fail_first=2).start()
    hook = AlertWebhook(receiver.url, "http://127.0.0.1:8080/", retries=3,
                        backoff_s=0.01).start()
    try:
        assert hook.offer(ALERT)
        await asyncio.wait_for(hook.queue.join(), 10)
    finally:
        await hook.close()
        await receiver.stop()
    assert receiver.attempts == 3
    assert [b["alert_id"] for b in receiver.bodies] == ["acme:1-2"]
    assert (hook.delivered, hook.failed, hook.dropped) == (1, 0, 0)


async def test_a_dead_receiver_never_blocks_the_caller() -> None:
    receiver = await Receiver().start()
    url = receiver.url
    await receiver.stop()  # nothing listens there any more
    hook = AlertWebhook(url, "http://127.0.0.1:8080/", retries=2, backoff_s=0.01).start()
    try:
        began = time.perf_counter()
        assert all(hook.offer(alert_with(alert_id=f"acme:{i}")) for i in range(5))
        assert time.perf_counter() - began < 0.05
        await asyncio.wait_for(hook.queue.join(), 10)
    finally:
        await hook.close()
    assert (hook.delivered, hook.failed, hook.dropped) == (0, 5, 0)


async def test_the_queue_is_bounded() -> None:
    receiver = await Receiver(delay_s=0.5).start()
    hook = AlertWebhook(receiver.url, "http://127.0.0.1:8080/", queue_size=2, retries=0).start()
    try:
        offered = [hook.offer(alert_with(alert_id=f"acme:{i}")) for i in range(4)]
        # Nothing was taken off the queue yet (the drain task has not run): two fit.
        assert offered == [True, True, False, False]
        await asyncio.wait_for(hook.queue.join(), 10)
    finally:
        await hook.close()
        await receiver.stop()
    assert [b["alert_id"] for b in receiver.bodies] == ["acme:0", "acme:1"]
    assert (hook.delivered, hook.dropped) == (2, 2)


def scrape(port: int) -> dict[str, float]:
    """The metrics endpoint's samples, by name with labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.integration
@pytest.mark.slow
async def test_worker_delivers_alerts_and_counts_them(topic_settings: Settings, pg_url: str,
                                                      tmp_path: Path) -> None:
    receiver = await Receiver(fail_first=1).start()
    port = free_port()
    settings = make_settings(topic_settings, alert_webhook_url=receiver.url,
                             dashboard_url="http://dash.test/", metrics_port=port)
    base = T0 + timedelta(days=30)
    keys = {t[0] for t in TWEETS.values()}
    tweets = {f"wh-{i}": t for i, t in TWEETS.items()}
    await store(pg_url, tweets, base)
    await publish(settings, settings.topic_negative,
                  [*negative_records(tweets, base), (b"junk", b"{not json")])
    worker = start_worker(settings, tmp_path, "webhook")
    try:
        alerts = await read_topic(settings, settings.topic_alerts, expect=1, timeout=60)
        deadline = time.monotonic() + 30
        while len(receiver.bodies) < len(alerts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        samples = await asyncio.to_thread(scrape, port)
    finally:
        worker.stop()
        await receiver.stop()
    assert alerts == await stored_alerts(pg_url, keys, base), worker.log_tail()
    assert len(alerts) == 1 and alerts[0]["entity_key"] == "verizon"
    # The first attempt failed (HTTP 500) and was retried.
    assert receiver.attempts == 2
    assert [b["alert_id"] for b in receiver.bodies] == [alerts[0]["alert_id"]]
    assert receiver.bodies[0]["dashboard_url"] == "http://dash.test/#entity=verizon"
    assert samples['tweetwatch_alerts_total{generator="template"}'] == 1
    assert samples['tweetwatch_webhook_deliveries_total{outcome="delivered"}'] == 1
    assert samples['tweetwatch_dead_letters_total{agent="alert",reason="json"}'] == 1
    assert samples['tweetwatch_llm_errors_total'] == 0

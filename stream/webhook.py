"""Alert delivery to a webhook (Slack incoming webhooks, or anything taking the same JSON).

The alert agent hands each alert it stored and published to ``AlertWebhook.offer``, which only
puts it on a bounded in-memory queue and returns at once; a background task posts the queue's
alerts one by one with retries (tenacity, exponential backoff). The topic and the table stay
the record of truth: a slow or dead receiver never delays the agent or its offsets, and an
alert that cannot be delivered (queue full, retries spent, worker stopping) is logged and
counted, while it stays on the alerts topic and in the alerts table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from stream.metrics import WEBHOOK_DELIVERIES
from stream.records import AlertRecord
from stream.settings import Settings

log = logging.getLogger(__name__)

_CLOSE_DRAIN_S = 5.0


class WebhookRejected(Exception):
    """The receiver answered with a non-2xx status."""


def redacted_url(url: str) -> str:
    """Scheme and host only: a webhook URL's path and query are often its credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/***" if parts.scheme else "***"


def entity_link(dashboard_url: str, entity_key: str) -> str:
    """The dashboard URL that opens on one entity."""
    return f"{dashboard_url.rstrip('/')}/#entity={quote(entity_key, safe='')}"


def slack_escape(text: str) -> str:
    """Slack's escaping of ``&``, ``<`` and ``>``: a tweet quoted in an alert cannot turn into
    a link or a mention (``<!channel>``) in the team's channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: AlertRecord, dashboard_url: str) -> dict[str, Any]:
    """Slack-compatible JSON: ``text`` (the notification and fallback) plus Block Kit blocks
    with the entity, why it fired, the window and a link to the dashboard."""
    share = alert.negative_mentions / alert.mentions if alert.mentions else 0.0
    reason = f"{alert.negative_mentions} of {alert.mentions} mentions negative ({share:.0%})"
    window = (f"{alert.window_start.strftime('%Y-%m-%d %H:%M')} – "
              f"{alert.window_end.strftime('%H:%M %Z').strip()}")
    link = entity_link(dashboard_url, alert.entity_key)
    generator = alert.generator + (f" ({alert.model})" if alert.model else "")
    entity, text = slack_escape(alert.entity), slack_escape(alert.text)
    return {
        "text": f"tweetwatch alert: {entity}: {text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{entity}*: {text}"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*Entity*\n{entity} ({alert.type})"},
                {"type": "mrkdwn", "text": f"*Reason*\n{reason}"},
                {"type": "mrkdwn", "text": f"*Window*\n{window}"},
                {"type": "mrkdwn", "text": f"*Written by*\n{slack_escape(generator)}"},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"<{link}|Open {entity} on the dashboard>"
                                           f" · alert `{slack_escape(alert.alert_id)}`"}]},
        ],
        "alert_id": alert.alert_id,
        "entity_key": alert.entity_key,
        "dashboard_url": link,
    }


class AlertWebhook:
    """A bounded queue of alerts and the task that posts them to ``url``."""

    def __init__(self, url: str, dashboard_url: str, queue_size: int = 1000,
                 retries: int = 3, timeout_s: float = 5.0, backoff_s: float = 0.5) -> None:
        self.url = url
        self.dashboard_url = dashboard_url
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.queue: asyncio.Queue[AlertRecord] = asyncio.Queue(maxsize=queue_size)
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertWebhook | None:
        """The configured webhook, started, or None when ``alert_webhook_url`` is unset.
        Call inside the event loop that will run it."""
        if not settings.alert_webhook_url:
            return None
        return cls(settings.alert_webhook_url, settings.dashboard_url,
                   settings.alert_webhook_queue, settings.alert_webhook_retries,
                   settings.alert_webhook_timeout_s).start()

    def start(self) -> AlertWebhook:
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        self._task = asyncio.get_running_loop().create_task(self._drain())
        return self

    def offer(self, alert: AlertRecord) -> bool:
        """Queue ``alert`` for delivery without waiting; False (logged, counted) when full."""
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1
            _count("dropped")
            log.warning("webhook queue full (%d): alert %s not delivered (it is on the "
                        "topic and in the table)", self.queue.maxsize, alert.alert_id)
            return False
        return True

    async def _post(self, payload: dict[str, Any]) -> None:
        assert self._session is not None
        async with self._session.post(self.url, json=payload) as response:
            if response.status >= 300:
                body = (await response.text())[:200]
                raise WebhookRejected(f"HTTP {response.status}: {body}")

    async def deliver(self, alert: AlertRecord) -> bool:
        """Post one alert, retrying failures; True when the receiver accepted it."""
        payload = slack_payload(alert, self.dashboard_url)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=30),
            retry=retry_if_exception_type((TimeoutError, aiohttp.ClientError,
                                           WebhookRejected, OSError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._post(payload)
        except (aiohttp.ClientError, TimeoutError, WebhookRejected, OSError) as exc:
            self.failed += 1
            _count("failed")
            log.warning("webhook delivery of alert %s failed after %d attempts: %s",
                        alert.alert_id, self.retries + 1,
                        (str(exc).splitlines() or [type(exc).__name__])[0])
            return False
        self.delivered += 1
        _count("delivered")
        return True

    async def _drain(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self.deliver(alert)
            except Exception:  # noqa: BLE001 - a bug here must not end delivery for good
                log.exception("webhook delivery of alert %s failed", alert.alert_id)
            finally:
                self.queue.task_done()

    async def close(self) -> None:
        """Give queued alerts a few seconds to go out, then stop."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), _CLOSE_DRAIN_S)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            left = self.queue.qsize()
            if left:
                self.dropped += left
                log.warning("worker stopping: %d queued alerts not delivered to the webhook",
                            left)
        if self._session is not None:
            await self._session.close()


def _count(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()

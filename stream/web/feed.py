"""The live alert feed: new rows of the alerts table as server-sent events.

The feed polls the table rather than consuming the alerts topic, so ``tweetwatch serve`` needs
only the database and works on the demo's SQLite store too. An alert's ``created_at`` is set
before its transaction commits, so a row can become visible a little after a later-stamped
one; each poll therefore looks back ``LOOKBACK`` before the previous poll and skips the ids
it has sent already (kept for as long as they can come back in the look-back).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from stream.web.queries import alerts

LOOKBACK = timedelta(minutes=5)
HEARTBEAT_S = 15.0
_PAGE = 500
_STOP_CHECK_S = 0.25


def sse_event(event: str, data: object, event_id: str | None = None) -> str:
    """One server-sent event (``data`` as one JSON line)."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def alert_events(engine: AsyncEngine, poll_s: float, key: str | None,
                       since: datetime | None = None,
                       stopping: Callable[[], bool] = lambda: False) -> AsyncIterator[str]:
    """Server-sent events: an ``alert`` event per alert stored from ``since`` (default: the
    look-back before now) on, oldest first; a comment line as heartbeat when quiet. Ends
    when ``stopping()`` turns true (the server is shutting down)."""
    cursor = since or datetime.now(UTC) - LOOKBACK
    sent: dict[str, datetime] = {}
    quiet_s = 0.0
    yield ": connected\n\n"
    while not stopping():
        polled_at = datetime.now(UTC)
        async with engine.connect() as conn:
            rows = await alerts(conn, cursor, key, _PAGE)
        fresh = [a for a in reversed(rows) if a["alert_id"] not in sent]
        for alert in fresh:
            sent[alert["alert_id"]] = datetime.fromisoformat(alert["created_at"])
            yield sse_event("alert", alert, alert["alert_id"])
        cursor = polled_at - LOOKBACK if since is None else max(since, polled_at - LOOKBACK)
        for alert_id, created in list(sent.items()):
            if created < cursor:
                del sent[alert_id]
        quiet_s = 0.0 if fresh else quiet_s + poll_s
        if quiet_s >= HEARTBEAT_S:
            quiet_s = 0.0
            yield ": heartbeat\n\n"
        slept = 0.0
        while slept < poll_s and not stopping():
            await asyncio.sleep(min(_STOP_CHECK_S, poll_s - slept))
            slept += _STOP_CHECK_S

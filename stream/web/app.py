"""The FastAPI application of ``tweetwatch serve``: the JSON API and the dashboard page.

Read-only over the store the worker writes (``TWEETWATCH_DATABASE_URL``: PostgreSQL, or the
demo's SQLite file), except the watchlist, which ``POST``/``DELETE /api/watchlist`` change
when the request carries ``TWEETWATCH_API_TOKEN`` as a bearer token (no token configured: the
watchlist is read-only over HTTP). The shapes are documented in docs/api.md and served as
OpenAPI at ``/openapi.json`` (browsable at ``/docs``). Bad query parameters answer 422 with a
one-line ``error`` beside FastAPI's usual ``detail`` list.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from stream.settings import Settings
from stream.storage import create_engine
from stream.textproc import entity_key, nameable
from stream.watch_store import load_watchlist, remove_entity, save_entities
from stream.watchlist import InvalidWatchlist, entities_from_document
from stream.web import queries
from stream.web.feed import alert_events

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _utc(value: datetime | None) -> datetime | None:
    """Query datetimes without a zone are UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key(raw: str) -> str:
    key = entity_key(raw)
    if not nameable(key):
        raise HTTPException(422, detail=f"entity {raw!r} names nothing (no letter or digit)")
    return key


def _validation_message(exc: RequestValidationError) -> str:
    """One line naming each bad parameter and what is wrong with it."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        where = f"parameter '{'.'.join(loc)}'" if loc else "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(settings: Settings) -> FastAPI:
    """The API and dashboard over ``settings.database_url``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = create_engine(settings.database_url, pool_pre_ping=True)
        app.state.stopping = getattr(app.state, "stopping", lambda: False)
        try:
            yield
        finally:
            await app.state.engine.dispose()

    app = FastAPI(title="tweetwatch", version="1",
                  description="Reputation of entities in tweets: mentions, sentiment toward "
                  "them, alerts. See docs/api.md.", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={
            "error": _validation_message(exc), "detail": jsonable_errors(exc)})

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code,
                            content={"error": str(exc.detail)}, headers=exc.headers)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up (no database access)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """The database answers a query: 200, else 503 with the reason."""
        try:
            async with request.app.state.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return JSONResponse(status_code=503, content={"status": "unavailable",
                                                          "error": line})
        return JSONResponse({"status": "ready"})

    @app.get("/api/entities", tags=["entities"])
    async def list_entities(
        request: Request,
        hours: Annotated[int, Query(ge=1, le=24 * 90, description="Period length")] = 24,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Entities mentioned in the last ``hours`` hours, most mentioned first, with the
        change against the ``hours`` before."""
        now = datetime.now(UTC)
        async with request.app.state.engine.connect() as conn:
            rows = await queries.entity_summaries(conn, hours, limit, now)
        return {"hours": hours, "until": now.isoformat(),
                "entities": [row.as_json() for row in rows]}

    @app.get("/api/entities/{entity}/history", tags=["entities"])
    async def history(
        request: Request,
        entity: str,
        bucket: Annotated[queries.Bucket, Query()] = "hour",
        days: Annotated[int, Query(ge=1, le=90)] = 7,
    ) -> dict[str, Any]:
        """Mentions per time bucket by sentiment, and the alerts of the span."""
        key = _key(entity)
        async with request.app.state.engine.connect() as conn:
            if not await queries.entity_known(conn, key):
                raise HTTPException(404, detail=f"no mentions of entity {entity!r}")
            return await queries.entity_history(conn, key, bucket, days, datetime.now(UTC))

    @app.get("/api/entities/{entity}/mentions", tags=["entities"])
    async def mentions(
        request: Request,
        entity: str,
        sentiment: Annotated[queries.Sentiment | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        since: Annotated[datetime | None, Query(description="ISO-8601, UTC if no zone")] = None,
        until: Annotated[datetime | None, Query(description="ISO-8601, exclusive")] = None,
    ) -> dict[str, Any]:
        """The mentions of an entity with their tweets, newest first."""
        key = _key(entity)
        async with request.app.state.engine.connect() as conn:
            rows = await queries.entity_mentions(conn, key, sentiment, limit, _utc(since),
                                                 _utc(until))
        return {"entity_key": key, "mentions": rows}

    @app.get("/api/alerts", tags=["alerts"])
    async def list_alerts(
        request: Request,
        since: Annotated[datetime | None, Query(description="ISO-8601, UTC if no zone")] = None,
        entity: Annotated[str | None, Query(description="Any spelling of the entity")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Stored alerts (wire records, ``"v": 1``), newest first."""
        key = _key(entity) if entity is not None else None
        async with request.app.state.engine.connect() as conn:
            rows = await queries.alerts(conn, _utc(since), key, limit)
        return {"alerts": rows}

    @app.get("/api/alerts/stream", tags=["alerts"], response_class=StreamingResponse)
    async def alert_stream(
        request: Request,
        entity: Annotated[str | None, Query()] = None,
        since: Annotated[datetime | None, Query(description="Replay from here")] = None,
    ) -> StreamingResponse:
        """Server-sent events: one ``alert`` event (data: the wire record) per new alert."""
        key = _key(entity) if entity is not None else None
        events = alert_events(request.app.state.engine, settings.web_poll_s, key, _utc(since),
                              request.app.state.stopping)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    @app.get("/api/alerts/{alert_id}", tags=["alerts"])
    async def alert_detail(request: Request, alert_id: str) -> dict[str, Any]:
        """One alert with the tweets behind it."""
        async with request.app.state.engine.connect() as conn:
            alert = await queries.alert_with_tweets(conn, alert_id)
        if alert is None:
            raise HTTPException(404, detail=f"no alert {alert_id!r}")
        return alert

    def require_token(request: Request) -> None:
        if not settings.api_token:
            raise HTTPException(403, detail="the watchlist is read-only here: set "
                                "TWEETWATCH_API_TOKEN on the server to allow changes")
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {settings.api_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/api/watchlist", tags=["watchlist"])
    async def watchlist(request: Request) -> dict[str, Any]:
        """The tracked entities (the file format of `tweetwatch watch export`, as JSON)."""
        async with request.app.state.engine.connect() as conn:
            version, entities = await load_watchlist(conn)
        return {"version": version, "entities": [e.as_json() for e in entities]}

    @app.post("/api/watchlist", tags=["watchlist"], status_code=201)
    async def watch(request: Request, entity: Annotated[dict[str, Any], Body(
            examples=[{"name": "United Airlines", "type": "company",
                       "aliases": ["United", "@united"], "exclude": ["manchester united"]}])],
                    ) -> dict[str, Any]:
        """Add or replace one tracked entity (bearer token required); workers pick it up
        within ``TWEETWATCH_WATCHLIST_POLL_S``."""
        require_token(request)
        try:
            (watched,) = entities_from_document({"entities": [entity]})
        except InvalidWatchlist as exc:
            raise HTTPException(422, detail=str(exc)) from None
        async with request.app.state.engine.begin() as conn:
            await save_entities(conn, [watched])
        return watched.as_json()

    @app.delete("/api/watchlist/{name}", tags=["watchlist"])
    async def unwatch(request: Request, name: str) -> dict[str, str]:
        """Stop tracking an entity (bearer token required)."""
        require_token(request)
        async with request.app.state.engine.begin() as conn:
            removed = await remove_entity(conn, name)
        if removed is None:
            raise HTTPException(404, detail=f"{name!r} is not on the watchlist")
        return {"removed": removed}

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list without the values that may not serialise (exceptions in ctx)."""
    return [{k: (v if k != "ctx" else {ck: str(cv) for ck, cv in v.items()})
             for k, v in err.items() if k != "url"} for err in exc.errors()]

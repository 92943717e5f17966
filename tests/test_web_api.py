"""The JSON API of ``tweetwatch serve`` on both stores (PostgreSQL and the demo's SQLite):
shapes, counts, time buckets, validation, readiness, the live feed and the command line.

Rows are written with the sinks' own functions (``store_batch``, ``insert_alert``) at known
times; every expected figure below is derived from those rows.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from serve_process import ServeProcess

from stream.alerting import insert_alert
from stream.records import AlertRecord
from stream.settings import Settings
from stream.storage import WatchedEntityRow, create_engine, store_batch
from stream.web.app import create_app

if TYPE_CHECKING:
    from conftest import ScratchDatabase

NOW = datetime.now(UTC)
# (tweet id, entity surface, sentiment, hours ago)
MENTIONS = [
    ("t1", "Acme", "negative", 1.0),
    ("t2", "ACME", "negative", 1.2),
    ("t3", "Acme", "positive", 2.5),
    ("t4", "Acme", "neutral", 30.0),   # previous 24 h
    ("t5", "acme", "negative", 40.0),  # previous 24 h
    ("t6", "Globex", "neutral", 3.0),
    ("t7", "Acme", "negative", 24 * 10),  # older than a week
]


def _at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


def _alert(alert_id: str, key: str, end: datetime, tweet_ids: list[str]) -> AlertRecord:
    return AlertRecord(alert_id=alert_id, entity=key.title(), entity_key=key, type="company",
                       window_start=end - timedelta(minutes=5), window_end=end,
                       negative_mentions=2, mentions=2, tweet_ids=tuple(tweet_ids),
                       text=f"{key} is criticised", generator="template", created_at=end)


async def _fill(url: str) -> None:
    tweets, mentions = [], []
    for tweet_id, surface, sentiment, hours in MENTIONS:
        at = _at(hours)
        tweets.append({"id": tweet_id, "text": f"what about {surface}?", "created_at": at,
                       "ingested_at": NOW, "author": None, "lang": None,
                       "sentiment": sentiment, "p_negative": 0.1, "p_neutral": 0.1,
                       "p_positive": 0.8, "model_version": "test"})
        mentions.append({"tweet_id": tweet_id, "start": 11, "end": 11 + len(surface),
                         "entity": surface, "entity_key": surface.lower(), "type": "company",
                         "sentiment": sentiment, "score": 0.9, "p_negative": 0.9,
                         "created_at": at})
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await store_batch(conn, tweets, mentions)
            await insert_alert(conn, _alert("acme:a1", "acme", _at(1.0), ["t1", "t2"]))
            await conn.execute(WatchedEntityRow.__table__.insert(), [{
                "key": "globex", "name": "Globex", "type": "company", "aliases": [],
                "exclude": [], "updated_at": NOW}])
    finally:
        await engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
    else:
        database: ScratchDatabase = request.getfixturevalue("scratch_database")
        url = database.url
    asyncio.run(_fill(url))
    return url


@pytest.fixture
def client(store: str) -> TestClient:
    with TestClient(create_app(Settings(database_url=store))) as test_client:
        yield test_client


def _hour(at: datetime) -> str:
    return at.replace(minute=0, second=0, microsecond=0).isoformat()


def test_entities_with_change_against_the_previous_period(client: TestClient) -> None:
    body = client.get("/api/entities", params={"hours": 24}).json()
    # Globex is on the watchlist: first, though Acme is mentioned more.
    assert [(e["entity_key"], e["watched"]) for e in body["entities"]] == [("globex", True),
                                                                          ("acme", False)]
    acme = body["entities"][1]
    assert acme["entity"] == "Acme"  # the most common spelling
    assert (acme["mentions"], acme["negative"], acme["previous_mentions"]) == (3, 2, 2)
    assert acme["negative_share"] == round(2 / 3, 4)
    assert acme["previous_negative_share"] == 0.5
    assert acme["mentions_change"] == 0.5
    assert acme["negative_share_change"] == round(2 / 3 - 0.5, 4)
    assert acme["alerts"] == 1
    assert datetime.fromisoformat(acme["last_seen"]) == _at(1.0)
    globex = body["entities"][0]
    assert globex["previous_mentions"] == 0 and globex["mentions_change"] is None
    # A two-hour period holds only the two newest mentions of Acme.
    short = client.get("/api/entities", params={"hours": 2}).json()["entities"]
    assert [(e["entity_key"], e["mentions"]) for e in short] == [("acme", 2)]


def test_history_buckets_and_alerts(client: TestClient) -> None:
    body = client.get("/api/entities/@ACME/history", params={"bucket": "hour", "days": 7}).json()
    assert body["entity_key"] == "acme" and body["bucket"] == "hour"
    expected: dict[str, dict[str, int]] = {}
    for _, surface, sentiment, hours in MENTIONS:
        if surface.lower() == "acme" and hours < 24 * 7:
            counts = expected.setdefault(_hour(_at(hours)), {})
            counts[sentiment] = counts.get(sentiment, 0) + 1
    got = {p["start"]: {s: p[s] for s in ("negative", "neutral", "positive") if p[s]}
           for p in body["points"]}
    assert got == expected
    assert [p["start"] for p in body["points"]] == sorted(expected)
    assert all(p["mentions"] == p["negative"] + p["neutral"] + p["positive"]
               for p in body["points"])
    assert [a["alert_id"] for a in body["alerts"]] == ["acme:a1"]
    days = client.get("/api/entities/acme/history", params={"bucket": "day", "days": 30}).json()
    assert sum(p["mentions"] for p in days["points"]) == 6  # t7 is 10 days old
    assert len(days["points"]) == len({_at(h).date() for _, s, _, h in MENTIONS
                                       if s.lower() == "acme"})


def test_mentions_with_their_tweets(client: TestClient) -> None:
    body = client.get("/api/entities/acme/mentions",
                      params={"sentiment": "negative", "limit": 50}).json()
    assert [m["tweet_id"] for m in body["mentions"]] == ["t1", "t2", "t5", "t7"]  # newest first
    assert body["mentions"][0]["text"] == "what about Acme?"
    window = client.get("/api/entities/acme/mentions", params={
        "since": _at(3).isoformat(), "until": _at(1.1).isoformat()}).json()
    assert [m["tweet_id"] for m in window["mentions"]] == ["t2", "t3"]
    limited = client.get("/api/entities/acme/mentions", params={"limit": 1}).json()
    assert len(limited["mentions"]) == 1


def test_alerts_and_the_tweets_behind_one(client: TestClient) -> None:
    alerts = client.get("/api/alerts", params={"entity": "#Acme"}).json()["alerts"]
    assert [a["alert_id"] for a in alerts] == ["acme:a1"]
    assert alerts[0]["v"] == 1 and alerts[0]["tweet_ids"] == ["t1", "t2"]
    assert client.get("/api/alerts", params={"since": NOW.isoformat()}).json()["alerts"] == []
    naive = _at(2).replace(tzinfo=None).isoformat()  # no zone: UTC
    assert len(client.get("/api/alerts", params={"since": naive}).json()["alerts"]) == 1
    detail = client.get("/api/alerts/acme:a1").json()
    assert [t["tweet_id"] for t in detail["tweets"]] == ["t2", "t1"]
    assert client.get("/api/alerts/nope").status_code == 404


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/api/entities", {"hours": 0}, "hours"),
    ("/api/entities", {"limit": "many"}, "limit"),
    ("/api/entities/acme/history", {"bucket": "week"}, "bucket"),
    ("/api/entities/acme/history", {"days": 1000}, "days"),
    ("/api/entities/acme/mentions", {"sentiment": "angry"}, "sentiment"),
    ("/api/entities/acme/mentions", {"since": "yesterday"}, "since"),
    ("/api/alerts", {"limit": 0}, "limit"),
])
def test_bad_parameters_are_422_with_one_line(client: TestClient, path: str,
                                             params: dict[str, Any], name: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert f"parameter '{name}'" in error and "\n" not in error


def test_unknown_or_empty_entity(client: TestClient) -> None:
    missing = client.get("/api/entities/initech/history")
    assert missing.status_code == 404 and "initech" in missing.json()["error"]
    assert client.get("/api/entities/%40%40/mentions").status_code == 422


def test_health_readiness_openapi_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/entities", "/api/entities/{entity}/history", "/api/entities/{entity}/mentions",
            "/api/alerts", "/api/alerts/stream", "/healthz", "/readyz"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "/static/dashboard.js" in page.text
    assert client.get("/static/dashboard.js").status_code == 200


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    with TestClient(create_app(Settings(database_url=url))) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["error"]


def _read_events(url: str, found: list[dict[str, Any]], want: int) -> None:
    with urllib.request.urlopen(url, timeout=20) as stream:
        event = None
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "alert":
                found.append(json.loads(line[6:]))
                if len(found) >= want:
                    return


def test_live_feed_sends_new_alerts(sqlite_url: str, tmp_path: Path) -> None:
    asyncio.run(_fill(sqlite_url))
    with ServeProcess(sqlite_url, tmp_path / "serve.log", poll_s=0.2) as server:
        found: list[dict[str, Any]] = []
        reader = threading.Thread(target=_read_events, daemon=True,
                                  args=(f"{server.url}/api/alerts/stream?entity=globex", found, 1))
        reader.start()
        asyncio.run(_add_alerts(sqlite_url))
        reader.join(20)
        # A feed still open when the server stops does not hold the shutdown.
        held = threading.Thread(target=_read_events, daemon=True,
                                args=(f"{server.url}/api/alerts/stream", [], 100))
        held.start()
        time.sleep(0.5)
    # uvicorn shuts down cleanly, then re-raises the signal (exit by SIGTERM, as it came).
    assert server.returncode in (0, -signal.SIGTERM), server.log()
    assert server.stop_s is not None and server.stop_s < 5
    assert "Application shutdown complete" in server.log()
    # The Acme alert is filtered out by ?entity=; the new Globex one arrives once.
    assert [a["alert_id"] for a in found] == ["globex:new"]
    assert found[0]["entity_key"] == "globex" and found[0]["v"] == 1


async def _add_alerts(url: str) -> None:
    await asyncio.sleep(1.0)  # the reader is connected and polling
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await insert_alert(conn, _alert("acme:new", "acme", datetime.now(UTC), ["t1"]))
            await insert_alert(conn, _alert("globex:new", "globex", datetime.now(UTC), ["t6"]))
    finally:
        await engine.dispose()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", "serve", *args],
                          capture_output=True, text=True, timeout=60)


def test_serve_command_line_errors_are_one_line() -> None:
    bad_port = _serve("--port", "0")
    assert bad_port.returncode == 2 and len(bad_port.stderr.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _serve("--port", str(port))
    assert busy.returncode == 1
    assert busy.stderr.strip() == (f"tweetwatch: error: cannot serve on 127.0.0.1:{port}: "
                                   "address already in use")
    bad_url = _serve("--database-url", "not a url")
    assert bad_url.returncode == 1 and len(bad_url.stderr.strip().splitlines()) == 1
    assert "TWEETWATCH_DATABASE_URL" in bad_url.stderr


@pytest.mark.slow
def test_demo_serve_prints_the_url_and_serves_its_store(tmp_path: Path) -> None:
    """`tweetwatch demo --serve PORT`: the demo, then the dashboard over the demo's store."""
    from serve_process import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", "TWEETWATCH_METRICS_PORT": "0"})
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen([sys.executable, "-m", "stream.cli", "demo", "--tweets", "200",
                                 "--serve", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
        try:
            deadline = time.monotonic() + 300
            while f"dashboard: open http://localhost:{port}/" not in log.read_text():
                assert demo.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.5)
            body: dict[str, Any] = {}
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/entities",
                                                timeout=5) as response:
                        body = json.loads(response.read())
                    break
                except OSError:
                    time.sleep(0.3)
        finally:
            demo.terminate()
            demo.wait(30)
    stored = int(log.read_text().split("tweets stored")[0].rsplit(": ", 1)[1])
    assert stored == 200
    assert body["entities"], log.read_text()
    assert all(e["mentions"] > 0 for e in body["entities"])


def test_query_benchmark_runs(scratch_database: ScratchDatabase,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """`tweetwatch bench api` (docs/api.md's query timings), on a small store."""
    from benchmarks.api import main

    main(["--database-url", scratch_database.url, "--mentions", "3000", "--entities", "50",
          "--repeat", "2"], standalone_mode=False)
    out = capsys.readouterr().out
    assert "filled 3000 mentions of 50 entities" in out
    rows = [line for line in out.splitlines() if line.startswith("| `/api/")]
    assert len(rows) == 6 and all(float(r.split("|")[2]) > 0 for r in rows)


def test_watchlist_is_changed_only_with_the_token(store: str) -> None:
    """Read open; add and remove need TWEETWATCH_API_TOKEN as a bearer token; a server with
    no token keeps the watchlist read-only."""
    united = {"name": "United Airlines", "type": "company", "aliases": ["United", "@united"],
              "exclude": ["manchester united"]}
    with TestClient(create_app(Settings(database_url=store))) as open_server:
        assert open_server.post("/api/watchlist", json=united).status_code == 403
    with TestClient(create_app(Settings(database_url=store, api_token="t0ken"))) as client:
        auth = {"Authorization": "Bearer t0ken"}
        assert client.post("/api/watchlist", json=united).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/api/watchlist", json=united, headers=wrong).status_code == 401
        before = client.get("/api/watchlist").json()
        added = client.post("/api/watchlist", json=united, headers=auth)
        assert added.status_code == 201 and added.json() == united
        after = client.get("/api/watchlist").json()
        assert after["version"] > before["version"]
        assert united in after["entities"]
        bad = client.post("/api/watchlist", json={"name": "X", "colour": "red"}, headers=auth)
        assert bad.status_code == 422 and "unknown field" in bad.json()["error"]
        assert client.delete("/api/watchlist/@united", headers=wrong).status_code == 401
        gone = client.delete("/api/watchlist/United%20Airlines", headers=auth)
        assert gone.json() == {"removed": "United Airlines"}
        assert client.delete("/api/watchlist/United%20Airlines", headers=auth).status_code == 404
        assert united not in client.get("/api/watchlist").json()["entities"]

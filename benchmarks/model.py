"""``tweetwatch bench model``: how fast the joint model runs, and how close to the machine.

Every configuration (engine x intra-op threads x batch size) runs in a fresh child process, so
its peak RSS (``ru_maxrss``) is its own and one run's caches or thread pools never flatter the
next. All rows time the same work on the same real tweets from the shared data (sampled with
replacement, fixed seed): tokenise + encode + model + decode, i.e. ``Analyzer.analyze`` on
chunks of ``batch`` tweets, exactly as the worker calls it per micro-batch. The torch rows run
the training code's own network (``model_export.model.TweetTagger``, weights loaded from the
ONNX file) in place of the onnxruntime session inside the same pre/post-processing; the
``torch-eager`` row is the seeds' way: one tweet at a time in a Python loop.

Beside the end-to-end rate each row reports the pure model rate (``session.run`` / torch
forward on pre-encoded batches) and the stage split. FLOPs per tweet are counted analytically
from the ONNX graph's Conv/LSTM/MatMul/Gemm weights at the measured mean tweet length, and the
achieved GFLOP/s are set beside a float32 matrix-multiply probe (numpy and onnxruntime) at the
same thread count. torch is imported only inside the child processes that need it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from benchmarks.load import sample_tweets
from benchmarks.machine import machine_info
from stream.inference import read_model_card

ENGINES = ("torch-eager", "torch", "onnx-fp32", "onnx-int8")
DEFAULT_BATCH_SIZES = (1, 8, 32, 64, 128, 256)
DEFAULT_THREADS = (1, 2)
DEFAULT_TWEETS = 4096
EAGER_TWEETS = 500  # the slow one-at-a-time baseline: enough for a stable rate
DEFAULT_OUT = Path("benchmarks/results")
_PROBE_SIZES = ((1024, 1024, 1024), (4096, 384, 128), (4096, 192, 64))  # square; token GEMMs
_MIN_TIMED_S = 1.0


# --- FLOPs -----------------------------------------------------------------------------------
def flops_per_tweet(onnx_path: Path, mean_tokens: float, mean_chars: float) -> dict[str, Any]:
    """Multiply-add FLOPs (2 per MAC) of one tweet, from the weights of the fp32 graph.

    Conv layers whose input channels are the character-embedding width run once per character
    (``mean_chars`` per tweet, at most 20 per token); the other convolutions, LSTM steps and
    the MatMul heads once per token; Gemm layers (pooled sentence features) once per tweet.
    Embedding gathers, masks, ReLU, pooling and the LSTM gates' elementwise work are left out
    (well under 1 % here).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: numpy_helper.to_array(i).shape for i in graph.initializer}
    char_dim = next((shape[1] for name, shape in weights.items()
                     if name.endswith("char_embedding.weight")), -1)  # members.0.char_...
    per_char = per_token = per_tweet = 0
    layers = []
    for node in graph.node:
        shape = next((weights[n] for n in node.input[1:2] if n in weights), None)
        if shape is None:
            continue
        if node.op_type == "Conv":
            out_ch, in_ch, kernel = shape[0], shape[1], int(_prod(shape[2:]))
            macs = out_ch * in_ch * kernel
            unit = "char" if in_ch == char_dim else "token"
        elif node.op_type == "MatMul":
            macs, unit = int(_prod(shape)), "token"
        elif node.op_type == "Gemm":
            macs, unit = int(_prod(shape)), "tweet"
        elif node.op_type == "LSTM":  # input weights W [1,4h,in] and recurrent R [1,4h,h]
            macs = int(_prod(shape)) + int(_prod(weights[node.input[2]]))
            unit = "token"
        else:
            continue
        layers.append({"node": node.name or node.op_type, "op": node.op_type,
                       "weight": list(shape), "per": unit, "flops": 2 * macs})
        if unit == "char":
            per_char += 2 * macs
        elif unit == "token":
            per_token += 2 * macs
        else:
            per_tweet += 2 * macs
    total = per_char * mean_chars + per_token * mean_tokens + per_tweet
    return {"flops_per_tweet": total, "per_char": per_char, "per_token": per_token,
            "per_tweet": per_tweet, "mean_tokens": mean_tokens, "mean_chars": mean_chars,
            "layers": layers,
            "method": "analytic: 2 x MACs of every Conv/LSTM/MatMul/Gemm weight in model.onnx, "
                      "char convs x mean chars, token layers x mean tokens, Gemm x 1; "
                      "unpadded (useful) work at the measured mean length"}


def _prod(values: Sequence[int]) -> float:
    out = 1.0
    for v in values:
        out *= v
    return out


def text_shape(texts: Sequence[str]) -> tuple[float, float]:
    """Mean tokens and mean model characters (at most 20 per token) per tweet."""
    from stream.textproc import MAX_CHARS_PER_TOKEN, tokenize

    tokens = [tokenize(t) for t in texts]
    n_tok = sum(len(t) for t in tokens)
    n_chr = sum(min(len(tok.text), MAX_CHARS_PER_TOKEN) for t in tokens for tok in t)
    return n_tok / len(texts), n_chr / len(texts)


# --- child: one configuration ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Config:
    """One measured configuration (what a child process runs)."""

    engine: str
    threads: int
    batch: int
    tweets: int
    model_dir: str
    data_dir: str
    repeats: int


def _torch_runner(model_dir: Path, threads: int):
    """A ``run(token_lists) -> outputs`` like ``Analyzer.run``, on the torch network."""
    import torch

    from model_export.predictor import named_outputs

    torch.set_num_threads(threads)
    model = load_torch_model(model_dir)

    def forward(feeds: dict[str, Any]) -> dict[str, Any]:
        with torch.inference_mode():
            return named_outputs(model, feeds)

    return forward


def load_torch_model(model_dir: Path):
    """``TweetTagger`` (or ``TweetEnsemble``) with the weights of ``model.onnx`` (the artifact
    ships no torch file).

    Named initializers map to the state dict by name; the linear heads that the exporter
    turned into anonymous ``MatMul`` weights are found through the ``Add`` of their named bias.
    """
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from model_export.model import ModelConfig, TweetEnsemble, TweetTagger

    graph = onnx.load(str(model_dir / "model.onnx")).graph
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for name in [n for n in arrays if f"{n}_scale" in arrays]:  # int8 rows (word table)
        arrays[name] = arrays[name].astype(np.float32) * arrays.pop(f"{name}_scale")
    card = read_model_card(model_dir)
    configs = card.get("model_config", {})
    configs = configs.get("members", [configs]) if configs else []
    if configs:
        members = [TweetTagger(ModelConfig(**{**cfg, "dilations": tuple(cfg["dilations"])}))
                   for cfg in configs]
    else:
        words, word_dim = arrays["word_embedding.weight"].shape
        members = [TweetTagger(ModelConfig(
            n_words=words, n_chars=arrays["char_embedding.weight"].shape[0],
            word_dim=word_dim, hidden=arrays["project.weight"].shape[0]))]
    for member in members[1:]:
        member.word_embedding = members[0].word_embedding  # stored once in the graph
    model = members[0] if len(members) == 1 else TweetEnsemble(members)
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()
             if k in model.state_dict()}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] in state or node.input[1] not in arrays:
            continue
        for add in consumers.get(node.output[0], []):
            bias = next((n for n in add.input if n.endswith(".bias") and n in arrays), None)
            if add.op_type == "Add" and bias:
                weight = torch.from_numpy(arrays[node.input[1]].T.copy())
                state[bias.removesuffix(".bias") + ".weight"] = weight
    state.update(_lstm_weights(graph, arrays))
    shared = next((state[k] for k in state if k.endswith("word_embedding.weight")), None)
    for key in model.state_dict():
        if key.endswith("word_embedding.weight") and key not in state and shared is not None:
            state[key] = shared
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise RuntimeError(f"cannot map ONNX weights to the torch model: {missing}")
    model.load_state_dict(state)
    return model.eval()


def _lstm_weights(graph, arrays: dict[str, Any]) -> dict[str, Any]:
    """torch LSTM weights from the exporter's ONNX ``LSTM`` nodes (named after their module
    path, ``/members.0/lstm_forward/LSTM``): ONNX stacks the gates i, o, f, c and joins both
    biases, torch stacks i, f, c, o."""
    import numpy as np
    import torch

    state = {}
    for node in graph.node:
        if node.op_type != "LSTM":
            continue
        module = ".".join(node.name.strip("/").split("/")[:-1])  # members.0.lstm_forward
        w, r, b = (arrays[name][0] for name in node.input[1:4])
        gates = w.shape[0] // 4
        order = np.concatenate([np.arange(g * gates, (g + 1) * gates) for g in (0, 2, 3, 1)])
        state[f"{module}.weight_ih_l0"] = torch.from_numpy(w[order].copy())
        state[f"{module}.weight_hh_l0"] = torch.from_numpy(r[order].copy())
        state[f"{module}.bias_ih_l0"] = torch.from_numpy(b[: 4 * gates][order].copy())
        state[f"{module}.bias_hh_l0"] = torch.from_numpy(b[4 * gates:][order].copy())
    return state


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` rounds (each at least once)."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_config(config: Config) -> dict[str, Any]:
    """Measure one configuration in this process; returns its row."""
    import numpy as np

    from stream.inference import Analyzer
    from stream.textproc import tokenize

    model_dir = Path(config.model_dir)
    count = min(config.tweets, EAGER_TWEETS) if config.engine == "torch-eager" else config.tweets
    texts = sample_tweets(Path(config.data_dir), count)
    variant = "int8" if config.engine == "onnx-int8" else "fp32"
    analyzer = Analyzer(model_dir, variant, intra_op_threads=config.threads,
                        batch_size=config.batch)
    if config.engine.startswith("torch"):
        forward = _torch_runner(model_dir, config.threads)

        def torch_run(token_lists):
            feeds = analyzer.vocab.encode(token_lists)
            outputs = forward(feeds)
            outputs["lengths"] = feeds["lengths"]
            return outputs

        analyzer.run = torch_run  # same tokenise/encode/decode around the torch network
        model_only = forward
    else:
        names = [o.name for o in analyzer.session.get_outputs()]

        def model_only(feeds):
            return analyzer.session.run(names, feeds)

    chunks = [texts[i : i + config.batch] for i in range(0, len(texts), config.batch)]
    if config.engine == "torch-eager":
        chunks = [[t] for t in texts]
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    analyzer.analyze(chunks[0])  # warm-up: lazy allocations, thread pool start

    def end_to_end() -> None:
        for chunk in chunks:
            analyzer.analyze(chunk)

    def tokenise_encode() -> list[dict[str, Any]]:
        feeds = []
        for chunk in chunks:
            toks = sorted(([t.text for t in tokenize(x)] for x in chunk), key=len)
            feeds.append(analyzer.vocab.encode(toks))
        return feeds

    feeds = tokenise_encode()
    repeats = config.repeats
    e2e_s = _timed(end_to_end, repeats)
    if e2e_s < _MIN_TIMED_S / 4:  # tiny smoke runs: more rounds for a stabler median
        repeats = max(repeats, 5)
        e2e_s = _timed(end_to_end, repeats)
    prep_s = _timed(tokenise_encode, repeats)
    model_s = _timed(lambda: [model_only(f) for f in feeds], repeats)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = len(texts)
    return {
        "engine": config.engine, "threads": config.threads,
        "batch": 1 if config.engine == "torch-eager" else config.batch,
        "tweets": n, "repeats": repeats,
        "tweets_per_s": n / e2e_s, "model_tweets_per_s": n / model_s,
        "us_per_tweet": 1e6 * e2e_s / n,
        "split_us_per_tweet": {"tokenise_encode": 1e6 * prep_s / n,
                               "model": 1e6 * model_s / n,
                               "decode_rest": max(0.0, 1e6 * (e2e_s - prep_s - model_s) / n)},
        "rss_after_load_mb": round(rss_loaded, 1), "peak_rss_mb": round(rss_peak, 1),
        "padded_tokens_per_tweet": float(np.mean([f["word_ids"].shape[1] for f in feeds
                                                  for _ in range(len(f["lengths"]))])),
    }


def probe_config(kind: str, threads: int) -> dict[str, Any]:
    """Float32 matrix-multiply GFLOP/s (median of rounds) with numpy or onnxruntime."""
    import numpy as np

    results = {}
    for m, k, n in _PROBE_SIZES:
        a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
        if kind == "numpy":
            def call(a=a, b=b):
                return a @ b
        else:
            session = _ort_matmul(b, threads)

            def call(a=a, session=session):
                return session.run(None, {"a": a})
        call()
        rounds = []
        for _ in range(7):
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.15:
                call()
                reps += 1
            rounds.append(reps * 2 * m * k * n / (time.perf_counter() - start) / 1e9)
        results[f"{m}x{k}x{n}"] = statistics.median(rounds)
    return {"probe": kind, "threads": threads, "gflops": results,
            "peak_gflops": max(results.values())}


def _ort_matmul(b, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "probe",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", b.shape[0]])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["m", b.shape[1]])],
        [numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _child_main(spec: str) -> None:
    job = json.loads(spec)
    if job.pop("kind") == "probe":
        result = probe_config(job["probe"], job["threads"])
    else:
        result = run_config(Config(**job))
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    # The child runs `python -m benchmarks.model` from wherever the command was started: the
    # checkout that holds this package goes on its path (benchmarks is not installed).
    checkout = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (checkout, env.get("PYTHONPATH")) if p)
    return env


def _run_child(job: dict[str, Any], threads: int, timeout: float = 900) -> dict[str, Any]:
    """Run one job in a fresh interpreter; the result is the last BENCH-RESULT line."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.model", json.dumps(job)],
                          capture_output=True, text=True, env=_child_env(threads),
                          timeout=timeout, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return json.loads(line.removeprefix("BENCH-RESULT "))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"benchmark child {job} failed (status {proc.returncode}): {tail}")


# --- parent: the whole benchmark ---------------------------------------------------------------
def run_benchmark(model_dir: Path, data_dir: Path, tweets: int, batch_sizes: Sequence[int],
                  threads: Sequence[int], engines: Sequence[str], repeats: int,
                  progress: Any = None) -> dict[str, Any]:
    """Every configuration in its own child process, plus the probes; the result document."""
    import importlib.util

    notes = []
    if importlib.util.find_spec("torch") is None:
        engines = [e for e in engines if not e.startswith("torch")]
        notes.append("torch is not installed (pip install 'tweetwatch[train]'): torch rows "
                     "skipped")
    jobs: list[dict[str, Any]] = []
    for t in threads:
        for engine in engines:
            # torch at batch 1 is the torch-eager row (the same loop): measured once.
            sizes = [1] if engine == "torch-eager" else [
                b for b in batch_sizes if not (engine == "torch" and b == 1)]
            for b in sizes:
                jobs.append({"kind": "model", "engine": engine, "threads": t, "batch": b,
                             "tweets": tweets, "model_dir": str(model_dir),
                             "data_dir": str(data_dir), "repeats": repeats})
        for probe in ("numpy", "onnxruntime"):
            jobs.append({"kind": "probe", "probe": probe, "threads": t})
    rows, probes = [], []
    for job in jobs:
        result = _run_child(dict(job), job["threads"])
        (probes if job["kind"] == "probe" else rows).append(result)
        if progress is not None:
            progress(job, result)
    texts = sample_tweets(data_dir, tweets)
    mean_tokens, mean_chars = text_shape(texts)
    flops = flops_per_tweet(model_dir / "model.onnx", mean_tokens, mean_chars)
    peak = {t: max(p["peak_gflops"] for p in probes if p["threads"] == t) for t in threads}
    for row in rows:
        row["model_gflops"] = row["model_tweets_per_s"] * flops["flops_per_tweet"] / 1e9
        row["e2e_gflops"] = row["tweets_per_s"] * flops["flops_per_tweet"] / 1e9
        row["share_of_peak"] = row["model_gflops"] / peak[row["threads"]]
    baseline = {r["threads"]: r["tweets_per_s"] for r in rows if r["engine"] == "torch-eager"}
    for row in rows:
        if row["threads"] in baseline:
            row["speedup_vs_eager"] = row["tweets_per_s"] / baseline[row["threads"]]
    card = read_model_card(model_dir)
    return {"kind": "model", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "model_dir": str(model_dir),
            "model_version": card.get("version"), "tweets": tweets, "repeats": repeats,
            "batch_sizes": list(batch_sizes), "threads": list(threads), "rows": rows,
            "probes": probes, "peak_gflops": {str(k): v for k, v in peak.items()},
            "flops": flops, "notes": notes, "summary": summarise(rows)}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The headline: best configuration, its speed-up over the one-at-a-time torch baseline."""
    best = max(rows, key=lambda r: r["tweets_per_s"])
    out: dict[str, Any] = {"best": {k: best[k] for k in ("engine", "threads", "batch",
                                                          "tweets_per_s")}}
    for t in sorted({r["threads"] for r in rows}):
        same = [r for r in rows if r["threads"] == t]
        eager = next((r for r in same if r["engine"] == "torch-eager"), None)
        top = max(same, key=lambda r: r["tweets_per_s"])
        entry = {"best_engine": top["engine"], "best_batch": top["batch"],
                 "best_tweets_per_s": top["tweets_per_s"]}
        if eager:
            entry["eager_tweets_per_s"] = eager["tweets_per_s"]
            entry["speedup"] = top["tweets_per_s"] / eager["tweets_per_s"]
        out[f"threads_{t}"] = entry
    return out


def markdown(doc: dict[str, Any]) -> str:
    """The results as Markdown tables (what the README shows)."""
    m = doc["machine"]
    fl = doc["flops"]
    lines = [
        f"# Model benchmark ({doc['created_at']})",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu_model']} ({', '.join(m['simd']) or 'no AVX2'}), "
        f"{m['ram_gib']} GiB RAM; onnxruntime {m['onnxruntime']}, numpy {m['numpy']}; "
        f"load average at the end {', '.join(f'{x:.2f}' for x in m['load_average'])}. "
        f"Model {doc.get('model_version')}; {doc['tweets']} real tweets per configuration, "
        f"median of {doc['repeats']} rounds, each configuration in a fresh process.",
        "",
        "tweets/s = tokenise + encode + model + decode (`Analyzer.analyze` on chunks of "
        "`batch` tweets); model tweets/s = `session.run` / torch forward alone on "
        "pre-encoded batches; speed-up = tweets/s over torch-eager (one tweet at a time) at "
        "the same thread count.",
        "",
        "| engine | threads | batch | tweets/s | model tweets/s | µs/tweet: tokenise+encode "
        "/ model / decode | model GFLOP/s | % of peak | speed-up | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(doc["rows"], key=lambda r: (r["threads"], ENGINES.index(r["engine"]),
                                                r["batch"])):
        s = r["split_us_per_tweet"]
        speed = f"{r['speedup_vs_eager']:.1f}x" if "speedup_vs_eager" in r else "-"
        lines.append(
            f"| {r['engine']} | {r['threads']} | {r['batch']} | {r['tweets_per_s']:,.0f} | "
            f"{r['model_tweets_per_s']:,.0f} | {s['tokenise_encode']:.0f} / {s['model']:.0f} "
            f"/ {s['decode_rest']:.0f} | {r['model_gflops']:.2f} | "
            f"{100 * r['share_of_peak']:.1f} | {speed} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "Matrix-multiply probe (float32, GFLOP/s, median of 7 rounds):", "",
              "| probe | threads | " + " | ".join(_PROBE_LABELS) + " |",
              "|---|---|" + "---|" * len(_PROBE_LABELS)]
    for p in doc["probes"]:
        vals = " | ".join(f"{p['gflops'][k]:.1f}" for k in _PROBE_LABELS)
        lines.append(f"| {p['probe']} | {p['threads']} | {vals} |")
    lines += ["", f"FLOPs per tweet: {fl['flops_per_tweet'] / 1e6:.2f} MFLOP at "
              f"{fl['mean_tokens']:.1f} tokens and {fl['mean_chars']:.1f} characters per tweet "
              f"({fl['per_token'] / 1e3:.0f} kFLOP per token, {fl['per_char'] / 1e3:.1f} kFLOP "
              f"per character, {fl['per_tweet'] / 1e3:.1f} kFLOP per tweet); {fl['method']}."]
    summary = doc["summary"]
    for key, entry in summary.items():
        if key.startswith("threads_") and "speedup" in entry:
            lines.append(f"- {key.replace('_', ' ')}: best {entry['best_engine']} batch "
                         f"{entry['best_batch']} = {entry['best_tweets_per_s']:,.0f} tweets/s, "
                         f"{entry['speedup']:.1f}x torch one-at-a-time "
                         f"({entry['eager_tweets_per_s']:,.0f} tweets/s)")
    lines += [f"- note: {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


_PROBE_LABELS = tuple(f"{m}x{k}x{n}" for m, k, n in _PROBE_SIZES)


def plot(doc: dict[str, Any], path: Path) -> None:
    """Throughput against batch size, one line per engine, a panel per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = doc["threads"]
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.2), sharey=True,
                             squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        for engine in ENGINES:
            rows = sorted((r for r in doc["rows"] if r["engine"] == engine
                           and r["threads"] == t), key=lambda r: r["batch"])
            if not rows:
                continue
            if engine == "torch-eager":
                ax.axhline(rows[0]["tweets_per_s"], color="grey", ls=":",
                           label="torch one at a time")
                continue
            ax.plot([r["batch"] for r in rows], [r["tweets_per_s"] for r in rows], "o-",
                    label=f"{engine} (end to end)")
            ax.plot([r["batch"] for r in rows], [r["model_tweets_per_s"] for r in rows], "x--",
                    alpha=0.6, label=f"{engine} (model only)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (tweets)")
        ax.set_title(f"{t} intra-op thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("tweets per second")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"tweetwatch model throughput ({doc['machine']['cpu_model']}, "
                 f"{doc['machine']['nproc']} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """``model.json``, ``model.md`` and ``model_throughput.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "model.json", out_dir / "model.md", out_dir / "model_throughput.png"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(doc), encoding="utf-8")
    plot(doc, paths[2])
    return paths


def _int_list(value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items or min(items) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return items


@click.command("model")
@click.option("--tweets", type=click.IntRange(min=8), default=DEFAULT_TWEETS,
              show_default=True, help="Real tweets per configuration.")
@click.option("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)),
              show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", default=",".join(map(str, DEFAULT_THREADS)), show_default=True,
              help="Comma-separated intra-op thread counts.")
@click.option("--engines", default=",".join(ENGINES), show_default=True,
              help="Comma-separated subset of " + ", ".join(ENGINES) + ".")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed rounds per configuration (the median is reported).")
@click.option("--model-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Model artifact folder [default: TWEETWATCH_MODEL_DIR].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=DEFAULT_OUT, show_default=True, help="Results folder.")
def model_command(tweets: int, batch_sizes: str, threads: str, engines: str, repeats: int,
                  model_dir: Path | None, out_dir: Path) -> None:
    """Tweets per second of the model alone: torch one at a time, torch batched, ONNX fp32 and
    int8, per batch size and thread count; peak RSS; FLOPs and GFLOP/s against a matmul
    probe. Writes model.json, model.md and model_throughput.png to --out."""
    from stream.settings import get_settings

    settings = get_settings()
    model_dir = model_dir or settings.model_dir
    if not (model_dir / "model.onnx").is_file():
        raise click.ClickException(f"model artifact not found: {model_dir / 'model.onnx'}")
    chosen = [e.strip() for e in engines.split(",") if e.strip()]
    unknown = sorted(set(chosen) - set(ENGINES))
    if unknown:
        raise click.BadParameter(f"unknown engine(s) {', '.join(unknown)}",
                                 param_hint="--engines")
    sizes, thread_counts = _int_list(batch_sizes), _int_list(threads)

    def progress(job: dict[str, Any], result: dict[str, Any]) -> None:
        if job["kind"] == "probe":
            click.echo(f"probe {job['probe']:<11} threads {job['threads']}: "
                       f"{result['peak_gflops']:.1f} GFLOP/s", err=True)
        else:
            click.echo(f"{job['engine']:<11} threads {job['threads']} batch {result['batch']:>3}: "
                       f"{result['tweets_per_s']:>8,.0f} tweets/s (model alone "
                       f"{result['model_tweets_per_s']:,.0f}), peak RSS "
                       f"{result['peak_rss_mb']:.0f} MB", err=True)

    try:
        doc = run_benchmark(model_dir, settings.data_dir, tweets, sizes, thread_counts, chosen,
                            repeats, progress)
    except (OSError, RuntimeError, ValueError) as exc:
        raise click.ClickException(f"model benchmark failed: {exc}") from exc
    paths = write_outputs(doc, out_dir)
    click.echo(markdown(doc))
    click.echo("wrote " + ", ".join(str(p) for p in paths), err=True)


if __name__ == "__main__":
    _child_main(sys.argv[1])

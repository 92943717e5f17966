"""Smoke run of `tweetwatch bench model` (a few dozen real tweets) and the checks its figures
rest on: the torch baseline runs the artifact's own weights, and the FLOPs count matches the
layers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.load import sample_tweets
from benchmarks.model import ENGINES, flops_per_tweet, load_torch_model, text_shape
from stream.settings import Settings

SETTINGS = Settings()
MODEL_DIR = SETTINGS.model_dir

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.onnx").is_file(),
                                reason=f"no model artifact in {MODEL_DIR}")


def test_torch_baseline_runs_the_artifact_weights() -> None:
    import onnxruntime as ort
    import torch

    from model_export.heads import INPUT_NAMES
    from stream.textproc import Vocab, tokenize

    model = load_torch_model(MODEL_DIR)
    vocab = Vocab.load(MODEL_DIR / "vocab.json")
    texts = sample_tweets(SETTINGS.data_dir, 16)
    feeds = vocab.encode([[t.text for t in tokenize(x)] for x in texts])
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    expected = session.run(None, feeds)
    with torch.inference_mode():
        got = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-4)


def member_flops(cfg: dict, tags: int) -> tuple[int, int, int]:
    """FLOPs per token, per character and per tweet of one member network, from its config."""
    h, w, f, c = cfg["hidden"], cfg["word_dim"], cfg["char_filters"], cfg["char_dim"]
    encoder = cfg.get("encoder", "idcnn")
    convs = len(cfg["dilations"]) * h * h * 3 if "idcnn" in encoder else 0
    lstms = 2 * 4 * (h // 2) * (h + h // 2) if "bilstm" in encoder else 0  # two directions
    per_token = 2 * (h * (w + f) + convs + lstms + h * (tags + 3))
    bag = (cfg.get("bow_dim") or w) if cfg.get("tweet_bow") else 0
    tweet_in = 2 * h + bag  # pooled states (+ mean word vector)
    entity_tweet = 3 * 64 if cfg.get("entity_tweet") else 0  # tweet head -> entity head
    per_tweet = 2 * (3 * 2 * h + 64 * tweet_in + 3 * 64 + entity_tweet)
    return per_token, 2 * f * c * 3, per_tweet


def test_flops_count_matches_the_layers() -> None:
    card = json.loads((MODEL_DIR / "model_card.json").read_text())
    configs = card["model_config"].get("members", [card["model_config"]])
    labels = json.loads((MODEL_DIR / "labels.json").read_text())
    tags = sum(len(head["tags"]) for head in labels["ner_heads"].values())
    counted = flops_per_tweet(MODEL_DIR / "model.onnx", mean_tokens=10.0, mean_chars=40.0)
    expected = [sum(parts) for parts in zip(*(member_flops(cfg, tags) for cfg in configs),
                                             strict=True)]
    assert [counted["per_token"], counted["per_char"], counted["per_tweet"]] == expected
    assert counted["flops_per_tweet"] == pytest.approx(
        10 * counted["per_token"] + 40 * counted["per_char"] + counted["per_tweet"])
    tokens, chars = text_shape(["Apple stock is up!", "hello"])
    assert (tokens, chars) == (3.0, 10.0)  # 5 tokens / 15 chars; 1 / 5


def test_bench_model_smoke_writes_sane_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "bench", "model", "--tweets", "48",
         "--batch-sizes", "1,16", "--threads", "1", "--repeats", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "model.json").read_text())
    for key in ("machine", "rows", "probes", "peak_gflops", "flops", "summary"):
        assert key in doc
    assert {r["engine"] for r in doc["rows"]} == set(ENGINES)
    # eager once (it is torch at batch 1), torch at 16, the ONNX engines at 1 and 16
    assert len(doc["rows"]) == 1 + 1 + 2 * 2
    for row in doc["rows"]:
        assert row["tweets_per_s"] > 0 and row["model_tweets_per_s"] > 0
        assert row["model_tweets_per_s"] > row["tweets_per_s"] * 0.5
        assert row["peak_rss_mb"] >= row["rss_after_load_mb"] > 10
        assert 0 < row["share_of_peak"] < 1.5
        assert row["speedup_vs_eager"] > 0
    assert doc["flops"]["flops_per_tweet"] > 1e5
    assert all(p["peak_gflops"] > 0.1 for p in doc["probes"])
    assert {p["probe"] for p in doc["probes"]} == {"numpy", "onnxruntime"}
    table = (out / "model.md").read_text()
    assert "| onnx-int8 | 1 | 16 |" in table and "GFLOP/s" in table
    assert (out / "model_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "tweets/s" in proc.stdout


def test_torch_model_is_rebuilt_from_an_ensemble_graph(tmp_path: Path) -> None:
    """An ensemble of every encoder with its int8 word table: the exporter renames and reorders
    LSTM weights and stores the shared table once; load_torch_model must undo all of it, or
    the torch baseline would run other weights than the ONNX model."""
    import onnxruntime as ort
    import torch

    from model_export.embeddings import build_vocab
    from model_export.export import export_onnx, round_word_table_to_int8, store_word_table_int8
    from model_export.heads import INPUT_NAMES
    from model_export.model import ENCODERS, ModelConfig, TweetEnsemble, TweetTagger
    from stream.textproc import tokenize

    texts = [[t.text for t in tokenize(x)] for x in sample_tweets(SETTINGS.data_dir, 32)]
    vocab = build_vocab(texts, max_words=2000, min_count=1)
    torch.manual_seed(0)
    configs = [ModelConfig(n_words=len(vocab.words), n_chars=len(vocab.chars), hidden=32,
                           tweet_bow=True, bow_dim=8, encoder=e) for e in ENCODERS]
    members = [TweetTagger(config) for config in configs]
    for member in members[1:]:
        member.word_embedding.load_state_dict(members[0].word_embedding.state_dict())
    model = TweetEnsemble(members).eval()
    round_word_table_to_int8(model)
    export_onnx(model, vocab, tmp_path / "model.onnx", texts[:4])
    store_word_table_int8(tmp_path / "model.onnx")
    (tmp_path / "model_card.json").write_text(json.dumps(
        {"model_config": {"members": [c.to_dict() for c in configs]}}))
    rebuilt = load_torch_model(tmp_path)
    feeds = vocab.encode(texts)
    expected = ort.InferenceSession(str(tmp_path / "model.onnx"),
                                    providers=["CPUExecutionProvider"]).run(None, feeds)
    with torch.inference_mode():
        got = rebuilt(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g.numpy(), e, atol=1e-4)
    layers = flops_per_tweet(tmp_path / "model.onnx", 10.0, 40.0)["layers"]
    assert sum(layer["op"] == "LSTM" for layer in layers) == 4  # two encoders, two ways each

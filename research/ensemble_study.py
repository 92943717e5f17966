"""Which networks to average, and whether to calibrate their mean: measured without retraining.

Every network of an artifact (``model.onnx`` rebuilt in torch) or of several artifacts runs
once over the dev and test texts; any subset's mean is then the mean of those cached outputs,
scored through the runtime's own decoding. That answers "would a fourth network help, would
two do?" in minutes instead of one training run per combination.

The calibration sweep shifts the served mean's outputs exactly as ``model_export.calibrate``
shifts one network's biases (same grids), so it shows what calibrating the mean instead of
each member would choose on dev, and what that would do on test.

    python -m research.ensemble_study members ARTIFACT... [--subset 0,2 ...]
    python -m research.ensemble_study calibration ARTIFACT
    python -m research.ensemble_study export ARTIFACT --subset 0,2 --out DIR

``export`` writes a servable artifact of a subset (a faster model from a trained ensemble, no
retraining): the same export, parity check, int8 model and card as ``tweetwatch train``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from model_export.calibrate import OFFSETS, PRIOR_BETAS, train_log_prior
from model_export.corpus import dev_shares, fully_trained
from model_export.evaluate import (
    dev_objective,
    evaluate,
    score_mitchell,
    score_ner,
    score_sentiment,
)
from model_export.heads import HEAD_BY_NAME, OUTPUT_NAMES, TWEET_SENTIMENT_OUTPUT
from model_export.model import TweetEnsemble, TweetTagger
from model_export.predictor import named_outputs
from stream.inference import LabelSpace, TokenAnalysis, read_model_card
from stream.textproc import Vocab

Predictor = Callable[[Sequence[Sequence[str]], Sequence[str] | None], list[TokenAnalysis]]
# Raw outputs of one network over one text list: (row indices, named outputs, lengths) per batch.
Chunks = list[tuple[list[int], dict[str, np.ndarray], np.ndarray]]


class MemberOutputs:
    """Each network's raw outputs per text list, computed once and reused by every subset."""

    def __init__(self, members: Sequence[TweetTagger], vocab: Vocab, labels: LabelSpace,
                 batch_size: int = 256) -> None:
        self.members = list(members)
        self.vocab = vocab
        self.labels = labels
        self.batch_size = batch_size
        self._cache: dict[tuple[int, int], Chunks] = {}

    def outputs(self, member: int, token_lists: Sequence[Sequence[str]]) -> Chunks:
        key = (member, hash(tuple(map(tuple, token_lists))))
        if key not in self._cache:
            order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
            chunks: Chunks = []
            model = self.members[member].eval()
            with torch.no_grad():
                for begin in range(0, len(order), self.batch_size):
                    rows = order[begin : begin + self.batch_size]
                    feeds = self.vocab.encode([token_lists[i] for i in rows])
                    chunks.append((rows, named_outputs(model, feeds), feeds["lengths"]))
            self._cache[key] = chunks
        return self._cache[key]

    def predictor(self, subset: Sequence[int],
                  shift: dict[str, np.ndarray] | None = None) -> Predictor:
        """The mean of ``subset``'s outputs, plus ``shift`` per output (broadcast over the
        last axis), decoded as the runtime decodes."""

        def predict(token_lists: Sequence[Sequence[str]],
                    heads: Sequence[str] | None) -> list[TokenAnalysis]:
            per_member = [self.outputs(k, token_lists) for k in subset]
            found: dict[int, TokenAnalysis] = {}
            for parts in zip(*per_member, strict=True):
                rows, _, lengths = parts[0]
                named = {n: np.mean([p[1][n] for p in parts], axis=0) for n in OUTPUT_NAMES}
                for name, vector in (shift or {}).items():
                    named[name] = named[name] + vector
                found.update(zip(rows, self.labels.decode(named, lengths, heads), strict=True))
            return [found[i] for i in range(len(token_lists))]

        return predict


def load_members(artifacts: Sequence[Path]) -> tuple[list[TweetTagger], list[str]]:
    """Every network of the artifacts, in order, with a name such as ``model[1]:bilstm``."""
    from benchmarks.model import load_torch_model

    members, names = [], []
    for artifact in artifacts:
        model = load_torch_model(artifact)
        networks = list(model.members) if isinstance(model, TweetEnsemble) else [model]
        for index, network in enumerate(networks):
            members.append(network)
            names.append(f"{artifact.name}[{index}]:{network.config.encoder}")
    return members, names


def subset_row(outputs: MemberOutputs, subset: Sequence[int], names: Sequence[str],
               data_dir: Path, folds: Sequence[int], shares: Mapping[str, float],
               topic_share: float = 0.0) -> dict:
    """Dev objective (dev splits held out as ``shares`` says, 4A dev as ``topic_share``
    says) and the main test figures of one subset's mean."""
    predict = outputs.predictor(subset)
    dev = evaluate(predict, data_dir, "dev", folds, shares, topic_share)
    test = evaluate(predict, data_dir, "test", folds)
    return {"members": [names[k] for k in subset],
            "dev_objective": round(dev_objective(dev, exclude=fully_trained(shares)), 2),
            "dev": {"wnut17": dev["wnut17"]["f1"], "btc": dev["btc"]["f1"],
                    "4a_dev": round(dev["semeval2017_4a"]["macro_recall"], 4),
                    **({"4a_val": round(dev["semeval2017_4a_val"]["macro_recall"], 4)}
                       if "semeval2017_4a_val" in dev else {}),
                    "mitchell": dev["mitchell2013"]["f1"]},
            "wnut16": test["wnut16"]["f1"], "wnut17": test["wnut17"]["f1"],
            "btc": test["btc"]["f1"],
            "4a_macro_recall": round(test["semeval2017_4a"]["macro_recall"], 4),
            "mitchell": test["mitchell2013"]["f1"],
            "topic_macro_recall": round(test["semeval2017_topic"]["macro_recall"], 4)}


def calibration_sweep(outputs: MemberOutputs, data_dir: Path, fold: int,
                      shares: Mapping[str, float], topic_share: float = 0.0) -> dict[str, dict]:
    """For each calibrated head: dev and test score per shift of the mean, and the shift dev
    would choose (ties: the smallest), on the grids of ``model_export.calibrate``; the tweet
    head on the 4A dev split that ``topic_share`` names, as in training."""
    everyone = list(range(len(outputs.members)))
    log_prior = train_log_prior(data_dir, topic_share)
    report: dict[str, dict] = {}
    for head in ("wnut17", "btc", "targets", "tweet"):
        if head == "tweet":
            output, grid = TWEET_SENTIMENT_OUTPUT, (-0.5, -0.25, *PRIOR_BETAS)

            def vector(value: float) -> np.ndarray:
                return (-value * log_prior).astype(np.float32)
        else:
            output, grid = HEAD_BY_NAME[head].output, OFFSETS
            width = len(HEAD_BY_NAME[head].tags)

            def vector(value: float, width: int = width) -> np.ndarray:
                shift = np.zeros(width, dtype=np.float32)
                shift[0] = -value  # a larger offset makes leaving O easier
                return shift
        scores = {}
        for value in tqdm(grid, desc=f"sweeping {head}", unit="shift"):
            predict = outputs.predictor(everyone, {output: vector(float(value))})
            scores[float(value)] = {
                split: _head_score(predict, head, data_dir, split, fold, shares, topic_share)
                for split in ("dev", "test")}
        chosen = max(scores, key=lambda v: (scores[v]["dev"], -abs(v)))
        report[head] = {"chosen_on_dev": chosen, "as_served": scores[0.0],
                        "chosen": scores[chosen], "sweep": scores}
    return report


def _head_score(predict: Predictor, head: str, data_dir: Path, split: str, fold: int,
                shares: Mapping[str, float], topic_share: float) -> float:
    if head == "tweet":
        scores = score_sentiment(predict, data_dir, split, topic_share)
        return round(100 * scores["macro_recall"], 2)
    if head == "targets":
        return score_mitchell(predict, data_dir, fold, split)["f1"]
    return score_ner(predict, data_dir, head, split, shares)["f1"]


def export_subset(source: Path, subset: Sequence[int], out_dir: Path, data_dir: Path) -> dict:
    """Write the mean of ``subset``'s networks as an artifact in ``out_dir``; returns its card
    (dev objective, test figures of fp32 and int8, sizes)."""
    import datetime as dt
    import shutil

    from model_export.artifact import export_checked, write_card
    from model_export.evaluate import test_metrics
    from model_export.export import round_word_table_to_int8
    from model_export.predictor import torch_predictor
    from stream.inference import MODEL_FILES, file_sha256

    source_card = read_model_card(source)
    networks, _ = load_members([source])
    chosen = [networks[k] for k in subset]
    model = (TweetEnsemble(chosen) if len(chosen) > 1 else chosen[0]).eval()
    vocab = Vocab.load(source / "vocab.json")
    # The source's tables are read back as stored (fp16 bag-of-words tables, int8 word rows,
    # or a single network's fp16 word table), so only the int8 rounding runs: on int8 rows it
    # changes nothing, and it keeps an fp16 word table exact in its new int8 storage.
    round_word_table_to_int8(model)
    worst = export_checked(model, vocab, out_dir, data_dir, word_table_int8=True,
                           embedding_fp16=True)
    onnx_path = out_dir / MODEL_FILES["fp32"]
    for name in ("vocab.json", "labels.json"):
        shutil.copyfile(source / name, out_dir / name)
    folds = card_setting(source, "mitchell_folds", [1])
    shares = card_dev_shares(source)
    dev = evaluate(torch_predictor(model, vocab, LabelSpace.load(source / "labels.json")),
                   data_dir, "dev", folds, shares, card_topic_share(source))
    card = {key: value for key, value in source_card.items()
            if key not in ("metrics", "throughput_tweets_per_s", "sizes_bytes")}
    card.update({
        "version": f"{dt.datetime.now(dt.UTC):%Y%m%d}-{file_sha256(onnx_path)[:8]}",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "derived_from": {"version": source_card.get("version"), "members": list(subset)},
        "members": [source_card["members"][k] for k in subset],
        "model_config": {"members": [source_card["model_config"]["members"][k]
                                     for k in subset]},
        "parameters": sum(p.numel() for p in model.parameters()),
        "dev": {**source_card.get("dev", {}), "scores": dev, "objective": round(
            dev_objective(dev, exclude=fully_trained(shares)), 2)},
        "export": {**source_card.get("export", {}), "parity_max_abs_diff": worst},
    })
    card["metrics"] = test_metrics(out_dir, data_dir, folds)
    card["mitchell_folds_evaluated"] = folds
    write_card(out_dir, card)
    card["sizes_bytes"] = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
    write_card(out_dir, card)
    return card


def expand_subsets(texts: Sequence[str], count: int) -> list[list[int]]:
    """``"0,2"`` -> ``[[0, 2]]``, ``"all"`` -> every network, ``"k=2"`` -> every pair."""
    subsets: list[list[int]] = []
    for text in texts:
        try:
            if text == "all":
                subsets.append(list(range(count)))
            elif text.startswith("k="):
                subsets += [list(c) for c in itertools.combinations(range(count), int(text[2:]))]
            else:
                subsets.append([int(part) for part in text.split(",")])
        except ValueError:
            raise ValueError(f"--subset {text}: expected member indices such as 0,2, "
                             "'all', or k=N (every subset of N networks)") from None
        if not subsets or any(not s or min(s) < 0 or max(s) >= count for s in subsets):
            raise ValueError(f"--subset {text}: member indices run from 0 to {count - 1}")
    return subsets


def card_train_config(artifact: Path) -> dict:
    """The artifact card's ``train_config`` (empty without a card)."""
    return read_model_card(artifact).get("train_config", {})


def card_setting(artifact: Path, key: str, default: list) -> list:
    """A training setting from the artifact's card (which folds, which dev splits trained)."""
    return list(card_train_config(artifact).get(key, default))


def card_dev_shares(artifact: Path) -> dict[str, float]:
    """Which dev splits trained the artifact, and how much of each (``--train-with-dev``)."""
    return dev_shares(card_setting(artifact, "train_with_dev", ["wnut16"]))


def card_topic_share(artifact: Path) -> float:
    """Share of the topics held out as the artifact's 4A dev split (``--sentiment-dev-topics``;
    0: val, as every artifact before the 2026-12-07 held-out-topics study)."""
    return float(card_train_config(artifact).get("sentiment_dev_topics", 0.0))


_ARTIFACT = click.Path(exists=True, file_okay=False, path_type=Path)


def _artifacts(paths: Sequence[Path]) -> list[Path]:
    for missing in [a for a in paths if not (a / "model.onnx").is_file()]:
        raise click.UsageError(f"{missing}: no model.onnx there")
    return list(paths)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Shared data folder [default: setting TWEETWATCH_DATA_DIR].")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """Which networks to average, and whether to calibrate their mean: measured without
    retraining."""
    from stream.settings import get_settings

    ctx.obj = data_dir or get_settings().data_dir


@main.command("members")
@click.argument("artifacts", nargs=-1, required=True, type=_ARTIFACT)
@click.option("--subset", "subset_specs", multiple=True,
              help="Comma-separated member indices (printed first), or k=N for every subset "
                   "of N; repeatable [default: every network alone and all of them].")
@click.option("--dev-split", "dev_splits", multiple=True, metavar="ENTRY",
              help="Score the dev splits as a run with these training-with-dev entries holds "
                   "them out (repeatable, e.g. wnut16 and wnut17:0.5), to compare with such a "
                   "run [default: the first artifact's own].")
@click.pass_obj
def members_command(data_dir: Path, artifacts: tuple[Path, ...], subset_specs: tuple[str, ...],
                    dev_splits: tuple[str, ...]) -> None:
    """Dev objective and test figures of means of networks taken from one or more
    artifacts."""
    artifacts_ = _artifacts(artifacts)
    networks, names = load_members(artifacts_)
    outputs = MemberOutputs(networks, Vocab.load(artifacts_[0] / "vocab.json"),
                            LabelSpace.load(artifacts_[0] / "labels.json"))
    for index, name in enumerate(names):
        click.echo(f"{index}: {name}", err=True)
    try:
        subsets = expand_subsets(list(subset_specs) or [*map(str, range(len(networks))), "all"],
                                 len(networks))
        shares = (dev_shares(list(dev_splits)) if dev_splits
                  else card_dev_shares(artifacts_[0]))
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    folds = card_setting(artifacts_[0], "mitchell_folds", [1])
    for subset in subsets:
        click.echo(json.dumps(subset_row(outputs, subset, names, data_dir, folds, shares,
                                         card_topic_share(artifacts_[0]))))


@main.command("calibration")
@click.argument("artifact", type=_ARTIFACT)
@click.pass_obj
def calibration_command(data_dir: Path, artifact: Path) -> None:
    """The calibration sweep rerun on an artifact's served mean."""
    (artifact,) = _artifacts([artifact])
    networks, _ = load_members([artifact])
    outputs = MemberOutputs(networks, Vocab.load(artifact / "vocab.json"),
                            LabelSpace.load(artifact / "labels.json"))
    fold = card_setting(artifact, "mitchell_folds", [1])[0]
    click.echo(json.dumps(calibration_sweep(outputs, data_dir, fold, card_dev_shares(artifact),
                                            card_topic_share(artifact)), indent=1))


@main.command("export")
@click.argument("artifact", type=_ARTIFACT)
@click.option("--subset", required=True, help="Member indices, e.g. 0,2.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Artifact folder to write.")
@click.pass_obj
def export_command(data_dir: Path, artifact: Path, subset: str, out: Path) -> None:
    """Write a servable artifact of a subset of an artifact's networks."""
    (artifact,) = _artifacts([artifact])
    count = len(read_model_card(artifact).get("members", [None]))
    try:
        subsets = expand_subsets([subset], count)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if len(subsets) != 1:
        raise click.UsageError(f"--subset {subset}: export takes one subset, such as 0,2")
    card = export_subset(artifact, subsets[0], out, data_dir)
    fp32 = card["metrics"]["fp32"]
    click.echo(json.dumps({"out": str(out), "version": card["version"],
                           "dev_objective": card["dev"]["objective"],
                           "sizes_bytes": card["sizes_bytes"],
                           "test_fp32": {"wnut16": fp32["wnut16"]["f1"],
                                         "wnut17": fp32["wnut17"]["f1"],
                                         "4a": fp32["semeval2017_4a"]["macro_recall"],
                                         "mitchell": fp32["mitchell2013"]["f1"]}}))


if __name__ == "__main__":
    main()

"""Write the model artifact folder: ONNX fp32 + int8, vocabulary, labels and the model card.

The test-set figures in the card come from the runtime (``stream.inference.Analyzer``) on the
files just written, so the card describes exactly what the pipeline will run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from model_export.evaluate import test_metrics, throughput
from model_export.export import (
    export_onnx,
    parity,
    quantize_int8,
    round_embedding_to_fp16,
    round_word_table_to_int8,
    store_embedding_fp16,
    store_word_table_int8,
)
from model_export.heads import SERVING_HEAD, labels_document
from model_export.readers import read_conll
from model_export.recipe import TrainConfig
from model_export.train import EnsembleResult, TrainResult, head_summary
from stream.inference import MODEL_CARD, MODEL_FILES, file_sha256, read_model_card

if TYPE_CHECKING:
    import torch

    from stream.textproc import Vocab

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4

SOURCES = {
    "wnut16": "WNUT 2016 Twitter NER shared task (Strauss et al. 2016)",
    "wnut17": "WNUT 2017 emerging entities (Derczynski et al. 2017), CC-BY 4.0",
    "btc": "Broad Twitter Corpus (Derczynski et al. 2016), CC-BY 4.0",
    "sentiment": "SemEval-2017 Task 4A (Rosenthal et al. 2017) / TweetEval splits",
    "targeted_sentiment/mitchell2013": "Mitchell et al. 2013 open-domain targeted sentiment, "
    "as prepared for Li et al. 2019 (E2E-TBSA)",
    "targeted_sentiment/semeval2017_topic": "SemEval-2016/2017 Task 4B (topic-based)",
    "unlabeled": "TweetEval texts (emoji, emotion, hate, irony, offensive, stance)",
}
SERVING_CHOICE = (
    "Separate NER heads per corpus on one shared encoder (their type sets do not map cleanly: "
    "WNUT17 'group'/'creative-work' and BTC 'ORG' each straddle several WNUT16 types). The "
    "WNUT16 head serves production: its types (company, product, sportsteam, musicartist, "
    "person, ...) are what reputation alerts are about; WNUT17/BTC heads train the shared "
    "encoder and are evaluated on their own test sets.{transfer} The Mitchell-trained "
    "'targets' head finds opinion targets for the span+polarity evaluation."
)
ARCHITECTURE = (
    "one network per encoder ({encoders}), each: char-CNN + frozen FastText word vectors "
    "-> encoder -> NER heads (wnut16, wnut17, btc, targets), token entity sentiment, tweet "
    "sentiment; the artifact serves {mean}"
)
CALIBRATION = (
    "per member: O-logit offset per NER head, chosen on its dev split and folded into the "
    "head's O bias; tweet_sentiment: -beta x log(train prior) added to the tweet head's bias, "
    "beta chosen on the 4A dev split: the held-out topics' tweets of "
    "train_config.sentiment_dev_topics, or 4A val where that is 0 (model_export/calibrate.py)"
)
TRANSFER_NOTE = (
    " BTC spans also train the WNUT16 and WNUT17 heads as partial labels (the set of tags "
    "each BTC tag allows, model_export/label_transfer.py)."
)


def serving_choice(config: TrainConfig) -> str:
    """The card's note on which head serves and what trains it."""
    return SERVING_CHOICE.format(transfer=TRANSFER_NOTE if config.transfer_weight > 0 else "")


def data_hashes(data_dir: Path) -> dict[str, str]:
    """sha256 of every data file (relative path -> hash)."""
    return {
        str(p.relative_to(data_dir)): file_sha256(p)
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and p.suffix in (".conll", ".tsv", ".txt")
    }


def parity_batches(data_dir: Path) -> list[list[list[str]]]:
    """Real batches of different shapes for the export parity check."""
    sentences = [s.tokens for s in read_conll(data_dir / "wnut16" / "dev.conll").sentences]
    return [sentences[:1], sentences[1:33], sentences[33:289]]


def member_summary(member: TrainResult) -> dict:
    """A member network's training record for the card."""
    return {
        "encoder": member.encoder,
        "seed": member.seed,
        "model_config": member.model.config.to_dict(),
        "training_wall_s": round(member.wall_s, 1),
        "epochs_run": len(member.history),
        "best_dev": member.best_dev,
        "calibration": member.calibration,
        "dev_history": [{k: v for k, v in h.items() if k != "dev"} for h in member.history],
    }


def export_checked(model: torch.nn.Module, vocab: Vocab, out_dir: Path, data_dir: Path, *,
                   word_table_int8: bool, embedding_fp16: bool) -> float:
    """Write ``model.onnx`` and ``model.int8.onnx`` to ``out_dir`` and return the largest
    torch-vs-ONNX difference on real batches; raises past ``PARITY_TOLERANCE``.

    The model's tables must already hold the values their storage keeps (the callers round
    them: only they know whether the weights are fresh from training or read back from an
    artifact, where rounding again would move them).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / MODEL_FILES["fp32"]
    batches = parity_batches(data_dir)
    export_onnx(model, vocab, onnx_path, batches[1])
    quantize_int8(onnx_path, out_dir / MODEL_FILES["int8"])
    if word_table_int8:
        store_word_table_int8(onnx_path)
    if embedding_fp16:
        store_embedding_fp16(onnx_path)
    worst = parity(model, vocab, onnx_path, batches)
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"ONNX export differs from torch by {worst:.2e} > {PARITY_TOLERANCE}")
    return worst


def teacher_summary(config: TrainConfig) -> dict | None:
    """Which artifact taught this one (distillation), by version and weights; None without."""
    if not config.teacher:
        return None
    teacher = Path(config.teacher)
    return {"path": str(teacher), "version": read_model_card(teacher).get("version"),
            "model_sha256": file_sha256(teacher / MODEL_FILES["fp32"]),
            "architecture": read_model_card(teacher).get("architecture"),
            "unlabeled_files": list(config.unlabeled_files),
            "unlabeled_per_epoch": config.unlabeled_per_epoch,
            "temperature": config.temperature, "head_weights": config.head_weights}


def write_artifact(result: EnsembleResult, config: TrainConfig, out_dir: Path) -> dict:
    """Export, check parity, quantise and evaluate; returns the model card."""
    import onnx
    import onnxruntime
    import torch

    if config.embedding_fp16:
        round_embedding_to_fp16(result.model)
    if config.word_table_int8:
        round_word_table_to_int8(result.model)
    worst = export_checked(result.model, result.vocab, out_dir, config.data_dir,
                           word_table_int8=config.word_table_int8,
                           embedding_fp16=config.embedding_fp16)
    onnx_path = out_dir / MODEL_FILES["fp32"]
    result.vocab.save(out_dir / "vocab.json")
    (out_dir / "labels.json").write_text(json.dumps(labels_document(), indent=1) + "\n",
                                         encoding="utf-8")
    now = dt.datetime.now(dt.UTC)
    members = [member_summary(m) for m in result.members]
    trained_dev = ", ".join(config.dev_trained) or "none"
    word_table = ("int8 rows + per-row scale" if config.word_table_int8
                  else "fp16 + Cast" if config.embedding_fp16 else "fp32")
    card = {
        "version": f"{now:%Y%m%d}-{file_sha256(onnx_path)[:8]}",
        "created_at": now.isoformat(timespec="seconds"),
        "architecture": ARCHITECTURE.format(
            encoders=" + ".join(config.encoders),
            mean="the mean of their outputs" if len(members) > 1 else "its outputs"),
        "serving_ner_head": SERVING_HEAD,
        "serving_choice": serving_choice(config),
        "heads": head_summary(),
        "model_config": {"members": [m["model_config"] for m in members]},
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "train_config": config.to_dict(),
        "seed": config.seed,
        "training_wall_s": round(result.wall_s, 1),
        "embedding_coverage": round(result.embedding_coverage, 4),
        "members": members,
        "dev": {"what": "dev scores of the served model (the members' mean, each member "
                "calibrated) on the dev tweets that did not train; the objective leaves out "
                f"the corpora whose whole dev split trained: {trained_dev}; "
                "semeval2017_4a is the 4A dev split (held-out topics, or val where "
                "train_config.sentiment_dev_topics is 0), semeval2017_4a_val is val beside it",
                "objective": result.dev_objective, "scores": result.dev},
        "teacher": teacher_summary(config),
        "calibration_method": CALIBRATION,
        "export": {"opset": 17, "parity_max_abs_diff": worst,
                   "int8": "onnxruntime dynamic quantisation (MatMul, Gemm, Gather, LSTM)",
                   "word_table": word_table},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "onnx": onnx.__version__, "python": platform.python_version()},
        "sources": SOURCES,
        "data_sha256": data_hashes(config.data_dir),
    }
    write_card(out_dir, card)
    card["metrics"] = test_metrics(out_dir, config.data_dir, config.mitchell_folds)
    card["mitchell_folds_evaluated"] = list(config.mitchell_folds)
    card["throughput_tweets_per_s"] = throughput(out_dir, config.data_dir)
    card["sizes_bytes"] = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
    write_card(out_dir, card)
    return card


def write_card(out_dir: Path, card: dict) -> None:
    (out_dir / MODEL_CARD).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")

"""Knowledge distillation: a trained artifact (the teacher) labels the unlabeled tweets with its
outputs for every head, and a smaller network learns to match them beside the gold labels.

Why: the three-network ensemble types entities better than any single network, at three times
the cost per tweet. Its soft outputs carry that knowledge (which tag is second-likeliest, how
sure it is) to one network, over 320k unlabeled tweets: far more text than the 15k labelled
NER tweets, so the student sees the teacher's judgement on the words and names the gold sets
never hold. The teacher runs once, through onnxruntime (the artifact as served), and its
outputs are cached under the work folder keyed by the teacher's weights and the texts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model_export.corpus import Example
from model_export.heads import OUTPUT_NAMES, TWEET_SENTIMENT_OUTPUT, labels_document
from stream.inference import MODEL_FILES, Analyzer, file_sha256

log = logging.getLogger(__name__)

TOKEN_OUTPUTS = tuple(name for name in OUTPUT_NAMES if name != TWEET_SENTIMENT_OUTPUT)
DISTILL_TASK = "distill"


def check_teacher(teacher_dir: Path) -> Path:
    """The teacher's folder, or a one-line error saying how to make one."""
    model = teacher_dir / MODEL_FILES["fp32"]
    if not model.is_file():
        raise FileNotFoundError(
            f"distill.teacher: no trained artifact at {teacher_dir} ({model.name} missing); "
            "train the teacher first (tweetwatch train --out "
            f"{teacher_dir}: the shipped ensemble recipe), point distill.teacher at an "
            "artifact, or set distill.teacher=\"\" to train on gold labels alone")
    labels = json.loads((teacher_dir / "labels.json").read_text(encoding="utf-8"))
    if labels.get("ner_heads") != labels_document()["ner_heads"]:
        raise ValueError(f"distill.teacher: {teacher_dir} has other heads than this model "
                         "(its labels.json differs): it cannot teach them")
    return teacher_dir


def teacher_key(teacher_dir: Path, token_lists: Sequence[Sequence[str]]) -> str:
    """Cache key of the teacher's outputs: its weights and vocabulary, and the texts."""
    digest = hashlib.sha256()
    digest.update(file_sha256(teacher_dir / MODEL_FILES["fp32"]).encode())
    digest.update(file_sha256(teacher_dir / "vocab.json").encode())
    for tokens in token_lists:
        digest.update("\x1f".join(tokens).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def teacher_outputs(teacher_dir: Path, token_lists: Sequence[Sequence[str]], cache_dir: Path,
                    batch_size: int = 256) -> dict[str, np.ndarray]:
    """The teacher's outputs for every text, fp16: each token output flat over all tokens
    (``[sum of lengths, K]``, texts in order), the tweet output ``[N, 3]``, and ``offsets``
    (``[N + 1]``) where each text's tokens start."""
    path = cache_dir / f"teacher-{teacher_key(teacher_dir, token_lists)}.npz"
    if path.is_file():
        log.info("using cached teacher outputs %s", path)
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    analyzer = Analyzer(teacher_dir, variant="fp32", intra_op_threads=torch.get_num_threads())
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    widths: dict[str, int] = {}
    flat: dict[str, np.ndarray] = {}
    tweet = np.zeros((len(token_lists), 0), dtype=np.float16)
    order = np.argsort(lengths, kind="stable")
    with tqdm(total=len(order), desc="teacher outputs", unit="tweet") as bar:
        for begin in range(0, len(order), batch_size):
            chunk = order[begin: begin + batch_size]
            outputs = analyzer.run([token_lists[i] for i in chunk])
            if not widths:
                widths = {name: outputs[name].shape[-1] for name in OUTPUT_NAMES}
                flat = {name: np.zeros((int(offsets[-1]), widths[name]), dtype=np.float16)
                        for name in TOKEN_OUTPUTS}
                tweet = np.zeros((len(token_lists), widths[TWEET_SENTIMENT_OUTPUT]),
                                 dtype=np.float16)
            tweet[chunk] = outputs[TWEET_SENTIMENT_OUTPUT]
            for row, i in enumerate(chunk):
                start, end = offsets[i], offsets[i + 1]
                for name in TOKEN_OUTPUTS:
                    flat[name][start:end] = outputs[name][row, : end - start]
            bar.update(len(chunk))
    result = {**flat, TWEET_SENTIMENT_OUTPUT: tweet, "offsets": offsets}
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **result)
    partial.replace(path)
    return result


def distill_examples(teacher_dir: Path, token_lists: Sequence[Sequence[str]],
                     cache_dir: Path) -> list[Example]:
    """One example per non-empty text, carrying the teacher's outputs for it (views into the
    shared arrays, so 320k examples cost little beyond the arrays)."""
    kept = [list(tokens) for tokens in token_lists if tokens]
    outputs = teacher_outputs(check_teacher(teacher_dir), kept, cache_dir)
    return [Example(DISTILL_TASK, tokens, soft=soft_of(outputs, i))
            for i, tokens in enumerate(kept)]


def soft_of(outputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Text ``i``'s share of ``teacher_outputs`` (views, no copies)."""
    start, end = int(outputs["offsets"][i]), int(outputs["offsets"][i + 1])
    soft = {name: outputs[name][start:end] for name in TOKEN_OUTPUTS}
    soft[TWEET_SENTIMENT_OUTPUT] = outputs[TWEET_SENTIMENT_OUTPUT][i]
    return soft


def with_teacher(sets: dict[str, list[Example]], teacher_dir: Path,
                 cache_dir: Path) -> dict[str, list[Example]]:
    """The labelled examples with the teacher's outputs attached: on the tweets the gold
    labels come from, the student also learns which other tags the teacher thought likely."""
    distinct = list(dict.fromkeys(tuple(e.tokens) for examples in sets.values()
                                  for e in examples if e.tokens))
    outputs = teacher_outputs(check_teacher(teacher_dir), [list(t) for t in distinct],
                              cache_dir)
    row_of = {tokens: i for i, tokens in enumerate(distinct)}
    result: dict[str, list[Example]] = {}
    for task, examples in sets.items():
        result[task] = []
        for example in examples:
            i = row_of.get(tuple(example.tokens))
            if i is not None:
                example = dataclasses.replace(example, soft=soft_of(outputs, i))
            result[task].append(example)
    return result


def soft_tensors(batch: Sequence[Example], steps: int) -> dict[str, torch.Tensor]:
    """The batch's teacher outputs as float tensors, token outputs padded to ``steps``, and
    ``rows`` [B] (1 where the example has them: an augmentation that rewrote the tokens
    drops them)."""
    taught = [e for e in batch if e.soft is not None]
    feeds: dict[str, torch.Tensor] = {}
    for name in TOKEN_OUTPUTS:
        width = taught[0].soft[name].shape[-1]  # type: ignore[index]
        padded = np.zeros((len(batch), steps, width), dtype=np.float32)
        for row, example in enumerate(batch):
            if example.soft is not None:
                values = example.soft[name][:steps]
                padded[row, : len(values)] = values
        feeds[name] = torch.from_numpy(padded)
    width = taught[0].soft[TWEET_SENTIMENT_OUTPUT].shape[-1]  # type: ignore[index]
    tweet = np.zeros((len(batch), width), dtype=np.float32)
    for row, example in enumerate(batch):
        if example.soft is not None:
            tweet[row] = example.soft[TWEET_SENTIMENT_OUTPUT]
    feeds[TWEET_SENTIMENT_OUTPUT] = torch.from_numpy(tweet)
    feeds["rows"] = torch.tensor([e.soft is not None for e in batch], dtype=torch.float32)
    return feeds


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, times T² (Hinton et al. 2015: the gradients
    keep their scale whatever the temperature), averaged over the ``mask``ed positions."""
    target = torch.softmax(teacher / temperature, dim=-1)
    log_student = torch.log_softmax(student / temperature, dim=-1)
    kl = (target * (torch.log(target.clamp(min=1e-8)) - log_student)).sum(-1)
    kl = kl * temperature ** 2
    if mask is None:
        return kl.mean()
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)

"""ONNX export (opset 17, dynamic batch/sequence/char axes), int8 quantisation, parity check.

The ONNX file is the only thing the runtime loads, so the parity check compares it with torch
on real batches before an artifact is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from model_export.heads import INPUT_NAMES, OUTPUT_NAMES
from model_export.model import TweetTagger
from stream.textproc import Vocab

log = logging.getLogger(__name__)
OPSET = 17


def export_onnx(model: TweetTagger, vocab: Vocab, path: Path, sample: Sequence[Sequence[str]]):
    """Write ``model`` as ONNX with dynamic batch, sequence and character axes."""
    model.eval()
    feeds = {k: torch.from_numpy(v) for k, v in vocab.encode(sample).items()}
    args = tuple(feeds[name] for name in INPUT_NAMES)
    dynamic_axes = {
        "word_ids": {0: "batch", 1: "tokens"},
        "char_ids": {0: "batch", 1: "tokens", 2: "chars"},
        "lengths": {0: "batch"},
    }
    for name in OUTPUT_NAMES:
        dynamic_axes[name] = {0: "batch"} if name.startswith("tweet") else {
            0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of the matrix multiplications and the embedding tables."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "Gather"],
    )


def parity(
    model: TweetTagger, vocab: Vocab, path: Path, batches: Sequence[Sequence[Sequence[str]]]
) -> float:
    """Largest absolute difference between torch and onnxruntime outputs over the batches."""
    model.eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in batches:
        feeds = vocab.encode(batch)
        with torch.no_grad():
            expected = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
        got = session.run(list(OUTPUT_NAMES), feeds)
        for e, g in zip(expected, got, strict=True):
            worst = max(worst, float(np.max(np.abs(e.numpy() - g))))
    return worst

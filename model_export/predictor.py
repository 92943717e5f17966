"""The torch model as a predictor: the runtime's own encoding and decoding around a forward
pass, so training scores dev splits exactly as serving will read the outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from model_export.heads import INPUT_NAMES, OUTPUT_NAMES
from stream.inference import LabelSpace, TokenAnalysis
from stream.textproc import Vocab


def named_outputs(model: nn.Module, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One forward pass on encoded inputs (``Vocab.encode``), the outputs named as in the ONNX
    graph: the torch side of ``Analyzer.run``. Call it under ``torch.no_grad()``."""
    out = model(*(torch.from_numpy(feeds[n]) for n in INPUT_NAMES))
    return {n: o.numpy() for n, o in zip(OUTPUT_NAMES, out, strict=True)}


def torch_predictor(model: nn.Module, vocab: Vocab, labels: LabelSpace, batch_size: int = 256):
    """A predictor (see model_export.evaluate) running the torch model with runtime decoding."""

    def predict(token_lists: Sequence[Sequence[str]],
                heads: Sequence[str] | None) -> list[TokenAnalysis]:
        model.eval()
        order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
        by_index: dict[int, TokenAnalysis] = {}
        with torch.no_grad():
            for begin in range(0, len(order), batch_size):
                idx = order[begin : begin + batch_size]
                feeds = vocab.encode([token_lists[i] for i in idx])
                decoded = labels.decode(named_outputs(model, feeds), feeds["lengths"], heads)
                by_index.update(zip(idx, decoded, strict=True))
        return [by_index[i] for i in range(len(token_lists))]

    return predict

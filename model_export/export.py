"""ONNX export (opset 17, dynamic batch/sequence/char axes), int8 quantisation, parity check.

The ONNX file is the only thing the runtime loads, so the parity check compares it with torch
on real batches before an artifact is written.
"""

from __future__ import annotations

import logging
import warnings
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
    with torch.no_grad(), warnings.catch_warnings():
        # The LSTM warning assumes initial states fixed to the export batch; the exporter
        # builds ours from the input's shape, and parity() checks batches of 1, 32 and 256.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
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
        op_types_to_quantize=["MatMul", "Gemm", "Gather", "LSTM"],
    )


# Gather tables at least this large are stored as fp16 (the word table, and the tweet head's
# bag-of-words table when it has one); the character table stays fp32.
FP16_MIN_ELEMENTS = 500_000


def round_embedding_to_fp16(model: TweetTagger, min_elements: int = FP16_MIN_ELEMENTS) -> None:
    """Round the large embedding tables to fp16 values, so torch and the fp16-stored ONNX
    tables agree exactly (the parity check stays meaningful)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and module.weight.numel() >= min_elements:
                module.weight.copy_(module.weight.half().float())


def store_embedding_fp16(path: Path, min_elements: int = FP16_MIN_ELEMENTS) -> int:
    """Store large Gather tables of an ONNX file as fp16 with a Cast back to fp32.

    The word table is most of the file; halving it lets the vocabulary double within the
    artifact size limit. Returns how many tables were converted.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    tables = {init.name: init for init in graph.initializer
              if init.data_type == TensorProto.FLOAT
              and int(np.prod(init.dims)) >= min_elements}
    converted: set[str] = set()
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] not in tables:
            continue
        init = tables[node.input[0]]
        if init.name not in converted:  # ensemble members share one table, read by several
            init.CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name))
            converted.add(init.name)
        wide = node.output[0]
        node.output[0] = f"{wide}_fp16"
        cast = helper.make_node("Cast", [node.output[0]], [wide], to=TensorProto.FLOAT,
                                name=f"{node.name or wide}_to_fp32")
        graph.node.insert(list(graph.node).index(node) + 1, cast)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(converted)


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``table ~= q * scale`` with ``scale`` of shape [rows, 1]."""
    peak = np.abs(table).max(axis=1, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
    return q, scale


def round_word_table_to_int8(model: torch.nn.Module) -> None:
    """Round the word table to its int8-per-row values (as ``store_word_table_int8`` stores
    it), so torch and ONNX still agree exactly."""
    weight = model.word_embedding.weight
    q, scale = quantize_rows(weight.detach().numpy())
    with torch.no_grad():
        weight.copy_(torch.from_numpy(q).float() * torch.from_numpy(scale))


def store_word_table_int8(path: Path) -> None:
    """Store the word table as int8 rows with a float scale per row; every Gather of it
    becomes Gather -> Cast -> Mul by the gathered row scales.

    The frozen FastText vectors lose nothing measurable at 8 bits (the int8 model quantises
    them anyway), and at a quarter of their fp32 size an ensemble's own tables fit beside
    them within the artifact limit.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    init = next(i for i in graph.initializer if i.name.endswith("word_embedding.weight"))
    q, scale = quantize_rows(numpy_helper.to_array(init))
    name = init.name
    init.CopyFrom(numpy_helper.from_array(q, name))
    graph.initializer.append(numpy_helper.from_array(scale, f"{name}_scale"))
    for node in list(graph.node):
        if node.op_type != "Gather" or node.input[0] != name:
            continue
        wide = node.output[0]
        node.output[0] = f"{wide}_int8"
        added = [
            helper.make_node("Cast", [f"{wide}_int8"], [f"{wide}_q"], to=TensorProto.FLOAT,
                             name=f"{wide}_dequantize"),
            helper.make_node("Gather", [f"{name}_scale", node.input[1]], [f"{wide}_scale"],
                             name=f"{wide}_row_scale"),
            helper.make_node("Mul", [f"{wide}_q", f"{wide}_scale"], [wide],
                             name=f"{wide}_scaled"),
        ]
        at = list(graph.node).index(node) + 1
        for offset, extra in enumerate(added):
            graph.node.insert(at + offset, extra)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


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

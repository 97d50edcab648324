"""Helpers for the channel-removal tests: fixture lists, running models, zeroing channels by hand."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from support import FIXTURES

from onnxcomp import io
from onnxcomp.channels.analyze import analyze, channel_groups, infer_shapes
from onnxcomp.channels.graph import UNTRACKED, Analysis, constant_array, rank_of
from onnxcomp.weights import iter_weights

_DOCUMENT = json.loads((FIXTURES / "manifest.json").read_text())
MANIFEST = _DOCUMENT["models"]
STRUCTURAL = _DOCUMENT.get("structural", {})
ALL_FIXTURES = sorted(MANIFEST) + sorted(STRUCTURAL)


def sample_inputs(name: str, count: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """Test samples of a trained fixture; seeded uniform [0, 1) inputs (no labels) for a structural one."""
    if name in STRUCTURAL:
        shape = STRUCTURAL[name]["input_shape"][1:]
        return np.random.default_rng(0).random((min(count, 16), *shape), dtype=np.float32), None
    with np.load(FIXTURES / MANIFEST[name]["test"]) as npz:
        return npz["input"][:count], npz["labels"][:count]


def run(model: ir.Model | str, x: np.ndarray) -> np.ndarray:
    source = io.serialize(model) if isinstance(model, ir.Model) else str(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _zero_at(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    array = array.copy()
    np.moveaxis(array, axis, 0)[index] = 0
    return array


def zero_one_channel_per_group(model: ir.Model) -> int:
    """Make one removable channel of every group provably zero; returns how many channels were zeroed.

    Zeroes the producing filters and biases, the BatchNorm gamma/beta it passes (so the BN adds no shift),
    and per-channel constants added to it (MatMul + Add bias).
    """
    infer_shapes(model)
    analysis = analyze(model)
    chosen = {group.removable[-1] for group in channel_groups(analysis) if len(group.removable) > 1}
    weights = {ref.name: ref for ref in iter_weights(model, include_subgraphs=False)}
    edits: dict[str, np.ndarray] = {}

    def zero(value: ir.Value | None, axis: int, index: int) -> None:
        name = _weight_name(value)
        if name is None or name not in weights:
            return
        edits[name] = _zero_at(edits.get(name, weights[name].numpy()), axis, index)

    for source in analysis.sources:
        for out, element in enumerate(source.elements.tolist()):
            if analysis.root(element) in chosen:
                _zero_source(source.node, out, zero)
    for node in model.graph:
        _zero_per_channel(node, analysis, chosen, zero)
    for name, array in edits.items():
        weights[name].replace(array)
    return len(chosen)


def _weight_name(value: ir.Value | None) -> str | None:
    while value is not None and value.const_value is None and value.producer() is not None \
            and value.producer().op_type == "Identity":
        value = value.producer().inputs[0]
    return None if value is None else value.name


def _zero_source(node: ir.Node, out: int, zero) -> None:
    inputs = list(node.inputs) + [None] * 3
    if node.op_type in ("Conv", "ConvTranspose"):
        zero(inputs[1], 0 if node.op_type == "Conv" else 1, out)
        zero(inputs[2], 0, out)
    elif node.op_type == "Gemm":
        trans_b = node.attributes.get("transB")
        zero(inputs[1], 0 if trans_b is not None and trans_b.value else 1, out)
        c = constant_array(inputs[2])
        if c is not None and c.size > 1:
            zero(inputs[2], c.ndim - 1, out)
    elif node.op_type == "MatMul":
        zero(inputs[1], 1, out)


def _zero_per_channel(node: ir.Node, analysis: Analysis, chosen: set[int], zero) -> None:
    track = analysis.track(node.outputs[0]) if node.outputs else None
    if track is None:
        return
    positions = [i for i, s in enumerate(track.slots.tolist()) if s != UNTRACKED and analysis.root(s) in chosen]
    for index in positions:
        if node.op_type == "BatchNormalization":
            zero(node.inputs[1], 0, index)
            zero(node.inputs[2], 0, index)
        elif node.op_type in ("Add", "Sub"):
            out_rank = rank_of(node.outputs[0])
            for operand in node.inputs:
                array = constant_array(operand)
                if array is None or out_rank is None:
                    continue
                axis = track.axis - (out_rank - array.ndim)
                if axis >= 0 and array.shape[axis] == len(track):
                    zero(operand, axis, index)

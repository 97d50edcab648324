"""Handlers for layers with weights: Conv, ConvTranspose, Gemm, MatMul and the normalisations.

A weighted layer is both a *consumer* (its input channels index weight rows: sliced when they go) and a
*source* (its output channels are its filters: new elements, free to remove). Depthwise Conv is neither: it
ties each output channel to its input channel, so it passes elements through.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import Analysis, Track, constant_array, rank_of
from onnxcomp.channels.heads import batched_matmul_propagate
from onnxcomp.channels.registry import Handler
from onnxcomp.channels.rewrite import Rewriter, int_attr, set_int_attr


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _as_sink(node: ir.Node, a: Analysis, x: ir.Value, axis: int) -> None:
    """Record ``node`` as reading channels of ``x`` on ``axis``; any other axis cannot be sliced: freeze."""
    track = a.track(x)
    if track is None:
        return
    if track.axis != axis:
        a.freeze(track.slots, f"{node.op_type} {node.name} reads channels on an axis it cannot slice")
    else:
        a.sinks.append((node, x))


# ------------------------------------------------------------------------------------------------ Conv


def _conv_propagate(node: ir.Node, a: Analysis) -> None:
    x, weight = node.inputs[0], constant_array(_input(node, 1))
    if weight is None:
        a.freeze_value(x, f"Conv {node.name} has a non-constant weight")
        return
    group = int_attr(node, "group", 1)
    bias = constant_array(_input(node, 2))
    if group == 1:
        if x is not None:
            _as_sink(node, a, x, 1)
        a.add_source(node, node.outputs[0], 1, weight, bias)
        return
    track = a.track(x)
    c_out, per_group = weight.shape[0], weight.shape[1]
    if track is not None and per_group == 1 and len(track) == group and c_out % group == 0 and track.axis == 1:
        _depthwise(node, a, x, track, weight, bias, c_out // group)
    elif track is not None:
        a.freeze(track.slots, f"grouped Conv {node.name} (group={group}) is not depthwise")


def _depthwise(node: ir.Node, a: Analysis, x: ir.Value, track: Track, weight: np.ndarray,
               bias: np.ndarray | None, multiplier: int) -> None:
    """Output channel ``i`` reads only input channel ``i // multiplier``: the same element, repeated."""
    slots = np.repeat(track.slots, multiplier)
    zero_weight = ~np.any(weight.reshape(len(weight), -1) != 0, axis=1)
    zero = np.repeat(a.zeros_of(x), multiplier) | zero_weight
    if bias is not None:
        zero &= bias == 0
    a.set_track(node.outputs[0], Track(1, slots), zero)


def _weight_slicing(node: ir.Node, rw: Rewriter) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None] | None:
    """The constant weight and the kept input/output channels of a layer, or None when nothing changes."""
    keep_in, keep_out = rw.keep(node.inputs[0]), rw.keep(node.outputs[0])
    weight = constant_array(node.inputs[1])
    if weight is None or (keep_in is None and keep_out is None):
        return None
    return weight, keep_in, keep_out


def _conv_rewrite(node: ir.Node, rw: Rewriter) -> None:
    plan = _weight_slicing(node, rw)
    if plan is None:
        return
    weight, keep_in, keep_out = plan
    group = int_attr(node, "group", 1)
    if group == 1 and keep_in is not None:
        weight = np.take(weight, keep_in, axis=1)
    if keep_out is not None:
        weight = np.take(weight, keep_out, axis=0)
        if _input(node, 2) is not None:
            rw.slice_input(node, 2, 0, keep_out)
    if group != 1 and keep_in is not None:
        set_int_attr(node, "group", len(keep_in))
    rw.set_input(node, 1, weight)


# --------------------------------------------------------------------------------------- ConvTranspose


def _conv_transpose_propagate(node: ir.Node, a: Analysis) -> None:
    x, weight = node.inputs[0], constant_array(_input(node, 1))
    if weight is None or int_attr(node, "group", 1) != 1:
        a.freeze_value(x, f"ConvTranspose {node.name} is grouped or has a non-constant weight")
        return
    if x is not None:
        _as_sink(node, a, x, 1)
    a.add_source(node, node.outputs[0], 1, np.swapaxes(weight, 0, 1), constant_array(_input(node, 2)))


def _slice_in_out_weight(node: ir.Node, rw: Rewriter, bias: int | None = None) -> None:
    """Slice a weight laid out [in, out, ...] (ConvTranspose, MatMul's B) and, when given, the bias at ``bias``."""
    plan = _weight_slicing(node, rw)
    if plan is None:
        return
    weight, keep_in, keep_out = plan
    if keep_in is not None:
        weight = np.take(weight, keep_in, axis=0)
    if keep_out is not None:
        weight = np.take(weight, keep_out, axis=1)
        if bias is not None and _input(node, bias) is not None:
            rw.slice_input(node, bias, 0, keep_out)
    rw.set_input(node, 1, weight)


def _conv_transpose_rewrite(node: ir.Node, rw: Rewriter) -> None:
    _slice_in_out_weight(node, rw, bias=2)


# ------------------------------------------------------------------------------------------------ Gemm


def _gemm_bias(c: np.ndarray | None, n: int) -> tuple[bool, np.ndarray | None]:
    """Gemm's C as a per-column bias; ``(False, None)`` when C varies along the batch (not a bias)."""
    if c is None:
        return True, None
    if c.size == 1:
        return True, np.full(n, c.reshape(-1)[0], dtype=c.dtype)
    if c.shape[-1] == n and c.size == n:
        return True, c.reshape(-1)
    return False, None


def _gemm_propagate(node: ir.Node, a: Analysis) -> None:
    x, weight = node.inputs[0], constant_array(_input(node, 1))
    trans_b = int_attr(node, "transB", 0)
    if weight is None or int_attr(node, "transA", 0):
        a.freeze_value(x, f"Gemm {node.name} has transA or a non-constant B")
        return
    if x is not None:
        _as_sink(node, a, x, 1)
    filters = weight if trans_b else weight.T
    c = _input(node, 2)
    ok, bias = _gemm_bias(constant_array(c), len(filters))
    if not ok or (c is not None and bias is None):
        return
    if bias is not None:
        bias = bias * float(node.attributes["beta"].value if "beta" in node.attributes else 1.0)
    a.add_source(node, node.outputs[0], 1, filters, bias)


def _gemm_rewrite(node: ir.Node, rw: Rewriter) -> None:
    plan = _weight_slicing(node, rw)
    if plan is None:
        return
    weight, keep_in, keep_out = plan
    trans_b = int_attr(node, "transB", 0)
    if keep_in is not None:
        weight = np.take(weight, keep_in, axis=1 if trans_b else 0)
    if keep_out is not None:
        n = weight.shape[0 if trans_b else 1]
        weight = np.take(weight, keep_out, axis=0 if trans_b else 1)
        c = constant_array(_input(node, 2))
        if c is not None and c.size == n and c.size > 1:
            rw.slice_input(node, 2, c.ndim - 1, keep_out)
    rw.set_input(node, 1, weight)


# ---------------------------------------------------------------------------------------------- MatMul


def _matmul_propagate(node: ir.Node, a: Analysis) -> None:
    x, w = node.inputs[0], _input(node, 1)
    weight = constant_array(w)
    if weight is None and a.track(x) is not None and a.track(w) is not None:
        batched_matmul_propagate(node, a)
        return
    a.freeze_value(w, f"MatMul {node.name} reads channels as its second operand")
    rank = rank_of(x)
    if weight is None or weight.ndim != 2 or rank is None or rank < 2:
        a.freeze_value(x, f"MatMul {node.name} multiplies an activation by a non-2-D or untracked operand")
        return
    if x is not None:
        _as_sink(node, a, x, rank - 1)
    a.add_source(node, node.outputs[0], rank - 1, weight.T, None)


def _matmul_rewrite(node: ir.Node, rw: Rewriter) -> None:
    _slice_in_out_weight(node, rw)


# ------------------------------------------------------------------------------------------ normalisers


def _bn_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track = a.track(x)
    if track is None:
        return
    params = [constant_array(_input(node, i)) for i in range(1, 5)]
    if track.axis != 1 or any(p is None for p in params) or len(node.outputs) > 1:
        a.freeze(track.slots, f"BatchNormalization {node.name} is not in inference form on axis 1")
        return
    scale, beta, mean, var = params
    epsilon = float(node.attributes["epsilon"].value) if "epsilon" in node.attributes else 1e-5
    sigma = np.sqrt(var.astype(np.float64) + epsilon)
    shift = beta - mean * scale / sigma
    # A zero channel stays zero only where the BN adds no shift; elsewhere it becomes a constant.
    zero = a.zeros_of(x) & (np.abs(shift) <= 1e-12)
    a.bn_scales.append((track.slots.copy(), np.abs(scale.astype(np.float64))))
    _record_filter_scale(node, a, x, np.abs(scale.astype(np.float64)) / sigma)
    a.set_track(node.outputs[0], Track(1, track.slots), zero)


def _record_filter_scale(node: ir.Node, a: Analysis, x: ir.Value, factor: np.ndarray) -> None:
    """Conv -> BN: the layer's *effective* filter is ``W * gamma / sigma``; remember the factor for L1/L2.

    Raw filter norms are meaningless under a BN (it rescales every channel), which is why L1 on trained
    BN models removed important channels. Only a Conv whose sole reader is this BN gets the factor.
    """
    producer = x.producer()
    if producer is None or len(x.uses()) != 1 or producer.op_type not in ("Conv", "ConvTranspose", "Gemm"):
        return
    if any(source.node is producer for source in a.sources):
        a.filter_scales[producer] = factor


def _bn_rewrite(node: ir.Node, rw: Rewriter) -> None:
    keep = rw.keep(node.inputs[0])
    for index in range(1, 5):
        rw.slice_input(node, index, 0, keep)


def _instance_norm_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track = a.track(x)
    if track is None:
        return
    bias = constant_array(_input(node, 2))
    if track.axis != 1 or bias is None or constant_array(_input(node, 1)) is None:
        a.freeze(track.slots, f"InstanceNormalization {node.name} has non-constant parameters")
        return
    a.set_track(node.outputs[0], Track(1, track.slots), a.zeros_of(x) & (bias == 0))


def _instance_norm_rewrite(node: ir.Node, rw: Rewriter) -> None:
    keep = rw.keep(node.inputs[0])
    for index in (1, 2):
        rw.slice_input(node, index, 0, keep)


def _layer_norm_propagate(node: ir.Node, a: Analysis) -> None:
    """Removing a channel inside the normalised axes changes every mean and variance: freeze those."""
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    if track is None:
        return
    axis = int_attr(node, "axis", -1)
    axis = axis + rank if rank is not None and axis < 0 else axis
    if rank is None or track.axis >= axis:
        a.freeze(track.slots, f"LayerNormalization {node.name} normalises over the channel axis")
        return
    a.set_track(node.outputs[0], Track(track.axis, track.slots))


HANDLERS: dict[str, Handler] = {
    "Conv": Handler(_conv_propagate, _conv_rewrite, source=True),
    "ConvTranspose": Handler(_conv_transpose_propagate, _conv_transpose_rewrite, source=True),
    "Gemm": Handler(_gemm_propagate, _gemm_rewrite, source=True),
    "MatMul": Handler(_matmul_propagate, _matmul_rewrite, source=True),
    "BatchNormalization": Handler(_bn_propagate, _bn_rewrite),
    "InstanceNormalization": Handler(_instance_norm_propagate, _instance_norm_rewrite),
    "LayerNormalization": Handler(_layer_norm_propagate),
}

"""Handlers for elementwise ops: unary activations pass channels through; binary ops couple or slice.

Zero tracking: an all-zero channel stays provably zero through ops with ``f(0) == 0`` (Relu, Tanh, Erf,
HardSwish, ...), through ``x * anything`` (so SiLU exported as ``x * Sigmoid(x)`` keeps it), and through
``a + b`` only when both sides are zero there. Sigmoid, Exp and friends turn it into a non-zero constant:
such a channel is no longer removable exactly (only by importance).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import Analysis, Track, constant_array, rank_of, static_shape
from onnxcomp.channels.registry import Handler
from onnxcomp.channels.rewrite import Rewriter

#: f(0) == 0: an all-zero channel stays all-zero.
ZERO_PRESERVING = ("Relu", "LeakyRelu", "Tanh", "Erf", "HardSwish", "Gelu", "Identity", "Neg", "Abs", "Elu",
                   "Selu", "Sqrt", "Dropout", "Sin", "Sign", "Floor", "Ceil", "Round", "ThresholdedRelu",
                   "Softsign", "Mish")
#: f(0) != 0 in general.
NOT_ZERO_PRESERVING = ("Sigmoid", "HardSigmoid", "Exp", "Softplus", "Cos", "Reciprocal", "Log", "Cast", "Celu")


def _unary(zero_preserving: bool) -> Callable[[ir.Node, Analysis], None]:
    def propagate(node: ir.Node, a: Analysis) -> None:
        x = node.inputs[0]
        track = a.track(x)
        if track is None:
            return
        zero = a.zeros_of(x) if zero_preserving else None
        a.set_track(node.outputs[0], Track(track.axis, track.slots), zero)
        for extra in node.outputs[1:]:  # Dropout's mask: same shape, but nothing reads channels of it safely
            if extra is not None and extra.uses():
                a.freeze(track.slots, f"{node.op_type} {node.name}'s second output is used")

    return propagate


def _clip_propagate(node: ir.Node, a: Analysis) -> None:
    bounds = [constant_array(node.inputs[i]) if i < len(node.inputs) else None for i in (1, 2)]
    low = float(bounds[0]) if bounds[0] is not None else -np.inf
    high = float(bounds[1]) if bounds[1] is not None else np.inf
    for name, attr_bound in (("min", "low"), ("max", "high")):
        if name in node.attributes:
            value = float(node.attributes[name].value)
            low, high = (value, high) if attr_bound == "low" else (low, value)
    _unary(low <= 0.0 <= high)(node, a)


def _prelu_propagate(node: ir.Node, a: Analysis) -> None:
    if _slope_ok(node, a):
        _unary(True)(node, a)


def _slope_ok(node: ir.Node, a: Analysis) -> bool:
    track, slope = a.track(node.inputs[0]), constant_array(node.inputs[1])
    if track is None:
        return False
    dim = _dim_at(slope, rank_of(node.inputs[0]), track.axis)
    if slope is None or dim not in (1, len(track)):
        a.freeze(track.slots, f"PRelu {node.name} has a slope that is not per-channel or scalar")
        return False
    return True


def _prelu_rewrite(node: ir.Node, rw: Rewriter) -> None:
    _slice_broadcast_constants(node, rw, (1,))


# ------------------------------------------------------------------------------------------ binary ops


def _dim_at(array: np.ndarray | None, out_rank: int | None, out_axis: int) -> int | None:
    """Size of a broadcast operand at output axis ``out_axis`` (1 where the operand has no such axis)."""
    if array is None or out_rank is None:
        return None
    position = out_axis - (out_rank - array.ndim)
    return 1 if position < 0 else int(array.shape[position])


def _other_dim(value: ir.Value | None, out_rank: int, out_axis: int) -> int | None:
    array = constant_array(value)
    if array is not None:
        return _dim_at(array, out_rank, out_axis)
    shape = static_shape(value)
    if shape is None:
        return None
    position = out_axis - (out_rank - len(shape))
    if position < 0:
        return 1
    dim = shape[position]
    return dim if isinstance(dim, int) else None


def _zero_of_operand(a: Analysis, value: ir.Value | None, out_rank: int, out_axis: int, size: int) -> np.ndarray:
    if value is not None and a.track(value) is not None:
        return a.zeros_of(value)
    array = constant_array(value)
    if array is None:
        return np.zeros(size, dtype=bool)
    position = out_axis - (out_rank - array.ndim)
    moved = array.reshape(1) if array.ndim == 0 else np.moveaxis(array, max(position, 0), 0)
    per_channel = ~np.any(moved.reshape(moved.shape[0], -1) != 0, axis=1)
    return np.broadcast_to(per_channel, (size,)).copy() if per_channel.size in (1, size) else np.zeros(size, bool)


_ZERO_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Mul": np.logical_or,
    "Add": np.logical_and,
    "Sub": np.logical_and,
    "Max": np.logical_and,
    "Min": np.logical_and,
    "Div": lambda numerator, _denominator: numerator,
}


def _binary_propagate(node: ir.Node, a: Analysis) -> None:
    operands = list(node.inputs[:2])
    out_rank = rank_of(node.outputs[0]) or max((rank_of(v) or 0) for v in operands)
    placed = []
    for value in operands:
        track, rank = a.track(value), rank_of(value)
        if track is not None and rank is not None:
            placed.append((value, track, track.axis + out_rank - rank))
        elif track is not None:
            a.freeze(track.slots, f"{node.op_type} {node.name}: operand rank unknown")
            return
    if not placed:
        return
    _, first, axis = placed[0]
    if len(placed) == 2:
        slots = _couple(node, a, placed)
        if slots is None:
            return
    else:
        other = operands[1] if placed[0][0] is operands[0] else operands[0]
        if not _broadcast_ok(node, a, other, first, out_rank, axis):
            return
        slots = first.slots
    rule = _ZERO_RULES.get(node.op_type)
    zero = None
    if rule is not None:
        masks = [_zero_of_operand(a, v, out_rank, axis, len(slots)) for v in operands]
        zero = rule(masks[0], masks[1])
    a.set_track(node.outputs[0], Track(axis, slots), zero)


def _couple(node: ir.Node, a: Analysis, placed: list) -> np.ndarray | None:
    """Two activations meet: same axis and length couple position by position, anything else freezes."""
    (_, t1, ax1), (_, t2, ax2) = placed
    if ax1 != ax2 or len(t1) != len(t2):
        reason = f"{node.op_type} {node.name} combines channels on different axes or counts"
        a.freeze(t1.slots, reason)
        a.freeze(t2.slots, reason)
        return None
    return a.unite(t1.slots, t2.slots, f"{node.op_type} {node.name} adds channels to untracked ones")


def _broadcast_ok(node: ir.Node, a: Analysis, other: ir.Value | None, track: Track, out_rank: int,
                  axis: int) -> bool:
    """A per-channel constant is sliced later; a broadcast (size 1) operand is fine; anything else freezes."""
    dim = _other_dim(other, out_rank, axis)
    if dim == 1 or (dim == len(track) and constant_array(other) is not None):
        return True
    a.freeze(track.slots, f"{node.op_type} {node.name} mixes channels with a non-constant operand")
    return False


def _slice_broadcast_constants(node: ir.Node, rw: Rewriter, indices: tuple[int, ...]) -> None:
    out = node.outputs[0]
    track, keep = rw.analysis.track(out), rw.keep(out)
    if track is None or keep is None:
        return
    out_rank = rank_of(out) or 0
    for index in indices:
        array = constant_array(node.inputs[index]) if index < len(node.inputs) else None
        if array is None:
            continue
        if out_rank == 0:
            out_rank = max(array.ndim, track.axis + 1)
        position = track.axis - (out_rank - array.ndim)
        if position >= 0 and array.shape[position] == len(track) and len(track) > 1:
            rw.slice_input(node, index, position, keep, array)


def _binary_rewrite(node: ir.Node, rw: Rewriter) -> None:
    _slice_broadcast_constants(node, rw, (0, 1))


HANDLERS: dict[str, Handler] = {
    **{op: Handler(_unary(True)) for op in ZERO_PRESERVING},
    **{op: Handler(_unary(False)) for op in NOT_ZERO_PRESERVING},
    "Clip": Handler(_clip_propagate),
    "PRelu": Handler(_prelu_propagate, _prelu_rewrite),
    **{op: Handler(_binary_propagate, _binary_rewrite) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow")},
}

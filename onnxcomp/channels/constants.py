"""Constant channels: channels whose value is known from the weights alone, and removed exactly.

A filter of zeros followed by a BatchNorm shift (or a Conv bias, then an activation) is not a *zero*
channel but a *constant* one: every reader sees ``c`` everywhere. Removing it and adding ``W[:, c] * c``
to the reader's bias is exact where the reader sees the constant at every position of its window: Gemm,
MatMul with a bias Add, and Conv without padding (a padded Conv sees zeros at the border, where the fold
would be wrong). Such classes are removed first, like zero ones, with no data needed; a constant class
with a padded reader stays, and the report says why.

The values are tracked per position of every tracked tensor (``NaN`` = not known to be constant), by one
small rule per op type: *movement* ops (Concat, Split, Flatten, pools that keep constants, ...) move
values with the elements they carry; *value* ops (BatchNormalization, activations, binary ops, depthwise
Conv) compute them. An op without a rule makes its output unknown, which only means fewer exact removals.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import UNTRACKED, Analysis, constant_array, rank_of
from onnxcomp.channels.rewrite import int_attr, ints_attr

Rule = Callable[[ir.Node, Analysis], None]

_erf = np.vectorize(math.erf)


def values_of(a: Analysis, value: ir.Value | None) -> np.ndarray | None:
    """Per-position constants of a tracked tensor (NaN where unknown), or None if untracked."""
    track = a.track(value)
    if track is None:
        return None
    known = a.constants.get(value)
    return known if known is not None else np.full(len(track), np.nan)


def _set(a: Analysis, node: ir.Node, values: np.ndarray) -> None:
    out = node.outputs[0]
    track = a.track(out)
    if track is not None and len(values) == len(track) and not np.all(np.isnan(values)):
        a.constants[out] = values.astype(np.float64)


# ------------------------------------------------------------------------------------------- sources


def _source_rule(node: ir.Node, a: Analysis) -> None:
    source = next((s for s in reversed(a.sources) if s.node is node), None)
    if source is None:
        return
    zero_filter = ~np.any(source.filters.reshape(len(source.filters), -1) != 0, axis=1)
    bias = source.bias if source.bias is not None else np.zeros(len(zero_filter))
    _set(a, node, np.where(zero_filter, bias.astype(np.float64), np.nan))


def _conv_rule(node: ir.Node, a: Analysis) -> None:
    if int_attr(node, "group", 1) == 1:
        _source_rule(node, a)
        return
    x_values, weight = values_of(a, node.inputs[0]), constant_array(node.inputs[1])
    if x_values is None or weight is None or not _unpadded(node):
        return
    if int_attr(node, "group", 1) != len(x_values) or weight.shape[0] % len(x_values):
        return  # grouped but not depthwise: an output mixes several inputs of its group; not worth proving
    multiplier = weight.shape[0] // len(x_values)
    sums = weight.reshape(len(weight), -1).sum(axis=1).astype(np.float64)
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 else None
    out = np.repeat(x_values, multiplier) * sums + (0.0 if bias is None else bias)
    _set(a, node, out)


def _unpadded(node: ir.Node) -> bool:
    """No implicit zeros enter the window: explicit pads all zero and no SAME auto-padding."""
    auto_pad = node.attributes.get("auto_pad")
    if auto_pad is not None and str(auto_pad.value) not in ("NOTSET", "VALID"):
        return False
    return not any(ints_attr(node, "pads") or [])


# -------------------------------------------------------------------------------------------- values


def _bn_rule(node: ir.Node, a: Analysis) -> None:
    x = values_of(a, node.inputs[0])
    params = [constant_array(node.inputs[i]) for i in range(1, 5)]
    if x is None or any(p is None for p in params):
        return
    scale, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
    epsilon = float(node.attributes["epsilon"].value) if "epsilon" in node.attributes else 1e-5
    _set(a, node, (x - mean) * scale / np.sqrt(var + epsilon) + beta)


def _unary(fn: Callable[[np.ndarray, ir.Node], np.ndarray]) -> Rule:
    def rule(node: ir.Node, a: Analysis) -> None:
        x = values_of(a, node.inputs[0])
        if x is not None:
            with np.errstate(all="ignore"):
                _set(a, node, fn(x, node))

    return rule


def _attr(node: ir.Node, name: str, default: float) -> float:
    return float(node.attributes[name].value) if name in node.attributes else default


def _clip(x: np.ndarray, node: ir.Node) -> np.ndarray:
    bounds = [constant_array(node.inputs[i]) if i < len(node.inputs) else None for i in (1, 2)]
    low = float(bounds[0]) if bounds[0] is not None else _attr(node, "min", -np.inf)
    high = float(bounds[1]) if bounds[1] is not None else _attr(node, "max", np.inf)
    return np.clip(x, low, high)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


UNARY: dict[str, Callable[[np.ndarray, ir.Node], np.ndarray]] = {
    "Relu": lambda x, n: np.maximum(x, 0.0),
    "LeakyRelu": lambda x, n: np.where(x >= 0, x, x * _attr(n, "alpha", 0.01)),
    "Sigmoid": lambda x, n: _sigmoid(x),
    "HardSigmoid": lambda x, n: np.clip(_attr(n, "alpha", 0.2) * x + _attr(n, "beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda x, n: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    "Tanh": lambda x, n: np.tanh(x),
    "Erf": lambda x, n: np.where(np.isnan(x), np.nan, _erf(np.nan_to_num(x))),
    "Identity": lambda x, n: x,
    "Dropout": lambda x, n: x,
    "Neg": lambda x, n: -x,
    "Abs": lambda x, n: np.abs(x),
    "Exp": lambda x, n: np.exp(x),
    "Clip": _clip,
}


def _operand(a: Analysis, value: ir.Value | None, out_rank: int, axis: int, size: int) -> np.ndarray:
    """An operand's per-position values: tracked constants, or a constant array uniform off the channel axis."""
    tracked = values_of(a, value)
    if tracked is not None:
        return tracked
    unknown = np.full(size, np.nan)
    array = constant_array(value)
    if array is None:
        return unknown
    position = axis - (out_rank - array.ndim)
    moved = array.reshape(1, -1) if position < 0 else np.moveaxis(array, position, 0)
    flat = moved.reshape(1 if position < 0 else moved.shape[0], -1).astype(np.float64)
    if flat.shape[0] not in (1, size) or not np.all(flat == flat[:, :1]):
        return unknown
    return np.broadcast_to(flat[:, 0], (size,)).copy()


BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum, "Min": np.minimum,
}


def _binary_rule(node: ir.Node, a: Analysis) -> None:
    track, out_rank = a.track(node.outputs[0]), rank_of(node.outputs[0])
    if track is None or out_rank is None:
        return
    values = [_operand(a, v, out_rank, track.axis, len(track)) for v in node.inputs[:2]]
    with np.errstate(all="ignore"):
        _set(a, node, BINARY[node.op_type](values[0], values[1]))


# ------------------------------------------------------------------------------------------ movement


def _movement_rule(node: ir.Node, a: Analysis) -> None:
    """Ops that only move elements: each output position takes the value its element had in an input."""
    by_element: dict[int, float] = {}
    for value in node.inputs:
        track, values = a.track(value), values_of(a, value)
        if track is None or values is None:
            continue
        for element, v in zip(track.slots.tolist(), values.tolist(), strict=True):
            if element != UNTRACKED:
                previous = by_element.setdefault(element, v)
                if not (previous == v or (np.isnan(previous) and np.isnan(v))):
                    by_element[element] = np.nan
    for out in node.outputs:
        track = a.track(out)
        if track is not None:
            values = np.array([by_element.get(e, np.nan) for e in track.slots.tolist()], dtype=np.float64)
            if not np.all(np.isnan(values)):
                a.constants[out] = values


def _average_pool_rule(node: ir.Node, a: Analysis) -> None:
    if _unpadded(node) or int_attr(node, "count_include_pad", 0) == 0:
        _movement_rule(node, a)


MOVEMENT = ("Concat", "Split", "Slice", "Transpose", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
            "GlobalAveragePool", "GlobalMaxPool", "MaxPool", "Resize", "Upsample", "ReduceMean", "ReduceMax",
            "ReduceMin")

RULES: dict[str, Rule] = {
    "Conv": _conv_rule,
    "Gemm": _source_rule,
    "MatMul": _source_rule,
    "BatchNormalization": _bn_rule,
    **{op: _unary(fn) for op, fn in UNARY.items()},
    **{op: _binary_rule for op in BINARY},
    **{op: _movement_rule for op in MOVEMENT},
    "AveragePool": _average_pool_rule,
}


def propagate_constants(node: ir.Node, a: Analysis) -> None:
    """Run ``node``'s constant rule (after its channel handler); unknown op types leave values unknown."""
    if node.domain in ("", "ai.onnx") and node.op_type in RULES:
        RULES[node.op_type](node, a)


# ------------------------------------------------------------------------------------------ answers


def exact_reader(node: ir.Node) -> str | None:
    """Why a constant cannot be folded exactly into ``node``'s bias, or None when it can."""
    if node.op_type == "Conv":
        return None if _unpadded(node) else f"Conv {node.name} pads its input (border outputs see zeros)"
    if node.op_type == "Gemm":
        return None
    if node.op_type == "MatMul":
        uses = list(node.outputs[0].uses())
        if len(uses) == 1 and uses[0].node.op_type == "Add" and constant_array(uses[0].node.inputs[1 - uses[0].idx]) \
                is not None:
            return None
        return f"MatMul {node.name} has no bias Add to fold a constant into"
    return f"{node.op_type} {node.name} has no bias"


def constant_roots(a: Analysis) -> tuple[set[int], dict[int, str]]:
    """Classes constant at every reader that can absorb them exactly; and constant ones that cannot, with why."""
    constant: dict[int, bool] = {}
    reasons: dict[int, str] = {}
    for node, value in a.sinks:
        track = a.tracks[value]
        values = values_of(a, value)
        reader_issue = exact_reader(node)
        for element, v in zip(track.slots.tolist(), values.tolist(), strict=True):  # type: ignore[union-attr]
            if element == UNTRACKED:
                continue
            root = a.root(element)
            ok = not np.isnan(v)
            if ok and reader_issue is not None:
                reasons.setdefault(root, reader_issue)
            constant[root] = constant.get(root, True) and ok and reader_issue is None
    exact = {root for root, ok in constant.items() if ok}
    blocked = {root: why for root, why in reasons.items() if root not in exact and _constant_everywhere(a, root)}
    return exact, blocked


def _constant_everywhere(a: Analysis, root: int) -> bool:
    for _, value in a.sinks:
        values = values_of(a, value)
        for element, v in zip(a.tracks[value].slots.tolist(), values.tolist(), strict=True):  # type: ignore[union-attr]
            if element != UNTRACKED and a.root(element) == root and np.isnan(v):
                return False
    return True


def sink_values(a: Analysis) -> dict[str, np.ndarray]:
    """Per sink input (by name): the known constants, usable as exact 'means' for bias folding."""
    return {value.name: np.nan_to_num(values_of(a, value)) for _, value in a.sinks  # type: ignore[arg-type]
            if value.name}

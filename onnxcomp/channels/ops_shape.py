"""Handlers for ops that move channels between tensors: Concat, Split, Slice, Transpose, Flatten, Reshape,
Squeeze/Unsqueeze, pooling, reductions, Resize and Softmax.

Flatten and Reshape expand a channel into ``channel x spatial`` positions of the flattened axis (each
element repeated); the Gemm/MatMul after them then drops whole runs of rows. Reshape literals that spell
the merged size (``[-1, 1024]``) are rewritten. A Reshape that splits the channel axis into ``(H, D)``
(attention heads) or whose target is computed at run time is followed from the inferred shapes
(:mod:`onnxcomp.channels.heads`); any other split or scatter freezes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import UNTRACKED, Analysis, Track, constant_array, rank_of, static_shape
from onnxcomp.channels.heads import reshape_by_shapes, rewrite_literal_shape
from onnxcomp.channels.registry import Handler
from onnxcomp.channels.rewrite import Rewriter, int_attr, ints_attr, set_ints_attr

_INT64_MAX = np.iinfo(np.int64).max


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _norm(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _pass(node: ir.Node, a: Analysis, axis: int | None = None, zero: bool = True) -> None:
    track = a.track(node.inputs[0])
    if track is not None:
        out_axis = track.axis if axis is None else axis
        a.set_track(node.outputs[0], Track(out_axis, track.slots), a.zeros_of(node.inputs[0]) if zero else None)


def _axes(node: ir.Node, input_index: int) -> list[int] | None:
    """Axes from the attribute (older opsets) or the constant input (newer ones)."""
    attr = ints_attr(node, "axes")
    if attr is not None:
        return attr
    array = constant_array(_input(node, input_index))
    return None if array is None else [int(v) for v in array.reshape(-1)]


# ---------------------------------------------------------------------------------------------- Concat


def _concat_propagate(node: ir.Node, a: Analysis) -> None:
    rank = rank_of(node.outputs[0]) or rank_of(node.inputs[0])
    tracks = [a.track(v) for v in node.inputs]
    live = [t for t in tracks if t is not None]
    if rank is None:
        for t in live:
            a.freeze(t.slots, f"Concat {node.name}: rank unknown")
        return
    axis = _norm(int_attr(node, "axis", 0), rank)
    if all(t.axis == axis for t in live):
        _concat_along(node, a, axis, tracks)
    elif len(live) == len(tracks) and all(t.axis == live[0].axis and len(t) == len(live[0]) for t in live):
        slots = live[0].slots
        for t in live[1:]:
            slots = a.unite(slots, t.slots, f"Concat {node.name} joins channels with untracked ones")
        a.set_track(node.outputs[0], Track(live[0].axis, slots))
    else:
        for t in live:
            a.freeze(t.slots, f"Concat {node.name} mixes tracked and untracked channels off its axis")


def _concat_along(node: ir.Node, a: Analysis, axis: int, tracks: list[Track | None]) -> None:
    slots, zeros = [], []
    for value, track in zip(node.inputs, tracks, strict=True):
        if track is not None:
            slots.append(track.slots)
            zeros.append(a.zeros_of(value))
            continue
        shape = static_shape(value)
        dim = shape[axis] if shape is not None and axis < len(shape) else None
        if not isinstance(dim, int):
            for t in tracks:
                if t is not None:
                    a.freeze(t.slots, f"Concat {node.name}: an untracked input has an unknown size")
            return
        slots.append(np.full(dim, UNTRACKED, dtype=np.int64))
        zeros.append(np.zeros(dim, dtype=bool))
    a.set_track(node.outputs[0], Track(axis, np.concatenate(slots)), np.concatenate(zeros))


# ----------------------------------------------------------------------------------------------- Split


def _split_sizes(node: ir.Node, length: int) -> list[int] | None:
    sizes = constant_array(_input(node, 1))
    if sizes is not None:
        return [int(s) for s in sizes.reshape(-1)]
    attr = ints_attr(node, "split")
    if attr is not None:
        return attr
    parts = len(node.outputs)
    if length % parts == 0:
        return [length // parts] * parts
    return None


def _split_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    if track is None or rank is None:
        return
    axis = _norm(int_attr(node, "axis", 0), rank)
    zero = a.zeros_of(x)
    if axis != track.axis:
        for out in node.outputs:
            a.set_track(out, Track(track.axis, track.slots), zero)
        return
    sizes = _split_sizes(node, len(track))
    if sizes is None or sum(sizes) != len(track):
        a.freeze(track.slots, f"Split {node.name}: sizes unknown")
        return
    bounds = np.cumsum([0, *sizes])
    for out, start, stop in zip(node.outputs, bounds[:-1], bounds[1:], strict=True):
        a.set_track(out, Track(axis, track.slots[start:stop]), zero[start:stop])


def _split_rewrite(node: ir.Node, rw: Rewriter) -> None:
    x = node.inputs[0]
    track, keep = rw.analysis.track(x), rw.keep(x)
    rank = rank_of(x)
    if track is None or keep is None or rank is None or _norm(int_attr(node, "axis", 0), rank) != track.axis:
        return
    bounds = np.cumsum([0, *_split_sizes(node, len(track))])  # type: ignore[list-item]
    sizes = [int(np.count_nonzero((keep >= lo) & (keep < hi))) for lo, hi in itertools.pairwise(bounds)]
    node.attributes.pop("num_outputs", None)
    if rw.opset >= 13:
        node.attributes.pop("split", None)
        rw.set_input(node, 1, np.array(sizes, dtype=np.int64))
    else:
        set_ints_attr(node, "split", sizes)


# ----------------------------------------------------------------------------------------------- Slice


def _slice_params(node: ir.Node, rank: int) -> tuple[list[int], list[int], list[int], list[int]] | None:
    starts, ends = constant_array(_input(node, 1)), constant_array(_input(node, 2))
    if starts is None or ends is None:
        return None
    axes_arr = constant_array(_input(node, 3))
    steps_arr = constant_array(_input(node, 4))
    if (_input(node, 3) is not None and axes_arr is None) or (_input(node, 4) is not None and steps_arr is None):
        return None
    axes = [_norm(int(v), rank) for v in axes_arr] if axes_arr is not None else list(range(len(starts)))
    steps = [int(v) for v in steps_arr] if steps_arr is not None else [1] * len(starts)
    return [int(v) for v in starts], [int(v) for v in ends], axes, steps


def _slice_range(start: int, end: int, length: int) -> tuple[int, int]:
    start = max(0, min(length, start + length if start < 0 else start))
    end = max(0, min(length, end + length if end < 0 else end))
    return start, max(start, end)


def _slice_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    if track is None:
        return
    params = _slice_params(node, rank) if rank is not None else None
    if params is None:
        a.freeze(track.slots, f"Slice {node.name} has non-constant bounds (or is an old-opset Slice)")
        return
    starts, ends, axes, steps = params
    if track.axis not in axes:
        _pass(node, a)
        return
    i = axes.index(track.axis)
    if steps[i] != 1:
        a.freeze(track.slots, f"Slice {node.name} steps over the channel axis")
        return
    start, end = _slice_range(starts[i], ends[i], len(track))
    a.set_track(node.outputs[0], Track(track.axis, track.slots[start:end]), a.zeros_of(x)[start:end])


def _slice_rewrite(node: ir.Node, rw: Rewriter) -> None:
    x = node.inputs[0]
    track, keep, rank = rw.analysis.track(x), rw.keep(x), rank_of(x)
    if track is None or keep is None or rank is None:
        return
    starts, ends, axes, _ = _slice_params(node, rank)  # type: ignore[misc]
    if track.axis not in axes:
        return
    i = axes.index(track.axis)
    start, end = _slice_range(starts[i], ends[i], len(track))
    new_start = int(np.count_nonzero(keep < start))
    new_end = new_start + int(np.count_nonzero((keep >= start) & (keep < end)))
    starts[i], ends[i] = new_start, new_end
    rw.set_input(node, 1, np.array(starts, dtype=np.int64))
    rw.set_input(node, 2, np.array(ends, dtype=np.int64))


# ------------------------------------------------------------------------------------ layout and shape


def _transpose_propagate(node: ir.Node, a: Analysis) -> None:
    track, rank = a.track(node.inputs[0]), rank_of(node.inputs[0])
    if track is None or rank is None:
        return
    perm = ints_attr(node, "perm") or list(reversed(range(rank)))
    _pass(node, a, axis=perm.index(track.axis))


def _flatten_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, shape = a.track(x), static_shape(x)
    if track is None:
        return
    axis = _norm(int_attr(node, "axis", 1), len(shape)) if shape is not None else None
    if shape is None or axis is None or track.axis < axis:
        a.freeze(track.slots, f"Flatten {node.name} folds the channel axis into the leading dims")
        return
    inner_dims, outer_dims = shape[track.axis + 1:], shape[axis:track.axis]
    if not all(isinstance(d, int) for d in [*inner_dims, *outer_dims]):
        a.freeze(track.slots, f"Flatten {node.name}: spatial size unknown")
        return
    _expand(node, a, x, track, math.prod(inner_dims), math.prod(outer_dims), 1)  # type: ignore[arg-type]


def _expand(node: ir.Node, a: Analysis, x: ir.Value, track: Track, inner: int, outer: int, axis: int) -> None:
    """Channel ``c`` of ``x`` becomes ``inner`` consecutive positions, the block repeated ``outer`` times."""
    slots = np.tile(np.repeat(track.slots, inner), outer)
    zero = np.tile(np.repeat(a.zeros_of(x), inner), outer)
    a.set_track(node.outputs[0], Track(axis, slots), zero)


def _resolve(in_dims: list[int], target: list[int]) -> list[int] | None:
    """Concrete output dims of a Reshape (``0`` copies, ``-1`` infers), for concrete input dims."""
    out = [in_dims[i] if d == 0 and i < len(in_dims) else d for i, d in enumerate(target)]
    known = math.prod(d for d in out if d != -1)
    total = math.prod(in_dims)
    if out.count(-1) > 1 or known == 0 or total % known:
        return None
    return [total // known if d == -1 else d for d in out]


def _reshape_plan(shape: list[int | str], target: list[int], axis: int, channels: int) -> tuple[int, int] | None:
    """The output axis holding the channels and how many positions each channel spans there.

    Symbolic input dims are tried at two different sizes; the answer must not depend on them.
    """
    answers = set()
    for guess in (7, 11):
        dims = [d if isinstance(d, int) else guess for d in shape]
        out = _resolve(dims, target)
        if out is None:
            return None
        outer, inner = math.prod(dims[:axis]), math.prod(dims[axis + 1:])
        found = None
        for j in range(len(out)):
            rest = math.prod(out[j + 1:])
            if math.prod(out[:j]) == outer and inner % rest == 0 and out[j] == channels * (inner // rest):
                found = (j, inner // rest)
                break
        answers.add(found)
    if len(answers) != 1 or None in answers:
        return None
    return answers.pop()


def _reshape_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, shape, target = a.track(x), static_shape(x), constant_array(_input(node, 1))
    if track is None:
        return
    plan = None
    if shape is not None and target is not None and not int_attr(node, "allowzero", 0):
        plan = _reshape_plan(shape, [int(v) for v in target], track.axis, len(track))
    if plan is None and not int_attr(node, "allowzero", 0) and reshape_by_shapes(node, a, x, track):
        return
    if plan is None or (track.axis < len(target) and int(target[track.axis]) == 0 and plan != (track.axis, 1)):
        a.freeze(track.slots, f"Reshape {node.name} splits or scatters the channel axis (or its shape is dynamic)")
        return
    out_axis, factor = plan
    _expand(node, a, x, track, factor, 1, out_axis)


def _reshape_rewrite(node: ir.Node, rw: Rewriter) -> None:
    x, out = node.inputs[0], node.outputs[0]
    in_track, out_track, keep = rw.analysis.track(x), rw.analysis.track(out), rw.keep(x)
    if node in rw.analysis.literal_shapes:
        kept = rw.keep(out)
        if kept is not None:
            rewrite_literal_shape(node, len(kept), rw)
        return
    target = constant_array(_input(node, 1))
    if in_track is None or out_track is None or keep is None or target is None:
        return
    factor = len(out_track) // len(in_track)
    j = out_track.axis
    literal = int(target[j])
    if literal == -1 or (literal == 0 and j == in_track.axis and factor == 1):
        return
    new = target.copy()
    new[j] = len(keep) * factor
    rw.set_input(node, 1, new.astype(target.dtype))


def _squeeze_like(node: ir.Node, a: Analysis, unsqueeze: bool) -> None:
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    axes = _axes(node, 1)
    if track is None:
        return
    if rank is None or axes is None:
        a.freeze(track.slots, f"{node.op_type} {node.name}: axes or rank unknown")
        return
    if unsqueeze:
        out_rank = rank + len(axes)
        kept = [i for i in range(out_rank) if i not in {_norm(v, out_rank) for v in axes}]
        _pass(node, a, axis=kept[track.axis])
        return
    squeezed = {_norm(v, rank) for v in axes}
    if track.axis in squeezed:
        a.freeze(track.slots, f"Squeeze {node.name} removes the channel axis")
        return
    _pass(node, a, axis=track.axis - sum(1 for v in squeezed if v < track.axis))


# ----------------------------------------------------------------------------- pools, reductions, misc


def _pool_propagate(node: ir.Node, a: Analysis) -> None:
    track = a.track(node.inputs[0])
    if track is None:
        return
    if track.axis != 1 or any(out is not None and out.uses() for out in node.outputs[1:]):
        a.freeze(track.slots, f"{node.op_type} {node.name} pools across channels or returns indices")
        return
    _pass(node, a)


def _reduce_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    if track is None:
        return
    axes = _axes(node, 1)
    if rank is None or not axes:
        a.freeze(track.slots, f"{node.op_type} {node.name} reduces over all axes or unknown axes")
        return
    axes = [_norm(v, rank) for v in axes]
    if track.axis in axes:
        a.freeze(track.slots, f"{node.op_type} {node.name} reduces over the channel axis")
        return
    keepdims = int_attr(node, "keepdims", 1)
    _pass(node, a, axis=track.axis if keepdims else track.axis - sum(1 for v in axes if v < track.axis),
          zero=node.op_type not in ("ReduceLogSumExp", "ReduceProd"))


def _resize_propagate(node: ir.Node, a: Analysis) -> None:
    track = a.track(node.inputs[0])
    if track is None:
        return
    scales_index = 1 if node.op_type == "Upsample" else 2
    scales, sizes = constant_array(_input(node, scales_index)), constant_array(_input(node, 3))
    channel_scale = None
    if scales is not None and scales.size > track.axis:
        channel_scale = float(scales[track.axis])
    elif sizes is not None and sizes.size > track.axis:
        channel_scale = 1.0 if int(sizes[track.axis]) == len(track) else None
    if channel_scale != 1.0 or ints_attr(node, "axes") is not None:
        a.freeze(track.slots, f"{node.op_type} {node.name} resizes along the channel axis (or is dynamic)")
        return
    _pass(node, a, zero=True)


def _resize_rewrite(node: ir.Node, rw: Rewriter) -> None:
    track, keep = rw.analysis.track(node.inputs[0]), rw.keep(node.inputs[0])
    sizes = constant_array(_input(node, 3)) if node.op_type == "Resize" else None
    if track is None or keep is None or sizes is None or sizes.size == 0:
        return
    new = sizes.copy()
    new[track.axis] = len(keep)
    rw.set_input(node, 3, new)


def _softmax_propagate(node: ir.Node, a: Analysis) -> None:
    x = node.inputs[0]
    track, rank = a.track(x), rank_of(x)
    if track is None:
        return
    legacy = (node.version or 13) < 13
    axis = _norm(int_attr(node, "axis", 1 if legacy else -1), rank or 0)
    if rank is None or track.axis == axis or (legacy and track.axis >= axis):
        a.freeze(track.slots, f"{node.op_type} {node.name} normalises over the channel axis")
        return
    _pass(node, a, zero=False)


def _with_rewrite(propagate: Callable[[ir.Node, Analysis], None],
                  rewrite: Callable[[ir.Node, Rewriter], None]) -> Handler:
    return Handler(propagate, rewrite)


HANDLERS: dict[str, Handler] = {
    "Concat": Handler(_concat_propagate),
    "Split": _with_rewrite(_split_propagate, _split_rewrite),
    "Slice": _with_rewrite(_slice_propagate, _slice_rewrite),
    "Transpose": Handler(_transpose_propagate),
    "Flatten": Handler(_flatten_propagate),
    "Reshape": _with_rewrite(_reshape_propagate, _reshape_rewrite),
    "Squeeze": Handler(lambda node, a: _squeeze_like(node, a, unsqueeze=False)),
    "Unsqueeze": Handler(lambda node, a: _squeeze_like(node, a, unsqueeze=True)),
    **{op: Handler(_pool_propagate) for op in ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
                                                "GlobalMaxPool", "GlobalLpPool")},
    **{op: Handler(_reduce_propagate) for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
                                                  "ReduceL1", "ReduceL2", "ReduceProd", "ReduceLogSumExp")},
    "Resize": _with_rewrite(_resize_propagate, _resize_rewrite),
    "Upsample": Handler(_resize_propagate),
    **{op: Handler(_softmax_propagate) for op in ("Softmax", "LogSoftmax")},
}

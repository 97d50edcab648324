"""Shape arithmetic, indexing and data movement: Shape, Reshape, Slice, Gather, Pad, Range, Tile, Expand, ...

These run on torch tensors like every other op, so a graph that computes its own shapes from the feed (dynamic
widths, sentence lengths) runs on each feed as it is, and the data they move keeps its gradient. Version
differences are followed: ``axes``/``split``/``pads`` moved from attributes to inputs, ``Split`` gained
``num_outputs``, ``Shape`` gained ``start``/``end``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxcomp.torch_exec.registry import OpContext, Tensors, attr, functional, ints, op, optional, to_torch
from onnxcomp.torch_exec.registry import torch_module as _torch
from onnxcomp.weights import constant_tensor

if TYPE_CHECKING:
    import torch

__all__: list[str] = []


@op("Identity")
def _identity(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [x[0]]


@op("Dropout")
def _dropout(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Inference: the input unchanged, and a mask of ones when the node asks for one."""
    if len(node.outputs) > 1 and node.outputs[1].name:
        return [x[0], _torch().ones_like(x[0], dtype=_torch().bool)]
    return [x[0]]


@op("Constant")
def _constant(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    tensor = constant_tensor(node.outputs[0])
    if tensor is None:
        raise NotImplementedError(f"Constant {node.name!r} holds no dense numeric tensor")
    return [to_torch(tensor.numpy())]


@op("Shape")
def _shape(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    dims = list(x[0].shape)
    start, end = attr(node, "start", 0), attr(node, "end", None)
    return [_torch().tensor(dims[start:end], dtype=_torch().int64)]


@op("Size")
def _size(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().tensor(x[0].numel(), dtype=_torch().int64)]


@op("Reshape")
def _reshape(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    shape = (ints(x[1]) or []) if len(x) > 1 else list(attr(node, "shape", []))
    if not attr(node, "allowzero", 0):
        shape = [data.shape[i] if dim == 0 else dim for i, dim in enumerate(shape)]
    return [data.reshape(shape)]


@op("Flatten")
def _flatten(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    axis = attr(node, "axis", 1)
    axis = axis + data.dim() if axis < 0 else axis
    return [data.reshape(math.prod(data.shape[:axis]), math.prod(data.shape[axis:]))]


@op("Transpose")
def _transpose(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    perm = attr(node, "perm", list(reversed(range(x[0].dim()))))
    return [x[0].permute(*perm)]


@op("Concat")
def _concat(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().cat([t for t in x if t is not None], dim=attr(node, "axis"))]


@op("Split")
def _split(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    axis = attr(node, "axis", 0) % data.dim()
    sizes = ints(optional(x, 1)) or attr(node, "split")
    count = len(node.outputs)
    if not sizes:
        length = data.shape[axis]
        chunk = math.ceil(length / count)
        sizes = [max(0, min(chunk, length - i * chunk)) for i in range(count)]
    return list(_torch().split(data, list(sizes), dim=axis))


def _slice_params(node: ir.Node, x: Tensors) -> tuple[list[int], list[int], list[int] | None, list[int] | None]:
    if len(x) > 1:  # opset >= 10: starts, ends, axes, steps are inputs
        return ints(x[1]) or [], ints(x[2]) or [], ints(optional(x, 3)), ints(optional(x, 4))
    return list(attr(node, "starts")), list(attr(node, "ends")), attr(node, "axes"), None


def _slice_bounds(start: int, end: int, step: int, size: int) -> tuple[int, int]:
    """Clamp as ONNX does: ``[0, size]`` for positive steps, ``[0, size - 1]`` / ``[-1, size - 1]`` for negative."""
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        return min(max(start, 0), size), min(max(end, 0), size)
    return min(max(start, 0), size - 1), min(max(end, -1), size - 1)


@op("Slice")
def _slice(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    starts, ends, axes, steps = _slice_params(node, x)
    axes = [a % data.dim() for a in axes] if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * data.dim()
    reversed_axes = []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step == 0:
            raise ValueError(f"Slice {node.name!r}: step 0")
        low, high = _slice_bounds(start, end, step, data.shape[axis])
        if step > 0:
            index[axis] = slice(low, high, step)
        else:
            reversed_axes.append((axis, list(range(low, high, step))))
    out = data[tuple(index)]
    for axis, picked in reversed_axes:  # torch has no negative-step slicing: pick the indices explicitly
        out = out.index_select(axis, _torch().tensor(picked, dtype=_torch().int64))
    return [out]


@op("Gather")
def _gather(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, indices = x[0], x[1].long()
    axis = attr(node, "axis", 0) % data.dim()
    flat = _torch().remainder(indices.reshape(-1), data.shape[axis])
    picked = data.index_select(axis, flat)
    return [picked.reshape(tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1:]))]


@op("GatherElements")
def _gather_elements(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    axis = attr(node, "axis", 0) % data.dim()
    return [_torch().gather(data, axis, _torch().remainder(x[1].long(), data.shape[axis]))]


@op("ai.onnx.ml::ArrayFeatureExtractor")
def _array_feature_extractor(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Pick ``indices`` along the last axis; a 1-D input gives ``[1, k]`` (what onnxruntime returns)."""
    data, indices = x[0], x[1].long().reshape(-1)
    picked = data.index_select(data.dim() - 1, indices)
    return [picked.reshape(1, -1) if data.dim() == 1 else picked]


def _axes(node: ir.Node, x: Tensors) -> list[int] | None:
    """``axes`` from the second input (newer opsets) or the attribute (older ones)."""
    if len(x) > 1 and x[1] is not None:
        return ints(x[1])
    found = attr(node, "axes")
    return list(found) if found is not None else None


@op("Unsqueeze")
def _unsqueeze(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, axes = x[0], _axes(node, x) or []
    rank = data.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        data = data.unsqueeze(axis)
    return [data]


@op("Squeeze")
def _squeeze(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, axes = x[0], _axes(node, x)
    if axes is None:
        return [data.squeeze()]
    for axis in sorted((a % data.dim() for a in axes), reverse=True):
        data = data.squeeze(axis)
    return [data]


_REDUCERS = {
    "ReduceMean": lambda t, dims, keep: t.mean(dim=dims, keepdim=keep),
    "ReduceSum": lambda t, dims, keep: t.sum(dim=dims, keepdim=keep),
    "ReduceMax": lambda t, dims, keep: t.amax(dim=dims, keepdim=keep),
    "ReduceMin": lambda t, dims, keep: t.amin(dim=dims, keepdim=keep),
    "ReduceProd": lambda t, dims, keep: _prod(t, dims, keep),
    "ReduceL1": lambda t, dims, keep: t.abs().sum(dim=dims, keepdim=keep),
    "ReduceL2": lambda t, dims, keep: _torch().linalg.vector_norm(t, 2, dim=dims, keepdim=keep),
    "ReduceSumSquare": lambda t, dims, keep: (t * t).sum(dim=dims, keepdim=keep),
    "ReduceLogSum": lambda t, dims, keep: _torch().log(t.sum(dim=dims, keepdim=keep)),
    "ReduceLogSumExp": lambda t, dims, keep: _torch().logsumexp(t, dim=dims, keepdim=keep),
}


def _prod(data: torch.Tensor, dims: tuple[int, ...], keep: bool) -> torch.Tensor:
    for axis in sorted(dims, reverse=True):
        data = data.prod(dim=axis, keepdim=keep)
    return data


@op(*_REDUCERS)
def _reduce(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, axes = x[0], _axes(node, x)
    keep = bool(attr(node, "keepdims", 1))
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            return [data]
        axes = list(range(data.dim()))
    if data.dim() == 0:
        return [_REDUCERS[node.op_type](data.reshape(1), (0,), False)]
    dims = tuple(sorted({a % data.dim() for a in axes}))
    return [_REDUCERS[node.op_type](data, dims, keep)]


@op("ArgMax", "ArgMin")
def _arg_extreme(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Index of the first extreme along ``axis``, or of the last with ``select_last_index`` (no gradient)."""
    data = x[0]
    axis = attr(node, "axis", 0) % max(data.dim(), 1)
    keep = bool(attr(node, "keepdims", 1))
    fn = _torch().argmax if node.op_type == "ArgMax" else _torch().argmin
    if attr(node, "select_last_index", 0):
        flipped = fn(data.flip(axis), dim=axis, keepdim=keep)
        return [data.shape[axis] - 1 - flipped]
    return [fn(data, dim=axis, keepdim=keep)]


@op("Expand")
def _expand(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    shape = ints(x[1]) or []
    target = _torch().broadcast_shapes(tuple(x[0].shape), tuple(shape))
    return [x[0].expand(target)]


@op("Tile")
def _tile(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [x[0].repeat(*(ints(x[1]) or []))] if x[0].dim() else [x[0]]


@op("ConstantOfShape")
def _constant_of_shape(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    value = attr(node, "value")
    fill = to_torch(value.numpy()).reshape(()) if value is not None else _torch().tensor(0.0)
    return [fill.expand(ints(x[0]) or []).clone()]


@op("Range")
def _range(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """``start, start + delta, ...`` below ``limit``, accumulated in the inputs' type as onnxruntime does."""
    start, limit, delta = (t.detach().cpu().numpy().reshape(()) for t in x[:3])
    if np.issubdtype(start.dtype, np.integer):
        count = max(0, -(-(int(limit) - int(start)) // int(delta)))
    else:
        count = max(0, math.ceil(float(limit - start) / float(delta)))
    steps = np.full(count, delta, dtype=start.dtype)
    if count:
        steps[0] = start
    return [to_torch(np.add.accumulate(steps, dtype=start.dtype))]


def _pad_check(node: ir.Node) -> str | None:
    mode = attr(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        return f"Pad mode {mode!r}"
    return None


def _pad_index(size: int, begin: int, end: int, mode: str) -> list[int]:
    """Source index of every position of a padded axis (``begin``/``end`` >= 0) for reflect/edge/wrap."""
    positions = range(-begin, size + end)
    if mode == "edge":
        return [min(max(i, 0), size - 1) for i in positions]
    if mode == "wrap":
        return [i % size for i in positions]
    period = max(2 * (size - 1), 1)
    return [(period - i % period) if i % period >= size else i % period for i in positions]


@op("Pad", check=_pad_check)
def _pad(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    rank = data.dim()
    if ctx.opset < 11:
        pads, value, axes = list(attr(node, "pads")), attr(node, "value", 0.0), None
    else:
        given = optional(x, 2)
        pads, axes = ints(x[1]) or [], ints(optional(x, 3))
        value = given.reshape(-1)[0].item() if given is not None and given.numel() else 0
    axes = [a % rank for a in axes] if axes else list(range(rank))
    begins, ends = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begins[axis], ends[axis] = pads[i], pads[len(axes) + i]
    mode = attr(node, "mode", "constant")
    if mode == "constant":
        spec: list[int] = []
        for begin, end in zip(reversed(begins), reversed(ends), strict=True):
            spec += [begin, end]
        return [functional().pad(data, spec, value=value)]
    for axis in range(rank):  # negative pads crop first, then each axis is padded by picking source indices
        crop_begin, crop_end = max(-begins[axis], 0), max(-ends[axis], 0)
        if crop_begin or crop_end:
            data = data.narrow(axis, crop_begin, data.shape[axis] - crop_begin - crop_end)
        begin, end = max(begins[axis], 0), max(ends[axis], 0)
        if begin or end:
            index = _pad_index(data.shape[axis], begin, end, mode)
            data = data.index_select(axis, _torch().tensor(index, dtype=_torch().int64))
    return [data]

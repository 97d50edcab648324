"""Resize (and the older Upsample) in torch: nearest and linear, every coordinate mode but tf_crop_and_resize.

Each resized axis is one gather of source indices (nearest) or a blend of two gathers (linear), so the result is
differentiable in the data and separable over axes. Source coordinates are computed with onnxruntime's formulas,
rounding and precision (float32, float64 where its formula is), so nearest picks exactly the pixels onnxruntime
picks (a float64 ``x / scale`` can land on the other side of an integer). Output sizes follow onnxruntime too:
``int(float32(scale) * size)`` from scales; scales ``out / in`` from sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxcomp.torch_exec.registry import OpContext, Tensors, attr, ints, op, optional, to_torch

if TYPE_CHECKING:
    import torch

__all__: list[str] = []

F32 = np.float32

_COORDINATES: dict[str, Callable[[np.ndarray, np.float32, int, int], np.ndarray]] = {
    "half_pixel": lambda x, s, n_in, n_out: (x + F32(0.5)) / s - F32(0.5),
    "asymmetric": lambda x, s, n_in, n_out: x / s,
    "pytorch_half_pixel": lambda x, s, n_in, n_out: ((x + F32(0.5)) / s - F32(0.5)) if n_out > 1 else x * F32(0),
    "align_corners": lambda x, s, n_in, n_out: (x * F32(n_in - 1) / F32(n_out - 1)) if n_out > 1 else x * F32(0),
    "tf_half_pixel_for_nn": lambda x, s, n_in, n_out: (x + F32(0.5)) / s,
    "half_pixel_symmetric": lambda x, s, n_in, n_out: _symmetric(x, s, n_in, n_out),
}


def _symmetric(x: np.ndarray, scale: np.float32, n_in: int, n_out: int) -> np.ndarray:
    """half_pixel_symmetric: the offset in float32, the rest in float64 (onnxruntime's double ``0.5``)."""
    offset = F32(n_in) / F32(2) * (F32(1) - F32(n_out) / (scale * F32(n_in)))
    return (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(scale) - 0.5).astype(F32)

_ROUNDING: dict[str, Callable[[np.ndarray, bool], np.ndarray]] = {
    "round_prefer_floor": lambda x, down: np.where(x - np.floor(x) == F32(0.5), np.floor(x), np.round(x)),
    "round_prefer_ceil": lambda x, down: np.where(x - np.floor(x) == F32(0.5), np.ceil(x), np.round(x)),
    "floor": lambda x, down: np.floor(x),
    "ceil": lambda x, down: np.ceil(x),
    "simple": lambda x, down: np.ceil(x) if down else np.trunc(x),  # Resize-10 / Upsample
}


def _resize_check(node: ir.Node) -> str | None:
    mode = attr(node, "mode", "nearest")
    coordinates = attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear", "bilinear"):
        return f"{node.op_type} mode {mode!r}"
    if node.op_type == "Resize" and coordinates not in _COORDINATES:
        return f"Resize coordinate_transformation_mode {coordinates!r}"
    if attr(node, "antialias", 0):
        return "Resize with antialias"
    if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return f"Resize keep_aspect_ratio_policy {attr(node, 'keep_aspect_ratio_policy')!r}"
    return None


def _targets(node: ir.Node, x: Tensors, shape: list[int], opset: int) -> tuple[list[int], list[np.float32]]:
    """Output size and scale of every axis, from ``scales`` or ``sizes`` (over ``axes`` when given)."""
    rank = len(shape)
    if node.op_type == "Upsample" or opset < 11:
        given = optional(x, 1)
        scales_in = [float(v) for v in given.reshape(-1).tolist()] if given is not None else list(attr(node, "scales"))
        sizes_in = None
    else:
        scales_t, sizes_t = optional(x, 2), optional(x, 3)
        scales_in = scales_t.reshape(-1).tolist() if scales_t is not None and scales_t.numel() else None
        sizes_in = ints(sizes_t) if sizes_t is not None and sizes_t.numel() else None
    axes = [a % rank for a in attr(node, "axes", None) or range(rank)]
    sizes, scales = list(shape), [F32(1.0)] * rank
    for k, axis in enumerate(axes):
        if sizes_in is not None:
            sizes[axis] = sizes_in[k]
            scales[axis] = F32(sizes_in[k]) / F32(shape[axis])
        else:
            scales[axis] = F32(scales_in[k])
            sizes[axis] = int(scales[axis] * F32(shape[axis]))
    return sizes, scales


def _source(node: ir.Node, opset: int, n_in: int, n_out: int, scale: np.float32) -> np.ndarray:
    if node.op_type == "Upsample" or opset < 11:
        mode = "asymmetric"
    else:
        mode = attr(node, "coordinate_transformation_mode", "half_pixel")
    return _COORDINATES[mode](np.arange(n_out, dtype=F32), scale, n_in, n_out).astype(F32)


def _nearest(node: ir.Node, opset: int, data: torch.Tensor, axis: int, n_out: int,
             scale: np.float32) -> torch.Tensor:
    n_in = data.shape[axis]
    rounding = "simple" if node.op_type == "Upsample" or opset < 11 else attr(node, "nearest_mode",
                                                                                "round_prefer_floor")
    picked = _ROUNDING[rounding](_source(node, opset, n_in, n_out, scale), bool(scale < 1))
    index = np.clip(picked, 0, n_in - 1).astype(np.int64)
    return data.index_select(axis, to_torch(index))


def _linear(node: ir.Node, opset: int, data: torch.Tensor, axis: int, n_out: int, scale: np.float32) -> torch.Tensor:
    n_in = data.shape[axis]
    where = np.clip(_source(node, opset, n_in, n_out, scale), 0, n_in - 1)
    low = np.minimum(np.floor(where).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    shape = [1] * data.dim()
    shape[axis] = n_out
    weight = to_torch((where - low).astype(np.float32)).to(data.dtype).reshape(shape)
    below, above = data.index_select(axis, to_torch(low)), data.index_select(axis, to_torch(high))
    return below + (above - below) * weight


@op("Resize", "Upsample", check=_resize_check)
def _resize(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    sizes, scales = _targets(node, x, list(data.shape), ctx.opset)
    linear = attr(node, "mode", "nearest") in ("linear", "bilinear")
    for axis, (n_out, scale) in enumerate(zip(sizes, scales, strict=True)):
        if n_out == data.shape[axis] and scale == 1:
            continue
        data = (_linear if linear else _nearest)(node, ctx.opset, data, axis, n_out, scale)
    return [data]

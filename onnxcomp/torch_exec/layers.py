"""Layers with weights or windows: MatMul, Gemm, Conv, ConvTranspose, pooling and normalisation.

ONNX pads may differ at the two ends of an axis, torch's may not: asymmetric pads are applied explicitly (Conv,
pooling) or cropped afterwards (ConvTranspose). ``auto_pad`` and ConvTranspose's ``output_shape`` are resolved
the way onnxruntime resolves them (for ConvTranspose that is not quite the spec's text; onnxruntime's choice is
the one a written model meets at run time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxcomp.torch_exec.registry import OpContext, Tensors, attr, functional, op, optional
from onnxcomp.torch_exec.registry import torch_module as _torch

if TYPE_CHECKING:
    import torch

__all__: list[str] = []


@op("MatMul")
def _matmul(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().matmul(x[0], x[1])]


@op("Gemm")
def _gemm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    a = x[0].t() if attr(node, "transA", 0) else x[0]
    b = x[1].t() if attr(node, "transB", 0) else x[1]
    out = attr(node, "alpha", 1.0) * (a @ b)
    bias = optional(x, 2)
    if bias is not None:
        out = out + attr(node, "beta", 1.0) * bias
    return [out]


def _same_pads(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
               upper: bool) -> list[int]:
    """ONNX ``pads`` (all begins, then all ends) that make ``auto_pad=SAME_*`` output ceil(in / stride)."""
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if upper else large)
        ends.append(large if upper else small)
    return begins + ends


def _window(node: ir.Node, data: torch.Tensor, kernel: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and explicit pads of a Conv/pool node, auto_pad resolved."""
    rank = len(kernel)
    strides = list(attr(node, "strides", [1] * rank))
    dilations = list(attr(node, "dilations", [1] * rank))
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(list(data.shape[2:]), kernel, strides, dilations, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID":
        pads = [0] * (2 * rank)
    else:
        pads = list(attr(node, "pads", [0] * (2 * rank)))
    return strides, dilations, pads


def _torch_pad_spec(begins: Sequence[int], ends: Sequence[int]) -> list[int]:
    """ONNX begins/ends of the trailing axes as torch's ``pad`` list (last axis first)."""
    spec: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        spec += [begin, end]
    return spec


def _padded(data: torch.Tensor, pads: list[int], value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """Symmetric pads go to the torch op; asymmetric ones are applied here first."""
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return data, begins
    return functional().pad(data, _torch_pad_spec(begins, ends), value=value), [0] * rank


def _conv_fn(prefix: str, rank: int) -> Callable[..., torch.Tensor]:
    if rank not in (1, 2, 3):
        raise NotImplementedError(f"{prefix} over {rank} spatial axes")
    return getattr(functional(), f"{prefix}{rank}d")


def _spatial_rank(node: ir.Node) -> str | None:
    kernel = attr(node, "kernel_shape")
    if kernel is not None and len(kernel) not in (1, 2, 3):
        return f"{node.op_type} over {len(kernel)} spatial axes"
    return None


@op("Conv", check=_spatial_rank)
def _conv(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, weight, bias = x[0], x[1], optional(x, 2)
    kernel = list(attr(node, "kernel_shape", list(weight.shape[2:])))
    strides, dilations, pads = _window(node, data, kernel)
    data, padding = _padded(data, pads)
    conv = _conv_fn("conv", len(kernel))
    return [conv(data, weight, bias, stride=strides, padding=padding, dilation=dilations,
                 groups=attr(node, "group", 1))]


def _transpose_pads(node: ir.Node, spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int], output_padding: Sequence[int]) -> tuple[list[int], list[int]]:
    """Begin and end crops of a ConvTranspose (negative: zeros added), as onnxruntime derives them.

    With ``output_shape`` or ``auto_pad=SAME_*`` (output ``in * stride``) the total crop is what makes the full
    output that size; SAME_UPPER crops the odd element at the end, NOTSET and SAME_LOWER at the beginning, and
    an ``output_shape`` larger than the full output gets zeros at the end (auto_pad never grows it).
    """
    rank = len(kernel)
    auto_pad = attr(node, "auto_pad", "NOTSET")
    output_shape = attr(node, "output_shape")
    if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        pads = list(attr(node, "pads", [0] * (2 * rank))) if auto_pad != "VALID" else [0] * (2 * rank)
        return pads[:rank], pads[rank:]
    targets = list(output_shape)[-rank:] if output_shape is not None else [n * s for n, s in zip(spatial, strides,
                                                                                                  strict=True)]
    begins, ends = [], []
    for size, target, k, s, d, extra in zip(spatial, targets, kernel, strides, dilations, output_padding,
                                            strict=True):
        total = s * (size - 1) + extra + (k - 1) * d + 1 - target
        if output_shape is None:
            total = max(total, 0)  # auto_pad never grows the full output
        begin = 0 if total < 0 else (total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        begins.append(begin)
        ends.append(total - begin)
    return begins, ends


@op("ConvTranspose", check=_spatial_rank)
def _conv_transpose(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Full transposed convolution, then ``output_padding`` appended and the pads cropped (ONNX's output size
    ``stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end``)."""
    data, weight, bias = x[0], x[1], optional(x, 2)
    kernel = list(attr(node, "kernel_shape", list(weight.shape[2:])))
    rank = len(kernel)
    strides = list(attr(node, "strides", [1] * rank))
    dilations = list(attr(node, "dilations", [1] * rank))
    output_padding = list(attr(node, "output_padding", [0] * rank))
    begins, ends = _transpose_pads(node, list(data.shape[2:]), kernel, strides, dilations, output_padding)
    conv = _conv_fn("conv_transpose", rank)
    out = conv(data, weight, None, stride=strides, padding=0, output_padding=0, groups=attr(node, "group", 1),
               dilation=dilations)
    # one constant pad does it all: negative amounts crop, output_padding and larger outputs add zeros
    spec = _torch_pad_spec([-b for b in begins], [extra - e for extra, e in zip(output_padding, ends, strict=True)])
    if any(spec):
        out = functional().pad(out, spec)
    if bias is not None:
        out = out + bias.reshape([1, -1] + [1] * rank)
    return [out]


def _pool_check(node: ir.Node) -> str | None:
    if node.op_type == "MaxPool" and len(node.outputs) > 1 and node.outputs[1].name:
        return "MaxPool with an Indices output"
    kernel = attr(node, "kernel_shape") or []
    if len(kernel) not in (1, 2, 3):
        return f"{node.op_type} over {len(kernel)} spatial axes"
    pads = list(attr(node, "pads", [0] * (2 * len(kernel))))
    if (node.op_type == "AveragePool" and not attr(node, "count_include_pad", 0)
            and pads[: len(kernel)] != pads[len(kernel):]):
        return "AveragePool with asymmetric pads and count_include_pad=0"
    return None


@op("MaxPool", "AveragePool", check=_pool_check)
def _pool(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    kernel = list(attr(node, "kernel_shape"))
    strides, dilations, pads = _window(node, x[0], kernel)
    ceil_mode = bool(attr(node, "ceil_mode", 0))
    if node.op_type == "MaxPool":
        data, padding = _padded(x[0], pads, value=-math.inf)
        pool = _conv_fn("max_pool", len(kernel))
        return [pool(data, kernel, strides, padding, dilations, ceil_mode=ceil_mode)]
    include_pad = bool(attr(node, "count_include_pad", 0))
    data, padding = _padded(x[0], pads) if include_pad else (x[0], pads[: len(kernel)])
    pool = _conv_fn("avg_pool", len(kernel))
    return [pool(data, kernel, strides, padding, ceil_mode=ceil_mode, count_include_pad=include_pad)]


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    dims = tuple(range(2, x[0].dim()))
    if node.op_type == "GlobalAveragePool":
        return [x[0].mean(dim=dims, keepdim=True)]
    return [x[0].amax(dim=dims, keepdim=True)]


@op("BatchNormalization")
def _batch_norm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Inference mode (running statistics): what the ONNX graph computes, whatever ``training_mode`` says."""
    data, scale, bias, mean, var = x[:5]
    shape = [1, -1] + [1] * (data.dim() - 2)
    inv = scale.reshape(shape) / _torch().sqrt(var.reshape(shape) + attr(node, "epsilon", 1e-5))
    return [(data - mean.reshape(shape)) * inv + bias.reshape(shape)]


@op("InstanceNormalization")
def _instance_norm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, scale, bias = x[0], x[1], x[2]
    dims = tuple(range(2, data.dim()))
    shape = [1, -1] + [1] * (data.dim() - 2)
    mean = data.mean(dim=dims, keepdim=True)
    var = ((data - mean) ** 2).mean(dim=dims, keepdim=True)
    out = (data - mean) * _torch().rsqrt(var + attr(node, "epsilon", 1e-5))
    return [out * scale.reshape(shape) + bias.reshape(shape)]


@op("LayerNormalization")
def _layer_norm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, scale, bias = x[0], x[1], optional(x, 2)
    axis = attr(node, "axis", -1) % data.dim()
    dims = tuple(range(axis, data.dim()))
    mean = data.mean(dim=dims, keepdim=True)
    var = ((data - mean) ** 2).mean(dim=dims, keepdim=True)
    inv = _torch().rsqrt(var + attr(node, "epsilon", 1e-5))
    out = (data - mean) * inv * scale
    if bias is not None:
        out = out + bias
    return [out, mean, inv][: len(node.outputs)]

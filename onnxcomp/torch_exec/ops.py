"""One small torch function per ONNX op, in a registry keyed by op type.

Each handler takes the node, its input tensors (``None`` for an omitted optional input) and an
:class:`OpContext` (the opset, and a way to run subgraphs), and returns the output tensors. Semantics follow the
ONNX operator definitions at the opsets the exporters use (11 to 18+), including inputs that moved from
attributes to inputs over versions (``axes``, ``split``, ``min``/``max``). Shape arithmetic (``Shape``,
``Gather``, ``Unsqueeze``, ``Concat`` on int64) runs on torch tensors too, so no op needs static shapes.

Only ops the training path can meet are here; :func:`unsupported_ops` lists what a graph uses beyond them so a
caller fails before training, naming every missing op.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxcomp.weights import constant_tensor

if TYPE_CHECKING:
    import torch

__all__ = ["OPS", "OpContext", "attr", "to_torch", "unsupported_ops"]

Tensors = list["torch.Tensor | None"]
Handler = Callable[["OpContext", ir.Node, Tensors], "list[torch.Tensor]"]


@dataclass
class OpContext:
    """What a handler may need beyond its inputs."""

    opset: int
    run_graph: Callable[[ir.Graph], list[Any]]


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """An attribute's Python value (ints, floats, lists, strings, graphs), or ``default``."""
    found = node.attributes.get(name)
    return default if found is None else found.value


def to_torch(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(array, copy=True))


def _ints(tensor: torch.Tensor | None) -> list[int] | None:
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def _torch():
    import torch

    return torch


def _functional():
    import torch.nn.functional as functional

    return functional


OPS: dict[str, Handler] = {}


def op(*names: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for name in names:
            OPS[name] = handler
        return handler

    return register


def unsupported_ops(graph: ir.Graph) -> list[str]:
    """Op types in ``graph`` (and its subgraphs) that have no handler, sorted, each once."""
    missing: set[str] = set()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
            missing.add(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}")
    return sorted(missing)


# -- elementwise ------------------------------------------------------------------------------------------------

def _unary(fn_name: str) -> Handler:
    def handler(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
        return [getattr(_torch(), fn_name)(x[0])]

    return handler


for _name, _fn in {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Sqrt": "sqrt",
                   "Exp": "exp", "Log": "log", "Neg": "neg", "Abs": "abs", "Reciprocal": "reciprocal",
                   "Floor": "floor", "Ceil": "ceil", "Not": "logical_not"}.items():
    OPS[_name] = _unary(_fn)


def _binary(fn: Callable[[Any, Any], Any]) -> Handler:
    def handler(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
        return [fn(x[0], x[1])]

    return handler


OPS.update({
    "Add": _binary(lambda a, b: a + b),
    "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b),
    "Pow": _binary(lambda a, b: _torch().pow(a, b)),
    "Equal": _binary(lambda a, b: a == b),
    "Greater": _binary(lambda a, b: a > b),
    "GreaterOrEqual": _binary(lambda a, b: a >= b),
    "Less": _binary(lambda a, b: a < b),
    "LessOrEqual": _binary(lambda a, b: a <= b),
    "And": _binary(lambda a, b: _torch().logical_and(a, b)),
    "Or": _binary(lambda a, b: _torch().logical_or(a, b)),
})


@op("Div")
def _div(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    a, b = x[0], x[1]
    if not a.is_floating_point() and not b.is_floating_point():
        return [_torch().div(a, b, rounding_mode="trunc")]  # ONNX integer Div truncates
    return [a / b]


@op("Where")
def _where(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().where(x[0], x[1], x[2])]


@op("Clip")
def _clip(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    low = x[1] if len(x) > 1 and x[1] is not None else attr(node, "min")
    high = x[2] if len(x) > 2 and x[2] is not None else attr(node, "max")
    return [_torch().clamp(x[0], min=low, max=high)]


@op("LeakyRelu")
def _leaky_relu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_functional().leaky_relu(x[0], attr(node, "alpha", 0.01))]


@op("Gelu")
def _gelu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_functional().gelu(x[0], approximate=attr(node, "approximate", "none"))]


@op("Softmax", "LogSoftmax")
def _softmax(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    fn = _torch().softmax if node.op_type == "Softmax" else _torch().log_softmax
    data = x[0]
    if ctx.opset >= 13:
        return [fn(data, dim=attr(node, "axis", -1))]
    axis = attr(node, "axis", 1) % data.dim()  # before opset 13: softmax over the flattened trailing axes
    flat = data.reshape(math.prod(data.shape[:axis]), -1)
    return [fn(flat, dim=1).reshape(data.shape)]


@op("Cast")
def _cast(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    target = ir.DataType(attr(node, "to")).numpy()
    return [x[0].to(to_torch(np.zeros((), dtype=target)).dtype)]


# -- linear layers ----------------------------------------------------------------------------------------------

@op("MatMul")
def _matmul(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().matmul(x[0], x[1])]


@op("Gemm")
def _gemm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    a = x[0].t() if attr(node, "transA", 0) else x[0]
    b = x[1].t() if attr(node, "transB", 0) else x[1]
    out = attr(node, "alpha", 1.0) * (a @ b)
    if len(x) > 2 and x[2] is not None:
        out = out + attr(node, "beta", 1.0) * x[2]
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


def _padded(data: torch.Tensor, pads: list[int], value: float = 0.0) -> tuple[torch.Tensor, list[int]]:
    """Symmetric pads go to the torch op; asymmetric ones are applied here first (torch pads last axis first)."""
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return data, begins
    spec: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        spec += [begin, end]
    return _functional().pad(data, spec, value=value), [0] * rank


@op("Conv")
def _conv(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, weight = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    kernel = list(attr(node, "kernel_shape", list(weight.shape[2:])))
    strides, dilations, pads = _window(node, data, kernel)
    data, padding = _padded(data, pads)
    conv = {1: _functional().conv1d, 2: _functional().conv2d, 3: _functional().conv3d}[len(kernel)]
    return [conv(data, weight, bias, stride=strides, padding=padding, dilation=dilations,
                 groups=attr(node, "group", 1))]


@op("MaxPool", "AveragePool")
def _pool(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    kernel = list(attr(node, "kernel_shape"))
    strides, dilations, pads = _window(node, x[0], kernel)
    ceil_mode = bool(attr(node, "ceil_mode", 0))
    functional = _functional()
    if node.op_type == "MaxPool":
        data, padding = _padded(x[0], pads, value=-math.inf)
        pool = {1: functional.max_pool1d, 2: functional.max_pool2d, 3: functional.max_pool3d}[len(kernel)]
        return [pool(data, kernel, strides, padding, dilations, ceil_mode=ceil_mode)]
    include_pad = bool(attr(node, "count_include_pad", 0))
    data, padding = _padded(x[0], pads) if include_pad else (x[0], pads[: len(kernel)])
    if not include_pad and pads[: len(kernel)] != pads[len(kernel):]:
        raise NotImplementedError(f"AveragePool {node.name!r}: asymmetric pads without count_include_pad")
    pool = {1: functional.avg_pool1d, 2: functional.avg_pool2d, 3: functional.avg_pool3d}[len(kernel)]
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


@op("LayerNormalization")
def _layer_norm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, scale = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    axis = attr(node, "axis", -1) % data.dim()
    dims = tuple(range(axis, data.dim()))
    mean = data.mean(dim=dims, keepdim=True)
    var = ((data - mean) ** 2).mean(dim=dims, keepdim=True)
    inv = _torch().rsqrt(var + attr(node, "epsilon", 1e-5))
    out = (data - mean) * inv * scale
    if bias is not None:
        out = out + bias
    return [out, mean, inv][: len(node.outputs)]


# -- shapes and indexing ----------------------------------------------------------------------------------------

@op("Identity")
def _identity(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
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


@op("Reshape")
def _reshape(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, shape = x[0], _ints(x[1]) or []
    if not attr(node, "allowzero", 0):
        shape = [data.shape[i] if dim == 0 else dim for i, dim in enumerate(shape)]
    return [data.reshape(shape)]


@op("Flatten")
def _flatten(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    axis = attr(node, "axis", 1) % (data.dim() + 1) if data.dim() else 0
    return [data.reshape(math.prod(data.shape[:axis]), -1)]


@op("Transpose")
def _transpose(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    perm = attr(node, "perm", list(reversed(range(x[0].dim()))))
    return [x[0].permute(*perm)]


@op("Concat")
def _concat(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().cat([t for t in x if t is not None], dim=attr(node, "axis"))]


@op("Split")
def _split(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, axis = x[0], attr(node, "axis", 0)
    sizes = _ints(x[1]) if len(x) > 1 and x[1] is not None else attr(node, "split")
    count = len(node.outputs)
    if sizes is None:
        length = data.shape[axis]
        chunk = math.ceil(length / count)
        sizes = [min(chunk, length - i * chunk) for i in range(count)]
    return list(_torch().split(data, list(sizes), dim=axis))


@op("Slice")
def _slice(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data = x[0]
    if len(x) > 1:  # opset >= 10: starts, ends, axes, steps are inputs
        starts, ends = _ints(x[1]) or [], _ints(x[2]) or []
        axes = _ints(x[3]) if len(x) > 3 else None
        steps = _ints(x[4]) if len(x) > 4 else None
    else:
        starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * data.dim()
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step <= 0:
            raise NotImplementedError(f"Slice {node.name!r}: non-positive step {step}")
        size = data.shape[axis]
        index[axis] = slice(max(0, start + size if start < 0 else min(start, size)),
                            max(0, end + size if end < 0 else min(end, size)), step)
    return [data[tuple(index)]]


@op("Gather")
def _gather(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, indices = x[0], x[1].long()
    axis = attr(node, "axis", 0) % data.dim()
    flat = _torch().remainder(indices.reshape(-1), data.shape[axis])
    picked = data.index_select(axis, flat)
    return [picked.reshape(tuple(data.shape[:axis]) + tuple(indices.shape) + tuple(data.shape[axis + 1:]))]


def _axes(node: ir.Node, x: Tensors) -> list[int] | None:
    """``axes`` from the second input (newer opsets) or the attribute (older ones)."""
    if len(x) > 1 and x[1] is not None:
        return _ints(x[1])
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


@op("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin")
def _reduce(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    data, axes = x[0], _axes(node, x)
    keep = bool(attr(node, "keepdims", 1))
    if not axes:
        if attr(node, "noop_with_empty_axes", 0):
            return [data]
        axes = list(range(data.dim()))
    dims = tuple(a % data.dim() for a in axes)
    reducers = {"ReduceMean": lambda: data.mean(dim=dims, keepdim=keep),
                "ReduceSum": lambda: data.sum(dim=dims, keepdim=keep),
                "ReduceMax": lambda: data.amax(dim=dims, keepdim=keep),
                "ReduceMin": lambda: data.amin(dim=dims, keepdim=keep)}
    return [reducers[node.op_type]()]


@op("Expand")
def _expand(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    shape = _ints(x[1]) or []
    target = _torch().broadcast_shapes(tuple(x[0].shape), tuple(shape))
    return [x[0].expand(target)]


@op("ConstantOfShape")
def _constant_of_shape(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    value = attr(node, "value")
    fill = to_torch(value.numpy()).reshape(()) if value is not None else _torch().tensor(0.0)
    return [fill.expand(_ints(x[0]) or []).clone()]


@op("If")
def _if(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Run the branch the condition picks; outer-scope values are visible because the environment is shared."""
    branch = "then_branch" if bool(x[0].reshape(()).item()) else "else_branch"
    return ctx.run_graph(attr(node, branch))

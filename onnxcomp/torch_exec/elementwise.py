"""Elementwise ops: unary maths, activations, broadcasting binary and variadic ops, comparisons, Cast.

Semantics are the ONNX ones onnxruntime implements: integer ``Div`` truncates toward zero, ``Mod`` follows the
divisor's sign unless ``fmod=1``, ``Pow`` keeps the base's type, ``Clip`` bounds are attributes before opset 11
and inputs from then on, ``Softmax`` before opset 13 normalises over the flattened trailing axes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

from onnxcomp.torch_exec.registry import OPS, OpContext, Tensors, attr, functional, op, optional, to_torch
from onnxcomp.torch_exec.registry import torch_module as _torch

if TYPE_CHECKING:
    import torch

__all__ = ["torch_dtype"]


def torch_dtype(data_type: int) -> Any:
    """The torch dtype of an ONNX ``TensorProto`` data type."""
    return to_torch(np.zeros((), dtype=ir.DataType(data_type).numpy())).dtype


def _unary(fn: Callable[[Any], Any]) -> Callable[[OpContext, ir.Node, Tensors], list[Any]]:
    def handler(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
        return [fn(x[0])]

    return handler


def _by_name(name: str) -> Callable[[Any], Any]:
    return lambda t: getattr(_torch(), name)(t)


for _op, _fn in {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf", "Sqrt": "sqrt", "Exp": "exp",
                 "Log": "log", "Neg": "neg", "Abs": "abs", "Reciprocal": "reciprocal", "Floor": "floor",
                 "Ceil": "ceil", "Not": "logical_not", "Sign": "sign", "Sin": "sin", "Cos": "cos",
                 "IsNaN": "isnan", "Round": "round"}.items():
    OPS[_op] = _unary(_by_name(_fn))

OPS["Softsign"] = _unary(lambda t: t / (1 + t.abs()))
OPS["Softplus"] = _unary(lambda t: functional().softplus(t))


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[OpContext, ir.Node, Tensors], list[Any]]:
    def handler(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
        return [fn(x[0], x[1])]

    return handler


OPS.update({
    "Add": _binary(lambda a, b: a + b),
    "Sub": _binary(lambda a, b: a - b),
    "Mul": _binary(lambda a, b: a * b),
    "Equal": _binary(lambda a, b: a == b),
    "Greater": _binary(lambda a, b: a > b),
    "GreaterOrEqual": _binary(lambda a, b: a >= b),
    "Less": _binary(lambda a, b: a < b),
    "LessOrEqual": _binary(lambda a, b: a <= b),
    "And": _binary(lambda a, b: _torch().logical_and(a, b)),
    "Or": _binary(lambda a, b: _torch().logical_or(a, b)),
    "Xor": _binary(lambda a, b: _torch().logical_xor(a, b)),
})


@op("Div")
def _div(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    a, b = x[0], x[1]
    if not a.is_floating_point() and not b.is_floating_point():
        return [_torch().div(a, b, rounding_mode="trunc")]  # ONNX integer Div truncates
    return [a / b]


@op("Mod")
def _mod(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    if attr(node, "fmod", 0):
        return [_torch().fmod(x[0], x[1])]  # the dividend's sign, like C's fmod
    return [_torch().remainder(x[0], x[1])]  # the divisor's sign, like Python's %


@op("Pow")
def _pow(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().pow(x[0], x[1]).to(x[0].dtype)]  # the result has the base's type, whatever the exponent's


def _variadic(fn: Callable[[Any, Any], Any], mean: bool = False) -> Callable[[OpContext, ir.Node, Tensors], list[Any]]:
    def handler(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
        present = [t for t in x if t is not None]
        out = present[0]
        for other in present[1:]:
            out = fn(out, other)
        return [out / len(present) if mean else out]

    return handler


OPS.update({
    "Max": _variadic(lambda a, b: _torch().maximum(a, b)),
    "Min": _variadic(lambda a, b: _torch().minimum(a, b)),
    "Sum": _variadic(lambda a, b: a + b),
    "Mean": _variadic(lambda a, b: a + b, mean=True),
})


@op("Where")
def _where(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [_torch().where(x[0], x[1], x[2])]


@op("Clip")
def _clip(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    if ctx.opset < 11:
        low, high = attr(node, "min", -math.inf), attr(node, "max", math.inf)
    else:
        low, high = optional(x, 1), optional(x, 2)
    if low is None and high is None:
        return [x[0]]
    return [_torch().clamp(x[0], min=low, max=high)]


# -- activations with parameters --------------------------------------------------------------------------------

@op("LeakyRelu")
def _leaky_relu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [functional().leaky_relu(x[0], attr(node, "alpha", 0.01))]


@op("PRelu")
def _prelu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """``slope`` broadcasts against the input (unidirectionally), unlike torch's per-channel prelu."""
    data, slope = x[0], x[1]
    return [_torch().where(data < 0, data * slope, data)]


@op("Elu")
def _elu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [functional().elu(x[0], alpha=attr(node, "alpha", 1.0))]


@op("Selu")
def _selu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    alpha, gamma = attr(node, "alpha", 1.67326319217681884765625), attr(node, "gamma", 1.05070102214813232421875)
    data = x[0]
    return [gamma * _torch().where(data > 0, data, alpha * (_torch().exp(data) - 1))]


@op("HardSigmoid")
def _hard_sigmoid(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """``max(0, min(1, alpha * x + beta))``; torch's hardsigmoid fixes alpha at 1/6, ONNX's default is 0.2."""
    return [_torch().clamp(attr(node, "alpha", 0.2) * x[0] + attr(node, "beta", 0.5), 0.0, 1.0)]


@op("HardSwish")
def _hard_swish(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [x[0] * _torch().clamp(x[0] / 6 + 0.5, 0.0, 1.0)]


@op("Gelu")
def _gelu(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [functional().gelu(x[0], approximate=attr(node, "approximate", "none"))]


@op("Softmax", "LogSoftmax")
def _softmax(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    fn = _torch().softmax if node.op_type == "Softmax" else _torch().log_softmax
    data = x[0]
    if ctx.opset >= 13:
        return [fn(data, dim=attr(node, "axis", -1))]
    axis = attr(node, "axis", 1) % max(data.dim(), 1)  # before opset 13: over the flattened trailing axes
    flat = data.reshape(math.prod(data.shape[:axis]), -1)
    return [fn(flat, dim=1).reshape(data.shape)]


@op("Cast")
def _cast(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [x[0].to(torch_dtype(attr(node, "to")))]


@op("CastLike")
def _cast_like(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    return [x[0].to(x[1].dtype)]

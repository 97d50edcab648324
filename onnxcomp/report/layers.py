"""Per-layer facts for the report: weight sparsity, distinct values and output channels, before and after.

Layers are matched by node name between the original and the optimized model. A weight behind a
DequantizeLinear (int8 quantization) is followed back to its stored tensor, so a quantized layer still
reports its sparsity and channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxcomp.weights import constant_tensor, iter_graphs

#: Largest tensor whose distinct values are counted (np.unique sorts it).
_UNIQUE_LIMIT = 1 << 22


def _conv_channels(node: ir.Node, shape: tuple[int, ...]) -> int:
    return shape[0]


def _conv_transpose_channels(node: ir.Node, shape: tuple[int, ...]) -> int:
    group = node.attributes.get("group")
    return shape[1] * (group.as_int() if group is not None else 1)


def _gemm_channels(node: ir.Node, shape: tuple[int, ...]) -> int:
    trans = node.attributes.get("transB")
    return shape[0] if trans is not None and trans.as_int() else shape[-1]


def _matmul_channels(node: ir.Node, shape: tuple[int, ...]) -> int:
    return shape[-1]


#: Op type -> output channels from the weight (input 1) shape.
CHANNELS: dict[str, Callable[[ir.Node, tuple[int, ...]], int]] = {
    "Conv": _conv_channels,
    "ConvTranspose": _conv_transpose_channels,
    "Gemm": _gemm_channels,
    "MatMul": _matmul_channels,
}


def _weight_array(value: ir.Value | None) -> np.ndarray | None:
    """The stored weight behind ``value``, looking through one DequantizeLinear."""
    if value is None:
        return None
    tensor = constant_tensor(value)
    if tensor is None and value.producer() is not None and value.producer().op_type == "DequantizeLinear":
        tensor = constant_tensor(value.producer().inputs[0])
    return None if tensor is None else np.asarray(tensor.numpy())


def _layers(model: ir.Model) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for graph, path in iter_graphs(model.graph):
        for index, node in enumerate(graph):
            if node.op_type not in CHANNELS or len(node.inputs) < 2:
                continue
            array = _weight_array(node.inputs[1])
            if array is None or array.ndim < 2:
                continue
            name = f"{path}/{node.name}" if path else (node.name or f"{node.op_type}_{index}")
            facts[name] = {
                "op": node.op_type,
                "dtype": str(array.dtype),
                "size": int(array.size),
                "sparsity": float(np.count_nonzero(array == 0) / array.size) if array.size else 0.0,
                "distinct": int(np.unique(array).size) if array.size <= _UNIQUE_LIMIT else None,
                "channels": CHANNELS[node.op_type](node, array.shape),
            }
    return facts


def layer_facts(original: ir.Model, optimized: ir.Model) -> list[dict[str, Any]]:
    """One row per weighted layer of the original: sparsity, distinct values and channels before and after."""
    before, after = _layers(original), _layers(optimized)
    rows = []
    for name, old in before.items():
        new = after.get(name)
        rows.append({
            "layer": name, "op": old["op"], "size": old["size"],
            "sparsity_before": old["sparsity"], "sparsity_after": new["sparsity"] if new else None,
            "distinct_before": old["distinct"], "distinct_after": new["distinct"] if new else None,
            "dtype_after": new["dtype"] if new else None,
            "channels_before": old["channels"], "channels_after": new["channels"] if new else None,
        })
    return rows

"""Fold shape-only operations on constants into initializers.

Some exporters (Caffe2's, for one) apply a BatchNorm's scale as ``Mul(x, Unsqueeze(gamma))``: the per-channel
constant is computed at run time from an initializer. Structured passes reason about constants, so they would see
a "non-constant operand" and freeze the channels. Folding these nodes (Identity, Unsqueeze, Squeeze, Reshape, Cast
and Flatten whose inputs are all constants) is exact: the values are only moved or re-typed, never computed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcomp.weights import constant_tensor

_Folder = Callable[[ir.Node, list[np.ndarray], int], np.ndarray | None]


def _axes(node: ir.Node, inputs: list[np.ndarray], opset: int) -> list[int] | None:
    """Axes from the attribute (opset < 13) or the second input (opset >= 13)."""
    if opset < 13 and "axes" in node.attributes:
        return list(node.attributes["axes"].as_ints())
    return [int(a) for a in inputs[1]] if len(inputs) > 1 else None


def _unsqueeze(node: ir.Node, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    axes = _axes(node, inputs, opset)
    if axes is None:
        return None
    rank = inputs[0].ndim + len(axes)
    return np.expand_dims(inputs[0], tuple(sorted(a % rank for a in axes)))


def _squeeze(node: ir.Node, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    axes = _axes(node, inputs, opset)
    return np.squeeze(inputs[0]) if axes is None else np.squeeze(inputs[0], tuple(a % inputs[0].ndim for a in axes))


def _reshape(node: ir.Node, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    del opset
    shape = [int(d) for d in inputs[1]]
    allow_zero = "allowzero" in node.attributes and node.attributes["allowzero"].as_int() == 1
    if not allow_zero:
        shape = [inputs[0].shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return inputs[0].reshape(shape)


def _cast(node: ir.Node, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    del opset
    if "to" not in node.attributes:
        return None
    return inputs[0].astype(ir.DataType(node.attributes["to"].as_int()).numpy())


def _flatten(node: ir.Node, inputs: list[np.ndarray], opset: int) -> np.ndarray | None:
    del opset
    axis = node.attributes["axis"].as_int() if "axis" in node.attributes else 1
    axis %= max(inputs[0].ndim, 1) if axis < 0 else axis + 1
    rows = int(np.prod(inputs[0].shape[:axis]))
    return inputs[0].reshape(rows, -1)


FOLDERS: dict[str, _Folder] = {
    "Identity": lambda node, inputs, opset: inputs[0],
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Cast": _cast,
    "Flatten": _flatten,
}


def _constant_inputs(node: ir.Node) -> list[np.ndarray] | None:
    arrays = []
    for value in node.inputs:
        if value is None:
            continue
        if value.is_graph_input():  # an initializer that is also an input can be overridden at run time
            return None
        tensor = constant_tensor(value)
        if tensor is None:
            return None
        arrays.append(tensor.numpy())
    return arrays


def fold_constant_reshapes(model: ir.Model) -> int:
    """Replace main-graph shape-only nodes whose inputs are all constants by initializers; return how many."""
    graph, opset = model.graph, model.opset_imports.get("", 1)
    folded = 0
    for node in list(graph):
        folder = FOLDERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        if folder is None or len(node.outputs) != 1 or node.outputs[0].is_graph_output():
            continue
        inputs = _constant_inputs(node)
        array = folder(node, inputs, opset) if inputs else None
        if array is None:
            continue
        old = node.outputs[0]
        name = old.name or f"folded_{folded}"
        old.name = f"{name}__unfolded"
        value = ir.Value(name=name, const_value=ir.tensor(np.ascontiguousarray(array), name=name),
                         shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))
        graph.register_initializer(value)
        ir.convenience.replace_all_uses_with(old, value)
        sources = [v for v in node.inputs if v is not None]
        graph.remove(node, safe=True)
        _drop_dead_sources(graph, sources)
        folded += 1
    return folded


def _drop_dead_sources(graph: ir.Graph, values: list[ir.Value]) -> None:
    """Initializers and ``Constant`` nodes that only fed the folded node are dead now.

    Left in place, a dead initializer makes onnxruntime warn, and a dead ``Constant`` keeps a second copy of
    the folded data in the file (paddle2onnx exports store biases as ``Constant -> Reshape``).
    """
    for value in values:
        if value.uses() or value.is_graph_output():
            continue
        producer = value.producer()
        if value.name in graph.initializers:
            graph.initializers.pop(value.name)
        elif producer is not None and producer.graph is graph and producer.op_type == "Constant" \
                and producer.domain in ("", "ai.onnx"):
            graph.remove(producer, safe=True)

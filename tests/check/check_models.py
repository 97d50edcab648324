"""Tiny hand-built models for the check tests: a classifier and its broken variants, MatMul chains.

A uniquely named module rather than conftest.py, so test modules can import :class:`Models` for type
hints without depending on which ``conftest`` module Python cached first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IN_FEATURES = 8


def _save(model: onnx.ModelProto, path: Path) -> str:
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return str(path)


def _value(name: str, elem: int, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


@dataclass
class Models:
    """Writes models into a test's temporary folder and returns their paths."""

    root: Path

    def classifier(
        self,
        name: str = "reference.onnx",
        *,
        delta: float = 0.0,
        nan_bias: bool = False,
        width: int = 10,
        input_name: str = "x",
        input_type: int = TensorProto.FLOAT,
        runtime_error: bool = False,
    ) -> str:
        """Gemm classifier with three outputs: ``logits`` [N, width] (a score vector), ``norm``
        [N, 1] (float, last dim 1) and ``label`` [N] (int64, rank 1).

        ``delta`` is added to one weight; ``nan_bias`` puts NaN in one bias; ``runtime_error``
        appends a Reshape that only fails when the model runs.
        """
        rng = np.random.default_rng(0)
        weight = rng.standard_normal((IN_FEATURES, width)).astype(np.float32)
        bias = rng.standard_normal(width).astype(np.float32)
        weight[0, 3 % width] += delta
        if nan_bias:
            bias[2] = np.nan
        nodes = []
        source = input_name
        if input_type != TensorProto.FLOAT:
            nodes.append(helper.make_node("Cast", [input_name], ["x_float"], to=TensorProto.FLOAT))
            source = "x_float"
        logits = "gemm_out" if runtime_error else "logits"
        nodes += [
            helper.make_node("Gemm", [source, "W", "B"], [logits]),
            helper.make_node("ReduceSumSquare", [logits], ["norm"], axes=[1], keepdims=1),
            helper.make_node("ArgMax", [logits], ["label"], axis=1, keepdims=0),
        ]
        inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
        if runtime_error:
            nodes.append(helper.make_node("Reshape", ["gemm_out", "bad_shape"], ["logits"]))
            inits.append(numpy_helper.from_array(np.array([3, -1], np.int64), "bad_shape"))
        graph = helper.make_graph(
            nodes,
            "classifier",
            [_value(input_name, input_type, ["N", IN_FEATURES])],
            [
                _value("logits", TensorProto.FLOAT, ["N", width] if not runtime_error else [3, "M"]),
                _value("norm", TensorProto.FLOAT, ["N", 1]),
                _value("label", TensorProto.INT64, ["N"]),
            ],
            inits,
        )
        return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), self.root / name)

    def matmul_chain(self, name: str, layers: int, size: int = 256) -> str:
        """``layers`` MatMuls of [size, size] on input x [N, size] (0 layers: a single Relu)."""
        rng = np.random.default_rng(1)
        nodes, inits, current = [], [], "x"
        for i in range(layers):
            weight = (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
            inits.append(numpy_helper.from_array(weight, f"W{i}"))
            nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"h{i}"]))
            current = f"h{i}"
        nodes.append(helper.make_node("Relu", [current], ["y"]))
        graph = helper.make_graph(
            nodes,
            "chain",
            [_value("x", TensorProto.FLOAT, ["N", size])],
            [_value("y", TensorProto.FLOAT, ["N", size])],
            inits,
        )
        return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), self.root / name)

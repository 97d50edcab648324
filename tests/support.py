"""Shared test helpers: where the fixtures live, and tiny hand-built models for edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture_path(name: str) -> Path:
    return FIXTURES / f"{name}.onnx"


def gemm_model(seed: int = 0, in_features: int = 16, out_features: int = 10, opset: int = 17) -> onnx.ModelProto:
    """A one-layer classifier with a dynamic batch axis: enough to exercise I/O and data plumbing."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((out_features, in_features)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(out_features).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_features])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model

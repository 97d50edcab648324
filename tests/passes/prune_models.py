"""Tiny hand-built graphs and helpers shared by the pruning and clustering tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.weights import iter_weights


def load_fixture(name: str) -> ir.Model:
    return io.load(fixture_path(name))


def eval_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    base = name.split("_")[0] if name.startswith("lenet300") else name
    data = np.load(FIXTURES / f"{base}.test.npz")
    return data["input"], data["labels"]


def logits(model: ir.Model, name: str) -> np.ndarray:
    inputs, _ = eval_data(name)
    session = ort.InferenceSession(io.serialize(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": inputs})[0]


def accuracy(model: ir.Model, name: str) -> float:
    _, labels = eval_data(name)
    return float((logits(model, name).argmax(axis=1) == labels).mean())


def weights(model: ir.Model) -> dict[str, np.ndarray]:
    return {ref.name: ref.numpy().copy() for ref in iter_weights(model)}


def from_proto(proto: onnx.ModelProto) -> ir.Model:
    return ir.serde.deserialize_model(proto)


def _finish(graph: onnx.GraphProto, ir_version: int = 8, opset: int = 17) -> ir.Model:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return from_proto(model)


def shared_weight_model(seed: int = 0) -> ir.Model:
    """One weight read by two Gemms, once directly and once through an Identity alias, plus a MatMul."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["W"], ["W_alias"]),
            helper.make_node("Gemm", ["x", "W", "B"], ["h"], transB=1, name="g1"),
            helper.make_node("Gemm", ["h", "W_alias", "B"], ["y"], transB=1, name="g2"),
        ],
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        [weight, bias],
    )
    return _finish(graph)


def mixed_use_model() -> ir.Model:
    """A tensor that is a MatMul weight and also an Add operand: changing it would change the Add."""
    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "W"], ["y"])],
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 16])],
        [weight],
    )
    return _finish(graph)


def overridable_model() -> ir.Model:
    """IR 3 style: the MatMul weight is also a graph input, so its data is only a default."""
    rng = np.random.default_rng(2)
    weight = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "overridable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [weight],
    )
    return _finish(graph, ir_version=3, opset=9)


def layouts_model() -> ir.Model:
    """Gemm without transB ([K, N]), MatMul with a constant B, and a ConvTranspose, to test N:M axes."""
    rng = np.random.default_rng(3)
    gemm_w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "gemm_w")
    matmul_w = numpy_helper.from_array(rng.standard_normal((8, 12)).astype(np.float32), "matmul_w")
    deconv_w = numpy_helper.from_array(rng.standard_normal((8, 4, 2, 2)).astype(np.float32), "deconv_w")
    shape = numpy_helper.from_array(np.array([1, 8, 1, 1], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "gemm_w"], ["h"]),
            helper.make_node("MatMul", ["h", "matmul_w"], ["y"]),
            helper.make_node("Reshape", ["h", "shape"], ["h4"]),
            helper.make_node("ConvTranspose", ["h4", "deconv_w"], ["z"]),
        ],
        "layouts",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 2, 2])],
        [gemm_w, matmul_w, deconv_w, shape],
    )
    return _finish(graph)


def tied_model(size: int = 400) -> ir.Model:
    """A MatMul weight whose magnitudes are all equal: the count must still be exact."""
    values = np.where(np.arange(size * 4) % 2 == 0, 0.5, -0.5).astype(np.float32).reshape(size, 4)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tied",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(values, "W")],
    )
    return _finish(graph)


def save(model: ir.Model, path: Path) -> Path:
    io.save(model, path)
    return path


def loop_model(seed: int = 4) -> ir.Model:
    """A Loop whose body multiplies the state by a weight stored as a body initializer and a body Constant."""
    rng = np.random.default_rng(seed)
    body_weight = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "body_w")
    const_weight = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "const_w")
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["body_c"], value=const_weight),
            helper.make_node("MatMul", ["state_in", "body_w"], ["h"]),
            helper.make_node("MatMul", ["h", "body_c"], ["state_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, 16])],
        [body_weight],
    )
    trips = numpy_helper.from_array(np.array(2, dtype=np.int64), "trips")
    cond = numpy_helper.from_array(np.array(True), "cond")
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body, name="loop")],
        "looped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [trips, cond],
    )
    return _finish(graph)

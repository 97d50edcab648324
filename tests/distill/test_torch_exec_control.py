"""If in the interpreter: the branch is chosen on each feed, outer-scope weights are reached and trained."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("torch")

from onnxcomp.torch_exec.graph import TorchGraph

W_THEN = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
W_ELSE = -np.arange(12, dtype=np.float32).reshape(4, 3) / 5


def _branch(name: str, weight: str):
    return helper.make_graph([helper.make_node("MatMul", ["x", weight], [f"{name}_out"])], name, [],
                             [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])


def _if_model():
    """``x @ W_then`` when the sum of ``x`` is positive, else ``x @ W_else``: a condition only the feed decides."""
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["y"], then_branch=_branch("then", "w_then"),
                              else_branch=_branch("else", "w_else"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(W_THEN, "w_then"), numpy_helper.from_array(W_ELSE, "w_else"),
                               numpy_helper.from_array(np.array(0, np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_data_dependent_condition_picks_the_branch_per_feed(same, sign: float):
    x = sign * (np.arange(8, dtype=np.float32).reshape(2, 4) + 1)
    out = same(_if_model(), {"x": x})
    np.testing.assert_allclose(out["y"], x @ (W_THEN if sign > 0 else W_ELSE), rtol=1e-6)


def test_only_the_branch_taken_gets_gradients():
    graph = TorchGraph(ir.serde.deserialize_model(_if_model()))
    graph({"x": -np.ones((2, 4), np.float32)})["y"].sum().backward()
    grads = {w.ref.name: w.parameter.grad for w in graph.trainable}
    assert grads["w_then"] is None and grads["w_else"] is not None and bool(grads["w_else"].abs().sum() > 0)

"""Identity elimination keeps the Identity nodes a graph needs and removes the others."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from onnxcomp.identity import IdentityEliminationPass


def _if_model() -> onnx.ModelProto:
    """``If`` whose then-branch returns the outer ``x`` through an Identity (as spox writes silero-vad), and
    whose else-branch holds a removable Identity chain."""
    then_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["then_out"])], "then", [],
                                    [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [2])])
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["neg"]), helper.make_node("Identity", ["neg"], ["mid"]),
         helper.make_node("Identity", ["mid"], ["else_out"])], "else", [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch),
         helper.make_node("Identity", ["y"], ["z"])], "main",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])


def test_outer_scope_identity_is_kept_and_the_rest_removed() -> None:
    model = ir.serde.deserialize_model(_if_model())
    assert IdentityEliminationPass()(model).modified
    proto = ir.serde.serialize_model(model)
    ops = [n.op_type for n in proto.graph.node]
    branches = {a.name: [n.op_type for n in a.g.node] for a in proto.graph.node[0].attribute}
    assert ops == ["If"] and [o.name for o in proto.graph.output] == ["z"]
    assert branches == {"then_branch": ["Identity"], "else_branch": ["Neg"]}
    session = ort.InferenceSession(proto.SerializeToString())
    x = np.array([1.0, -2.0], np.float32)
    for cond, expected in ((True, x), (False, -x)):
        np.testing.assert_array_equal(session.run(None, {"cond": np.array(cond), "x": x})[0], expected)


def test_identity_from_an_input_to_an_output_is_kept() -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]))
    assert not IdentityEliminationPass()(model).modified

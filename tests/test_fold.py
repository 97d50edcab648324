"""Folding shape-only operations on constants: exact, leaves no dead initializers, respects overridable inputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxcomp.fold import fold_constant_reshapes


def _bn_as_mul_add(opset: int, overridable: bool = False) -> onnx.ModelProto:
    """x * Unsqueeze(gamma) + Unsqueeze(beta) on [N, 4, 3, 3], the way a Caffe2 export applies BatchNorm."""
    gamma = numpy_helper.from_array(np.arange(1, 5, dtype=np.float32), "gamma")
    beta = numpy_helper.from_array(np.full(4, 0.5, np.float32), "beta")
    inits = [gamma, beta]
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
        unsq = [helper.make_node("Unsqueeze", [name, "axes"], [f"{name}_u"]) for name in ("gamma", "beta")]
    else:
        unsq = [helper.make_node("Unsqueeze", [name], [f"{name}_u"], axes=[1, 2]) for name in ("gamma", "beta")]
    nodes = [*unsq, helper.make_node("Mul", ["x", "gamma_u"], ["m"]), helper.make_node("Add", ["m", "beta_u"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3, 3])]
    if overridable:
        inputs.append(helper.make_tensor_value_info("gamma", TensorProto.FLOAT, [4]))
    graph = helper.make_graph(nodes, "bn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_unsqueezed_constants_become_initializers_and_outputs_are_identical():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    for opset in (11, 17):
        proto = _bn_as_mul_add(opset)
        model = ir.from_proto(proto)
        assert fold_constant_reshapes(model) == 2
        assert [n.op_type for n in model.graph] == ["Mul", "Add"]
        assert set(model.graph.initializers) == {"gamma_u", "beta_u"}  # gamma, beta and axes were only feeding them
        assert model.graph.initializers["gamma_u"].const_value.shape == ir.Shape([4, 1, 1])
        np.testing.assert_array_equal(_run(ir.to_proto(model), x), _run(proto, x))


def test_initializers_that_are_graph_inputs_are_not_folded():
    """An IR<4 style initializer that is also an input can be fed at run time: it is not a constant."""
    model = ir.from_proto(_bn_as_mul_add(17, overridable=True))
    assert fold_constant_reshapes(model) == 1  # only beta's Unsqueeze
    assert "gamma" in model.graph.initializers


def test_shapes_computed_at_run_time_are_not_folded():
    """Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])): the batch comes from the input; folding it
    (or any node on that chain) would bake one input's size into the model."""
    inits = [numpy_helper.from_array(np.array(0, np.int64), "i0"), numpy_helper.from_array(np.array([0], np.int64),
                                                                                            "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "rest")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["b"]),
             helper.make_node("Unsqueeze", ["b", "axes"], ["bu"]),
             helper.make_node("Concat", ["bu", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    graph = helper.make_graph(nodes, "flat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 12])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = ir.from_proto(proto)
    assert fold_constant_reshapes(model) == 0
    assert [n.op_type for n in model.graph] == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]
    for batch in (1, 5):
        x = np.ones((batch, 4, 3), np.float32)
        assert _run(ir.to_proto(model), x).shape == (batch, 12)


def test_constant_nodes_that_only_fed_a_folded_node_are_removed():
    """paddle2onnx stores a bias as Constant -> Reshape: after folding, the Constant would be a second copy."""
    bias = np.arange(4, dtype=np.float32)
    nodes = [helper.make_node("Constant", [], ["b"], value=numpy_helper.from_array(bias)),
             helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.array([1, 4, 1, 1]))),
             helper.make_node("Reshape", ["b", "shape"], ["b4"]),
             helper.make_node("Add", ["x", "b4"], ["y"])]
    graph = helper.make_graph(nodes, "bias", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = ir.from_proto(proto)
    assert fold_constant_reshapes(model) == 1
    assert [n.op_type for n in model.graph] == ["Add"]
    assert model.graph.initializers["b4"].const_value.numpy().reshape(-1).tolist() == bias.tolist()
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(_run(ir.to_proto(model), x), _run(proto, x))

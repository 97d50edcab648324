"""Minification keeps every output bit-identical and every name a user or runtime relies on."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxcomp.passes.cleanup import CleanupConfig, CleanupPass
from support import FIXTURES

from onnxcomp import io
from onnxcomp.minify import minify
from onnxcomp.packing import pack

ALL_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.onnx"))


def _feed(session: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in session.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in arg.shape]
        if arg.type == "tensor(float)":
            feed[arg.name] = rng.random(shape, dtype=np.float32)
        else:
            feed[arg.name] = np.zeros(shape, dtype=np.int64)
    return feed


def _names(model: onnx.ModelProto) -> tuple[list[str], list[str], list[str]]:
    graph = model.graph
    return [v.name for v in graph.input], [v.name for v in graph.output], [t.name for t in graph.initializer]


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_minify_keeps_outputs_bit_identical_and_public_names(name: str):
    original = (FIXTURES / f"{name}.onnx").read_bytes()
    model = io.load(FIXTURES / f"{name}.onnx")
    report = minify(model)
    minified = io.serialize(model)
    before = ort.InferenceSession(original)
    after = ort.InferenceSession(minified)
    feed = _feed(before)
    for expected, actual in zip(before.run(None, feed), after.run(None, feed), strict=True):
        np.testing.assert_array_equal(actual, expected)
    assert _names(onnx.load_from_string(minified)) == _names(onnx.load_from_string(original))
    assert report.node_names > 0 and report.renamed_values > 0
    assert len(minified) < len(original)
    assert all(not node.name for node in onnx.load_from_string(minified).graph.node)


def test_minify_saves_bytes_of_a_packed_model_and_is_stable():
    model = io.load(FIXTURES / "lenet5.onnx")
    packed_before = len(pack(model))
    minify(model)
    once = io.serialize(model)
    assert len(pack(model)) < packed_before - 100  # names and defaults were ~a quarter of the graph section
    again = minify(model)
    assert io.serialize(model) == once
    assert not any(again.to_dict().values())  # nothing left to do, and the report says so


def test_minify_keeps_non_default_attributes_and_subgraph_references():
    """strides=2 stays, dilations=1 and group=1 go; a value read inside an If branch is renamed consistently."""
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", strides=[2, 2], dilations=[1, 1], group=1,
                            pads=[0, 0, 0, 0])
    then_graph = helper.make_graph([helper.make_node("Relu", ["c"], ["t"], name="relu")], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    else_graph = helper.make_graph([helper.make_node("Neg", ["c"], ["e"], name="neg")], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    branch = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_graph, else_branch=else_graph)
    weight = onnx.numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2) - 3.5, "w")
    graph = helper.make_graph(
        [conv, branch], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = ir.from_proto(proto)
    report = minify(model)
    result = onnx.load_from_string(io.serialize(model))
    attributes = {a.name for a in result.graph.node[0].attribute}
    assert attributes == {"strides"} and report.default_attributes == 3
    x = np.random.default_rng(0).random((1, 1, 6, 6), dtype=np.float32)
    before, after = ort.InferenceSession(proto.SerializeToString()), ort.InferenceSession(result.SerializeToString())
    for cond in (True, False):
        feed = {"x": x, "cond": np.array(cond)}
        np.testing.assert_array_equal(after.run(None, feed)[0], before.run(None, feed)[0])


def test_cleanup_minify_option_reports_what_went():
    model = io.load(FIXTURES / "lenet300.onnx")
    outcome = CleanupPass(CleanupConfig(minify=True))(model)
    assert outcome.report.summary["minified"]["node_names"] == 5
    plain = CleanupPass()(io.load(FIXTURES / "lenet300.onnx"))
    assert "minified" not in plain.report.summary

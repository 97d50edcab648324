"""The run-time check of a channel-removed model: feeds of every input shape, output shapes, exact values."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxcomp.passes import channel_removal
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass

from onnxcomp.channels.validate import RuntimeCheck, candidate_feeds
from onnxcomp.pass_base import PassFailedError


def _session(nodes: list, inits: list | None = None) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", 4])], inits or [])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


ORIGINAL = [helper.make_node("Relu", ["x"], ["y"])]
#: What a pass that baked the sequence length of one probe into a Reshape literal would hand back.
BAKED = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
BAKED_INITS = [numpy_helper.from_array(np.array([1, 5, 4], np.int64), "shape")]


def _feeds(*lengths: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((1, n, 4)).astype(np.float32)} for n in lengths]


def test_data_feeds_of_each_shape_and_a_tiled_one_are_checked() -> None:
    feeds = candidate_feeds(_session(ORIGINAL), _feeds(5, 5, 7, 9, 11))
    assert [f["x"].shape for f in feeds] == [(1, 5, 4), (1, 7, 4), (1, 9, 4), (1, 10, 4)]


def test_without_data_seeded_normal_floats_at_two_sizes_are_checked() -> None:
    feeds = candidate_feeds(_session(ORIGINAL), None)
    assert [f["x"].shape for f in feeds] == [(1, 1, 4), (1, 32, 4)]
    assert all(f["x"].dtype == np.float32 and f["x"].std() > 0.5 for f in feeds)  # zeros would hide wrong weights


def test_a_shape_baked_at_one_length_is_caught() -> None:
    check = RuntimeCheck.prepare(_session(ORIGINAL), _feeds(5, 7))
    assert check.problem(_session(ORIGINAL), exact=True) is None
    problem = check.problem(_session(BAKED, BAKED_INITS), exact=False)
    assert problem is not None and "fails on x [1, 7, 4]" in problem


def test_changed_values_fail_only_an_exact_removal() -> None:
    shifted = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "eps"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0.01, np.float32), "eps")]
    check = RuntimeCheck.prepare(_session(ORIGINAL), _feeds(5))
    assert check.problem(_session(shifted, inits), exact=False) is None
    problem = check.problem(_session(shifted, inits), exact=True)
    assert problem is not None and "output y changed by 0.01" in problem


def test_feeds_the_original_cannot_run_are_dropped() -> None:
    check = RuntimeCheck.prepare(_session(BAKED, BAKED_INITS), _feeds(5, 7))
    assert [f["x"].shape for f in check.feeds] == [(1, 5, 4)]


def test_pass_fails_naming_the_problem_when_its_result_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rewrite bug (simulated: the last layer's weight doubled after an exact removal) is an internal error."""
    w = np.ones((2, 3, 1, 1), np.float32)
    w[1] = 0  # filter 1 is zero: removed exactly
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
                               helper.make_node("Conv", ["r", "w2"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w2")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = ir.serde.deserialize_model(proto)
    real = channel_removal.rewrite_model

    def doubling(model: ir.Model, *args: object, **kwargs: object) -> None:
        real(model, *args, **kwargs)  # type: ignore[arg-type]
        weight = model.graph.outputs[0].producer().inputs[1]
        weight.const_value = ir.tensor(weight.const_value.numpy() * 2, name=weight.name)

    monkeypatch.setattr(channel_removal, "rewrite_model", doubling)
    with pytest.raises(PassFailedError, match="only exact removals were made"):
        ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)

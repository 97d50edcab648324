"""Shapes in channel removal: observed ones are sound and never handed back, run-time shapes stay run-time, and
graph inputs and outputs keep their declared types and shapes.

The first model reproduces ddddocr_rec's CRNN neck on a tiny scale: a stride-8 pooling over a dynamic width, then
a Reshape whose target is computed from ``Shape`` through a ``Mul`` (which ONNX's data propagation does not
follow, so its output shape is unknown and gets observed). Widths 1 and 2 both pool to one column: observing at
those sizes made the sequence length look static, and written as ``value_info`` that broke onnxruntime on real
widths.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass

from onnxcomp import io
from onnxcomp.channels.analyze import infer_shapes
from onnxcomp.channels.shapes import InputArg, probe_pairs, settle_shapes, tiled_feed, zero_feed

RNG = np.random.default_rng(0)


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _model(nodes: list, inputs: list, outputs: list, inits: list, opset: int = 13) -> ir.Model:
    proto = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    return ir.serde.deserialize_model(proto)


def _session(model: ir.Model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(io.serialize(model), opts, providers=["CPUExecutionProvider"])


def crnn_neck() -> ir.Model:
    """x [1, 1, 2, W] -> Conv(4) -> MaxPool /8 -> [T, 1, 4, 2] -> Reshape(computed) [T, 1, 8] -> MLP(5, 3).

    The Shape reads the Conv's channels (they stay); the MLP's hidden unit 2 is zero (removed exactly).
    """
    fc = RNG.standard_normal((8, 5)).astype(np.float32)
    fc[:, 2] = 0
    inits = [_init("w", RNG.standard_normal((4, 1, 1, 1)).astype(np.float32)),
             _init("b", RNG.standard_normal(4).astype(np.float32)), _init("fc", fc),
             _init("fc2", RNG.standard_normal((5, 3)).astype(np.float32)),
             _init("i0", np.array(0, np.int64)), _init("i2", np.array(2, np.int64)),
             _init("i3", np.array(3, np.int64)), _init("one", np.array([1], np.int64)),
             _init("ax0", np.array([0], np.int64))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[1, 8], strides=[1, 8], ceil_mode=1),
             helper.make_node("Transpose", ["p"], ["t"], perm=[3, 0, 1, 2]),
             helper.make_node("Shape", ["t"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["g0"]),
             helper.make_node("Gather", ["s", "i2"], ["g2"]),
             helper.make_node("Gather", ["s", "i3"], ["g3"]),
             helper.make_node("Mul", ["g2", "g3"], ["gm"]),
             helper.make_node("Unsqueeze", ["g0", "ax0"], ["u0"]),
             helper.make_node("Unsqueeze", ["gm", "ax0"], ["um"]),
             helper.make_node("Concat", ["u0", "one", "um"], ["target"], axis=0),
             helper.make_node("Reshape", ["t", "target"], ["r"]),
             helper.make_node("MatMul", ["r", "fc"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "fc2"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, "W"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, 3])], inits)


def _value(model: ir.Model, name: str) -> ir.Value:
    return next(v for node in model.graph for v in node.outputs if v.name == name)


def test_observed_sequence_length_stays_dynamic() -> None:
    model = crnn_neck()
    infer_shapes(model)
    shape = _value(model, "r").shape
    assert shape is not None and shape[1:] == (1, 8)
    assert not isinstance(shape[0], int)  # widths 32 and 64 pool to 4 and 8 columns; widths 1 and 2 both to 1


def test_observed_dynamic_dims_get_symbols_of_their_own() -> None:
    model = crnn_neck()
    infer_shapes(model)
    names = [str(d) for node in model.graph for v in node.outputs if v.shape is not None for d in v.shape
             if str(d).startswith("observed_")]
    assert names and len(names) == len(set(names))


def test_result_carries_no_observed_shape_and_runs_on_every_width() -> None:
    model = crnn_neck()
    original = _session(model)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    assert result.report.summary["zero_channels_removed"] == 1
    proto = ir.serde.serialize_model(result.model)
    infos = {v.name: v.type.tensor_type.shape.dim for v in proto.graph.value_info}
    assert not any(d.dim_param.startswith("observed_") for dims in infos.values() for d in dims)
    assert not any(d.HasField("dim_value") for d in infos.get("r", [])[:1])  # the sequence length is not baked
    pruned = _session(result.model)
    for width in (8, 40, 81):
        x = RNG.standard_normal((1, 1, 2, width)).astype(np.float32)
        expected = original.run(None, {"x": x})[0]
        got = pruned.run(None, {"x": x})[0]
        assert got.shape == expected.shape == (-(-width // 8), 1, 3)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_graph_inputs_and_outputs_keep_declared_types_and_shapes() -> None:
    """Shape inference would 'refine' a declared output [1, seqlen] to [1, 3]; an int32 input stays int32."""
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    w[:, 1] = 0  # hidden unit 1 is zero: removed exactly
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["xf", "w"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "w2"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.INT32, ["N", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seqlen"])],
                   [_init("w", w), _init("w2", RNG.standard_normal((3, 3)).astype(np.float32))])
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    assert result.report.summary["zero_channels_removed"] == 1
    x, y = result.model.graph.inputs[0], result.model.graph.outputs[0]
    assert x.dtype == ir.DataType.INT32 and [str(d) for d in x.shape] == ["N", "4"]
    assert y.dtype == ir.DataType.FLOAT and [str(d) for d in y.shape] == ["1", "seqlen"]


def test_settle_shapes_replaces_observed_shapes_by_onnx_inference() -> None:
    model = crnn_neck()
    infer_shapes(model)
    assert _value(model, "r").shape is not None
    settle_shapes(model)
    assert _value(model, "r").shape is None  # ONNX cannot infer it; the observation is not a fact of the model
    assert _value(model, "t").shape is not None
    assert [str(d) for d in model.graph.outputs[0].shape] == ["T", "1", "3"]


def test_probe_feeds_double_every_dynamic_dim() -> None:
    inputs = [InputArg("ids", np.dtype(np.int32), (None, None)), InputArg("sr", np.dtype(np.int64), ())]
    zeros = zero_feed(inputs, 32)
    assert zeros is not None and zeros["ids"].shape == (32, 32) and zeros["ids"].dtype == np.int32
    feed = {"ids": np.arange(6, dtype=np.int32).reshape(1, 6), "sr": np.array(16000)}
    tiled = tiled_feed(feed, inputs)
    assert tiled is not None
    assert tiled["ids"].tolist() == [[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]] * 2
    assert int(tiled["sr"]) == 16000
    assert tiled_feed({"sr": np.array(1)}, inputs[1:]) is None  # nothing dynamic: no second probe


def attention_computed_shapes() -> tuple[ir.Model, dict[str, np.ndarray]]:
    """2 heads of width 4 over [1, seq, 8]; split/merge targets computed from Shape (as exporters do); head 1
    has zero Q, K and V columns (uniform scores, zero values): removed exactly."""
    w = {t: RNG.standard_normal((8, 8)).astype(np.float32) for t in "qkv"}
    w["o"] = RNG.standard_normal((8, 3)).astype(np.float32)
    for t in "qkv":
        w[t][:, 4:] = 0
    inits = [*(_init(k, v) for k, v in w.items()), _init("i0", np.array([0], np.int64)),
             _init("i1", np.array([1], np.int64)), _init("heads", np.array([2, 4], np.int64)),
             _init("width", np.array([8], np.int64))]
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
             helper.make_node("Gather", ["s", "i1"], ["n"], axis=0),
             helper.make_node("Concat", ["b", "n", "heads"], ["split"], axis=0),
             helper.make_node("Concat", ["b", "n", "width"], ["merge"], axis=0),
             *[helper.make_node("MatMul", ["x", t], [f"{t}1"]) for t in "qkv"],
             *[helper.make_node("Reshape", [f"{t}1", "split"], [f"{t}2"]) for t in "qkv"],
             helper.make_node("Transpose", ["q2"], ["q3"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["k2"], ["k3"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["v2"], ["v3"], perm=[0, 2, 1, 3]),
             helper.make_node("MatMul", ["q3", "k3"], ["sc"]),
             helper.make_node("Softmax", ["sc"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v3"], ["h"]),
             helper.make_node("Transpose", ["h"], ["h2"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["h2", "merge"], ["m"]),
             helper.make_node("MatMul", ["m", "o"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "seq", 3])], inits)
    return model, w


def test_computed_head_reshape_targets_stay_computed_at_run_time() -> None:
    model, _ = attention_computed_shapes()
    original = _session(model)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    assert result.report.summary["zero_channels_removed"] == 1  # one head (a class of 4 united columns)
    reshapes = [n for n in result.model.graph if n.op_type == "Reshape"]
    assert len(reshapes) == 4
    for node in reshapes:
        target = node.inputs[1]
        assert target.const_value is None and target.producer() is not None
        assert target.producer().op_type == "Concat"
    pruned = _session(result.model)
    for seq in (1, 5, 70):
        x = RNG.standard_normal((1, seq, 8)).astype(np.float32)
        expected = original.run(None, {"x": x})[0]
        got = pruned.run(None, {"x": x})[0]
        assert got.shape == (1, seq, 3)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_probe_pairs_start_from_the_real_feed_and_skip_oversized_zeros() -> None:
    inputs = [InputArg("x", np.dtype(np.float32), (None, 3, 224, 224))]
    pairs = list(probe_pairs(inputs, {"x": np.ones((1, 3, 224, 224), np.float32)}))
    batches = [(a["x"].shape[0], b["x"].shape[0]) for a, b in pairs]
    assert batches == [(1, 2), (8, 16), (1, 2)]  # 64 images of 224 x 224 are past MAX_PROBE_ELEMENTS
    assert pairs[0][0]["x"].all() and not pairs[1][0]["x"].any()

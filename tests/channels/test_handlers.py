"""Per-handler tests on tiny hand-built graphs: the rewritten model runs, its weights and shape attributes
have the reduced sizes, and its output matches a numpy reference of the model.

The removed channels are made exactly zero by hand (zero filters, biases and BN gamma/beta), so the reduced
model computes the same function as the original: a numpy forward of the original weights is the reference
for the pruned model, and any mis-sliced weight, Split size, ``group`` or Reshape literal shows up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
from channel_support import run
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass

from onnxcomp.channels.graph import constant_array

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _from_proto(proto: onnx.ModelProto):
    import onnx_ir as ir

    proto.ir_version = 8
    return ir.serde.deserialize_model(proto)


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, pad: int = 0, group: int = 1) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N, C, H, W, kh, kw
    per = w.shape[0] // group
    outs = [np.einsum("nchwij,ocij->nohw", windows[:, g * w.shape[1]:(g + 1) * w.shape[1]], w[g * per:(g + 1) * per])
            for g in range(group)]
    out = np.concatenate(outs, axis=1)
    return out if b is None else out + b[None, :, None, None]


def _bn(x: np.ndarray, g, b, m, v, eps: float = 1e-5) -> np.ndarray:
    shape = (1, -1, 1, 1)
    return (x - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps) * g.reshape(shape) + b.reshape(shape)


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _zero(weights: dict[str, np.ndarray], name: str, axis: int, index: list[int]) -> None:
    np.moveaxis(weights[name], axis, 0)[index] = 0


def _weight(model, op_type: str, occurrence: int = 0, index: int = 1) -> np.ndarray:
    nodes = [n for n in model.graph if n.op_type == op_type]
    return constant_array(nodes[occurrence].inputs[index])


# --------------------------------------------------------------------------------------------- cases


def case_conv_bn() -> tuple:
    w = {"w1": _w(8, 3, 3, 3), "b1": _w(8), "g": _w(8), "beta": _w(8), "m": _w(8), "v": np.abs(_w(8)) + 0.5,
         "w2": _w(4, 8, 1, 1)}
    for name in ("w1", "b1", "g", "beta"):
        _zero(w, name, 0, [1, 5])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "g", "beta", "m", "v"], ["n1"], name="bn"),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2")]

    def ref(x: np.ndarray) -> np.ndarray:
        return _conv(_relu(_bn(_conv(x, w["w1"], w["b1"], 1), w["g"], w["beta"], w["m"], w["v"])), w["w2"])

    def check(model) -> None:
        assert _weight(model, "Conv").shape == (6, 3, 3, 3)
        assert _weight(model, "Conv", 1).shape == (4, 6, 1, 1)
        assert _weight(model, "BatchNormalization", 0, 4).shape == (6,)

    return nodes, w, [2, 3, 6, 6], [2, 4, 6, 6], ref, check


def case_depthwise() -> tuple:
    w = {"w1": _w(8, 3, 1, 1), "dw": _w(8, 1, 3, 3), "w2": _w(4, 8, 1, 1)}
    _zero(w, "w1", 0, [2, 3])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="expand"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "dw"], ["d"], group=8, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("Conv", ["d", "w2"], ["y"], name="project")]

    def ref(x: np.ndarray) -> np.ndarray:
        return _conv(_conv(_relu(_conv(x, w["w1"])), w["dw"], pad=1, group=8), w["w2"])

    def check(model) -> None:
        dw = next(n for n in model.graph if n.name == "dw")
        assert dw.attributes["group"].value == 6
        assert _weight(model, "Conv", 1).shape == (6, 1, 3, 3)

    return nodes, w, [2, 3, 5, 5], [2, 4, 5, 5], ref, check


def case_split_concat() -> tuple:
    w = {"w1": _w(8, 3, 1, 1), "sizes": np.array([4, 4], np.int64), "w2": _w(4, 8, 1, 1)}
    _zero(w, "w1", 0, [1, 6])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]),
             helper.make_node("Split", ["c1", "sizes"], ["a", "b"], axis=1, name="split"),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Concat", ["b", "ra"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w2"], ["y"])]

    def ref(x: np.ndarray) -> np.ndarray:
        c1 = _conv(x, w["w1"])
        return _conv(np.concatenate([c1[:, 4:], _relu(c1[:, :4])], axis=1), w["w2"])

    def check(model) -> None:
        split = next(n for n in model.graph if n.op_type == "Split")
        assert constant_array(split.inputs[1]).tolist() == [3, 3]
        assert _weight(model, "Conv", 1).shape == (4, 6, 1, 1)

    return nodes, w, [2, 3, 4, 4], [2, 4, 4, 4], ref, check


def case_flatten_gemm() -> tuple:
    w = {"w1": _w(4, 3, 1, 1), "b1": _w(4), "fc": _w(5, 16), "fb": _w(5)}
    _zero(w, "w1", 0, [2])
    _zero(w, "b1", 0, [2])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Flatten", ["r1"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1)]

    def ref(x: np.ndarray) -> np.ndarray:
        return _relu(_conv(x, w["w1"], w["b1"])).reshape(len(x), -1) @ w["fc"].T + w["fb"]

    def check(model) -> None:
        assert _weight(model, "Gemm").shape == (5, 12)

    return nodes, w, [2, 3, 2, 2], [2, 5], ref, check


def case_reshape_literal() -> tuple:
    w = {"w1": _w(4, 3, 1, 1), "shape": np.array([-1, 16], np.int64), "fc": _w(16, 5)}
    _zero(w, "w1", 0, [1])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]),
             helper.make_node("Reshape", ["c1", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]

    def ref(x: np.ndarray) -> np.ndarray:
        return _conv(x, w["w1"]).reshape(-1, 16) @ w["fc"]

    def check(model) -> None:
        reshape = next(n for n in model.graph if n.op_type == "Reshape")
        assert constant_array(reshape.inputs[1]).tolist() == [-1, 12]
        assert _weight(model, "MatMul").shape == (12, 5)

    return nodes, w, [2, 3, 2, 2], [2, 5], ref, check


def case_residual_add() -> tuple:
    w = {"w1": _w(8, 3, 1, 1), "w2": _w(8, 8, 3, 3), "w3": _w(4, 8, 1, 1)}
    _zero(w, "w1", 0, [3])
    _zero(w, "w2", 0, [3])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c1", "c2"], ["s"]),
             helper.make_node("Conv", ["s", "w3"], ["y"])]

    def ref(x: np.ndarray) -> np.ndarray:
        c1 = _conv(x, w["w1"])
        return _conv(c1 + _conv(_relu(c1), w["w2"], pad=1), w["w3"])

    def check(model) -> None:
        assert _weight(model, "Conv").shape == (7, 3, 1, 1)
        assert _weight(model, "Conv", 1).shape == (7, 7, 3, 3)
        assert _weight(model, "Conv", 2).shape == (4, 7, 1, 1)

    return nodes, w, [2, 3, 4, 4], [2, 4, 4, 4], ref, check


def case_attention_heads() -> tuple:
    """4 heads of width 4; head 2's Q, K, V columns are zero: its scores are uniform and its values zero."""
    w = {"q": _w(16, 16), "k": _w(16, 16), "v": _w(16, 16), "o": _w(16, 8),
         "split": np.array([0, 0, 4, 4], np.int64), "merge": np.array([0, 0, 16], np.int64)}
    for name in ("q", "k", "v"):
        _zero(w, name, 1, list(range(8, 12)))
    nodes = [helper.make_node("MatMul", ["x", "q"], ["q1"]), helper.make_node("MatMul", ["x", "k"], ["k1"]),
             helper.make_node("MatMul", ["x", "v"], ["v1"]),
             *[helper.make_node("Reshape", [f"{t}1", "split"], [f"{t}2"]) for t in "qkv"],
             helper.make_node("Transpose", ["q2"], ["q3"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["k2"], ["k3"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["v2"], ["v3"], perm=[0, 2, 1, 3]),
             helper.make_node("MatMul", ["q3", "k3"], ["s"]),
             helper.make_node("Softmax", ["s"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v3"], ["h"]),
             helper.make_node("Transpose", ["h"], ["h2"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["h2", "merge"], ["m"]),
             helper.make_node("MatMul", ["m", "o"], ["y"])]

    def ref(x: np.ndarray) -> np.ndarray:
        q, k, v = ((x @ w[t]).reshape(len(x), 5, 4, 4).transpose(0, 2, 1, 3) for t in "qkv")
        s = q @ k.transpose(0, 1, 3, 2)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return (p @ v).transpose(0, 2, 1, 3).reshape(len(x), 5, 16) @ w["o"]

    def check(model) -> None:
        reshapes = [constant_array(n.inputs[1]).tolist() for n in model.graph if n.op_type == "Reshape"]
        assert reshapes == [[0, 0, 3, 4]] * 3 + [[0, 0, 12]]
        assert _weight(model, "MatMul").shape == (16, 12)
        assert _weight(model, "MatMul", 5).shape == (12, 8)

    return nodes, w, ["batch", 5, 16], ["batch", 5, 8], ref, check


CASES: dict[str, Callable[[], tuple]] = {
    "conv_bn": case_conv_bn, "depthwise": case_depthwise, "split_concat": case_split_concat,
    "flatten_gemm": case_flatten_gemm, "reshape_literal": case_reshape_literal, "residual_add": case_residual_add,
    "attention_heads": case_attention_heads,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_handler_rewrites_match_numpy_reference(name: str) -> None:
    nodes, weights, x_shape, y_shape, ref, check = CASES[name]()
    model = _from_proto(helper.make_model(
        helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                          [onnx.numpy_helper.from_array(v, k) for k, v in weights.items()]),
        opset_imports=[helper.make_opsetid("", 17)]))
    shape = [2 if isinstance(d, str) else d for d in x_shape]
    x = RNG.standard_normal(shape).astype(np.float32)
    expected = ref(x)
    np.testing.assert_allclose(run(model, x), expected, rtol=1e-4, atol=1e-4)  # the reference is right
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    assert result.report.summary["zero_channels_removed"] > 0
    check(result.model)
    np.testing.assert_allclose(run(result.model, x), expected, rtol=1e-4, atol=1e-4)

"""Tests for onnxcomp.weights: finding weights in every storage kind and replacing them.

Models are built by hand with onnx.helper; every replacement is checked end to end by
serializing the IR model, validating it with the ONNX checker and running it in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcomp.weights import WeightRef, constant_tensor, dtype_name, iter_graphs, iter_weights

OPSET = 17
RNG = np.random.default_rng(0)


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def _vi(name: str, elem: int, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(graph: onnx.GraphProto, opset: int = OPSET, ir_version: int = 8) -> ir.Model:
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    onnx.checker.check_model(proto, full_check=True)
    return ir.serde.deserialize_model(proto)


def _run(model: ir.Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Serialize, check and run in onnxruntime: proves the stored data is what runs."""
    proto = ir.to_proto(model)
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(feeds))


def _by_name(model: ir.Model) -> dict[str, WeightRef]:
    return {ref.name: ref for ref in iter_weights(model)}


# --------------------------------------------------------------------------- model builders

W_CONV, B_CONV = _rand(4, 2, 3, 3), _rand(4)
W_GEMM, B_GEMM = _rand(3, 100), _rand(3)


def conv_gemm_model() -> ir.Model:
    """x[1,2,5,5] -> Conv(pad 1) -> Flatten -> Gemm(transB) -> y[1,3]."""
    nodes = [
        helper.make_node("Conv", ["x", "w_conv", "b_conv"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w_gemm", "b_gemm"], ["y"], name="gemm", transB=1),
    ]
    inits = [
        _init("w_conv", W_CONV),
        _init("b_conv", B_CONV),
        _init("w_gemm", W_GEMM),
        _init("b_gemm", B_GEMM),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_gemm",
        [_vi("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [_vi("y", TensorProto.FLOAT, [1, 3])],
        inits,
    )
    return _model(graph)


def conv_gemm_reference(x: np.ndarray, w_conv: np.ndarray, w_gemm: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))  # [1,2,5,5,3,3]
    conv = np.einsum("ncijkl,ockl->noij", windows, w_conv) + B_CONV[None, :, None, None]
    return conv.reshape(1, -1) @ w_gemm.T + B_GEMM


W_CONST, B_CONST = _rand(3, 4), _rand(4)


def constant_model() -> ir.Model:
    """Weights in Constant nodes of every dense kind: value, value_floats, value_float, value_ints, value_int.

    y = Gather(Reshape((x @ W + b) * s, shape), index)  with x[2,3] -> [2,4] -> [4,2] -> row.
    """
    nodes = [
        helper.make_node("Constant", [], ["W"], name="cW", value=_init("W", W_CONST)),
        helper.make_node("Constant", [], ["b"], name="cb", value_floats=B_CONST.tolist()),
        helper.make_node("Constant", [], ["s"], name="cs", value_float=2.0),
        helper.make_node("Constant", [], ["shape"], name="cshape", value_ints=[4, 2]),
        helper.make_node("Constant", [], ["index"], name="cindex", value_int=1),
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b"], ["xwb"], name="add"),
        helper.make_node("Mul", ["xwb", "s"], ["scaled"], name="mul"),
        helper.make_node("Reshape", ["scaled", "shape"], ["r"], name="reshape"),
        helper.make_node("Gather", ["r", "index"], ["y"], name="gather", axis=0),
    ]
    graph = helper.make_graph(
        nodes, "constants", [_vi("x", TensorProto.FLOAT, [2, 3])], [_vi("y", TensorProto.FLOAT, [2])]
    )
    return _model(graph)


def constant_reference(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, s: float, shape, index: int
) -> np.ndarray:
    return (((x @ w) + b) * s).reshape(shape)[index]


W_THEN, W_ELSE, B_OUTER = _rand(3, 4), _rand(3, 4), _rand(4)


def if_model() -> ir.Model:
    """If with a then-branch initializer, an else-branch Constant, and an outer weight captured by name."""
    then_branch = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w_then"], ["t"], name="then_matmul"),
            helper.make_node("Add", ["t", "b_outer"], ["y_then"], name="then_add"),
        ],
        "then",
        [],
        [_vi("y_then", TensorProto.FLOAT, [2, 4])],
        [_init("w_then", W_THEN)],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w_else"], name="else_const", value=_init("w_else", W_ELSE)),
            helper.make_node("MatMul", ["x", "w_else"], ["y_else"], name="else_matmul"),
        ],
        "else",
        [],
        [_vi("y_else", TensorProto.FLOAT, [2, 4])],
    )
    node = helper.make_node(
        "If", ["cond"], ["y"], name="If_3", then_branch=then_branch, else_branch=else_branch
    )
    graph = helper.make_graph(
        [node],
        "if_model",
        [_vi("x", TensorProto.FLOAT, [2, 3]), _vi("cond", TensorProto.BOOL, [])],
        [_vi("y", TensorProto.FLOAT, [2, 4])],
        [_init("b_outer", B_OUTER)],
    )
    return _model(graph)


W_LOOP = _rand(4, 4) * 0.5


def loop_model(trips: int = 3) -> ir.Model:
    """h <- h @ W_loop + 1, `trips` times; W_loop is a body initializer, the 1 a body Constant."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
            helper.make_node("Constant", [], ["one"], name="body_one", value_float=1.0),
            helper.make_node("MatMul", ["h_in", "w_loop"], ["hw"], name="body_matmul"),
            helper.make_node("Add", ["hw", "one"], ["h_out"], name="body_add"),
        ],
        "body",
        [
            _vi("i", TensorProto.INT64, []),
            _vi("cond_in", TensorProto.BOOL, []),
            _vi("h_in", TensorProto.FLOAT, [1, 4]),
        ],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("h_out", TensorProto.FLOAT, [1, 4])],
        [_init("w_loop", W_LOOP)],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "", "h0"], ["h"], name="Loop_1", body=body)],
        "loop_model",
        [_vi("h0", TensorProto.FLOAT, [1, 4])],
        [_vi("h", TensorProto.FLOAT, [1, 4])],
        [_init("M", np.array(trips, dtype=np.int64))],
    )
    return _model(graph)


def loop_reference(h: np.ndarray, w: np.ndarray, trips: int = 3) -> np.ndarray:
    for _ in range(trips):
        h = h @ w + 1.0
    return h


W_SHARED = _rand(3, 3)


def shared_model() -> ir.Model:
    """One weight read by two MatMuls."""
    nodes = [
        helper.make_node("MatMul", ["x1", "w"], ["y1"], name="mm1"),
        helper.make_node("MatMul", ["x2", "w"], ["y2"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [_vi("x1", TensorProto.FLOAT, [2, 3]), _vi("x2", TensorProto.FLOAT, [5, 3])],
        [_vi("y1", TensorProto.FLOAT, [2, 3]), _vi("y2", TensorProto.FLOAT, [5, 3])],
        [_init("w", W_SHARED)],
    )
    return _model(graph)


W_OLD = _rand(3, 2)


def old_style_model() -> ir.Model:
    """IR 3 model: the initializer is also listed as a graph input (a user-overridable default)."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "old",
        [_vi("x", TensorProto.FLOAT, [1, 3]), _vi("w", TensorProto.FLOAT, [3, 2])],
        [_vi("y", TensorProto.FLOAT, [1, 2])],
        [_init("w", W_OLD)],
    )
    return _model(graph, opset=8, ir_version=3)


# --------------------------------------------------------------------------- discovery


def test_initializers_are_found_with_metadata() -> None:
    refs = _by_name(conv_gemm_model())
    assert list(refs) == ["w_conv", "b_conv", "w_gemm", "b_gemm"]
    w = refs["w_conv"]
    assert (w.storage, w.subgraph_path, w.node, w.overridable, w.in_subgraph) == (
        "initializer",
        "",
        None,
        False,
        False,
    )
    assert (w.shape, w.size, w.nbytes, dtype_name(w.dtype)) == ((4, 2, 3, 3), 72, 288, "float32")
    np.testing.assert_array_equal(w.numpy(), W_CONV)
    assert [(node.name, index) for node, index in w.consumers()] == [("conv", 1)]


def test_constant_nodes_of_every_dense_kind() -> None:
    refs = _by_name(constant_model())
    assert {name: ref.attribute for name, ref in refs.items()} == {
        "W": "value",
        "b": "value_floats",
        "s": "value_float",
        "shape": "value_ints",
        "index": "value_int",
    }
    assert all(ref.storage == "constant" and ref.node is not None for ref in refs.values())
    assert [(n, refs[n].shape, dtype_name(refs[n].dtype)) for n in refs] == [
        ("W", (3, 4), "float32"),
        ("b", (4,), "float32"),
        ("s", (), "float32"),
        ("shape", (2,), "int64"),
        ("index", (), "int64"),
    ]
    np.testing.assert_array_equal(refs["b"].numpy(), B_CONST)
    assert refs["s"].numpy() == np.float32(2.0)
    assert refs["shape"].numpy().tolist() == [4, 2]
    assert refs["index"].nbytes == 8
    assert [node.name for node, _ in refs["W"].consumers()] == ["matmul"]


def test_if_branches_are_walked_with_paths() -> None:
    model = if_model()
    refs = _by_name(model)
    # onnx.helper sorts attributes by name, so else_branch comes first.
    assert list(refs) == ["b_outer", "w_else", "w_then"]
    assert (refs["w_then"].storage, refs["w_then"].subgraph_path) == ("initializer", "If_3/then_branch")
    assert (refs["w_else"].storage, refs["w_else"].subgraph_path) == ("constant", "If_3/else_branch")
    assert refs["w_then"].graph is not model.graph and refs["w_then"].in_subgraph
    # The outer weight is consumed inside the then branch, captured by name.
    assert [(node.name, index) for node, index in refs["b_outer"].consumers()] == [("then_add", 1)]
    assert [ref.name for ref in iter_weights(model, include_subgraphs=False)] == ["b_outer"]


def test_loop_body_weights() -> None:
    refs = _by_name(loop_model())
    assert list(refs) == ["M", "w_loop", "one"]
    assert refs["w_loop"].subgraph_path == "Loop_1/body"
    assert refs["one"].storage == "constant" and refs["one"].subgraph_path == "Loop_1/body"


def test_shared_weight_is_yielded_once_with_both_consumers() -> None:
    refs = list(iter_weights(shared_model()))
    assert [ref.name for ref in refs] == ["w"]
    assert sorted(node.name for node, _ in refs[0].consumers()) == ["mm1", "mm2"]


def test_old_style_initializer_input_is_overridable() -> None:
    (ref,) = iter_weights(old_style_model())
    assert ref.overridable and ref.storage == "initializer"
    assert ref.skip_reason is not None and "graph input" in ref.skip_reason
    assert next(iter_weights(conv_gemm_model())).skip_reason is None


def test_consumers_through_identity_alias() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["w"], ["w_alias"], name="alias"),
            helper.make_node("MatMul", ["x", "w"], ["y1"], name="mm1"),
            helper.make_node("MatMul", ["x", "w_alias"], ["y2"], name="mm2"),
        ],
        "alias",
        [_vi("x", TensorProto.FLOAT, [2, 3])],
        [_vi("y1", TensorProto.FLOAT, [2, 3]), _vi("y2", TensorProto.FLOAT, [2, 3])],
        [_init("w", W_SHARED)],
    )
    (ref,) = iter_weights(_model(graph))
    assert sorted(n.name for n, _ in ref.consumers()) == ["alias", "mm1"]
    assert sorted(n.name for n, _ in ref.consumers(through_identity=True)) == ["mm1", "mm2"]


def test_iter_graphs_paths_and_constant_tensor() -> None:
    model = if_model()
    assert [path for _, path in iter_graphs(model.graph)] == ["", "If_3/else_branch", "If_3/then_branch"]
    unnamed = loop_model()
    unnamed.graph[0].name = ""
    assert [path for _, path in iter_graphs(unnamed.graph)] == ["", "Loop[0]/body"]
    cmodel = constant_model()
    values = {v.name: v for node in cmodel.graph for v in node.outputs}
    assert constant_tensor(values["shape"]).numpy().tolist() == [4, 2]  # type: ignore[union-attr]
    assert constant_tensor(values["xw"]) is None
    assert constant_tensor(None) is None


# --------------------------------------------------------------------------- replace


def test_replace_initializer_runs_in_onnxruntime() -> None:
    model = conv_gemm_model()
    refs = _by_name(model)
    new_conv = W_CONV.copy()
    new_conv[0] = 0.0
    new_gemm = -W_GEMM
    refs["w_conv"].replace(new_conv)
    refs["w_gemm"].replace(new_gemm)
    new_conv[1] = 99.0  # the ref copied the data: later edits by the caller do not leak in
    x = _rand(1, 2, 5, 5)
    (y,) = _run(model, {"x": x})
    new_conv[1] = W_CONV[1]
    np.testing.assert_allclose(y, conv_gemm_reference(x, new_conv, new_gemm), rtol=1e-4, atol=1e-4)
    assert refs["w_conv"].numpy()[0].sum() == 0.0


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("W", W_CONST * 3),
        ("b", np.arange(4, dtype=np.float32)),
        ("s", np.array(-0.5, dtype=np.float32)),
        ("shape", np.array([2, 4], dtype=np.int64)),
        ("index", np.array(0, dtype=np.int64)),
    ],
)
def test_replace_constant_kinds_runs_in_onnxruntime(name: str, new: np.ndarray) -> None:
    model = constant_model()
    ref = _by_name(model)[name]
    attribute = ref.attribute
    ref.replace(new)
    assert ref.attribute == attribute and attribute in ref.node.attributes  # type: ignore[union-attr]
    np.testing.assert_array_equal(_by_name(model)[name].numpy(), new)
    args = {"w": W_CONST, "b": B_CONST, "s": 2.0, "shape": (4, 2), "index": 1}
    key = {"W": "w"}.get(name, name)
    args[key] = new if name in ("W", "b") else new.item() if new.ndim == 0 else tuple(new.tolist())
    x = _rand(2, 3)
    (y,) = _run(model, {"x": x})
    np.testing.assert_allclose(y, constant_reference(x, **args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cond", [True, False])
def test_replace_in_if_branches_runs_in_onnxruntime(cond: bool) -> None:
    model = if_model()
    refs = _by_name(model)
    refs["w_then"].replace(W_THEN * 2)
    refs["w_else"].replace(np.zeros_like(W_ELSE))
    refs["b_outer"].replace(B_OUTER + 1)
    x = _rand(2, 3)
    (y,) = _run(model, {"x": x, "cond": np.array(cond)})
    expected = x @ (W_THEN * 2) + (B_OUTER + 1) if cond else np.zeros((2, 4), np.float32)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_replace_in_loop_body_runs_in_onnxruntime() -> None:
    model = loop_model()
    refs = _by_name(model)
    refs["w_loop"].replace(np.eye(4, dtype=np.float32) * 0.5)
    refs["one"].replace(np.array(3.0, dtype=np.float32))
    h0 = _rand(1, 4)
    (h,) = _run(model, {"h0": h0})
    expected = h0
    for _ in range(3):
        expected = expected * 0.5 + 3.0
    np.testing.assert_allclose(h, expected, rtol=1e-5)


def test_unchanged_models_run_like_numpy() -> None:
    """Guards the builders: the references above really describe the models."""
    x = _rand(2, 3)
    (y,) = _run(constant_model(), {"x": x})
    np.testing.assert_allclose(y, constant_reference(x, W_CONST, B_CONST, 2.0, (4, 2), 1), rtol=1e-5)
    h0 = _rand(1, 4)
    (h,) = _run(loop_model(), {"h0": h0})
    np.testing.assert_allclose(h, loop_reference(h0, W_LOOP), rtol=1e-4)


def test_replace_saved_and_reloaded(tmp_path) -> None:
    model = shared_model()
    (ref,) = iter_weights(model)
    ref.replace(np.eye(3, dtype=np.float32))
    path = tmp_path / "shared.onnx"
    ir.save(model, path)
    reloaded = onnx.load(path)
    np.testing.assert_array_equal(numpy_helper.to_array(reloaded.graph.initializer[0]), np.eye(3))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x1, x2 = _rand(2, 3), _rand(5, 3)
    y1, y2 = session.run(None, {"x1": x1, "x2": x2})
    np.testing.assert_allclose(y1, x1, rtol=1e-6)
    np.testing.assert_allclose(y2, x2, rtol=1e-6)


def test_replace_rejects_dtype_and_shape_changes() -> None:
    refs = _by_name(constant_model())
    with pytest.raises(ValueError, match="float32, replacement is float64"):
        refs["W"].replace(W_CONST.astype(np.float64))
    with pytest.raises(ValueError, match=r"shape \[3, 4\], replacement has \[4, 3\]"):
        refs["W"].replace(W_CONST.T)
    with pytest.raises(ValueError, match="int64, replacement is int32"):
        refs["shape"].replace(np.array([4, 2], dtype=np.int32))
    with pytest.raises(ValueError, match="shape"):
        refs["s"].replace(np.array([1.0], dtype=np.float32))

"""Tests for onnxcomp.summary: exact weight accounting, sparsity and hand-computed MACs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcomp.errors import InputError
from onnxcomp.summary import ModelSummary, render_text, summarize
from onnxcomp.weights import iter_weights

OPSET = 17
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
MANIFEST = FIXTURES / "manifest.json"


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name)


def _ones(name: str, *shape: int, dtype: type = np.float32) -> TensorProto:
    return _init(name, np.ones(shape, dtype=dtype))


def _vi(name: str, shape: list[int | str] | None, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _model(graph: onnx.GraphProto, *, opsets: dict[str, int] | None = None, **kwargs: Any) -> ir.Model:
    imports = [helper.make_opsetid(d, v) for d, v in (opsets or {"": OPSET}).items()]
    proto = helper.make_model(graph, opset_imports=imports, **kwargs)
    return ir.serde.deserialize_model(proto)


def _macs(summary: ModelSummary) -> dict[str, int | None]:
    return {entry.name: entry.macs for entry in summary.macs}


# --------------------------------------------------------------------------- MACs


def mac_model() -> ir.Model:
    """Grouped strided Conv -> grouped ConvTranspose -> Gemm(transB); batched and 1-D MatMuls."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "w_conv"], ["c"], name="conv", group=2, pads=[1, 1, 1, 1], strides=[2, 2]
        ),  # [N,4,7,7] -> [N,6,4,4]
        helper.make_node("ConvTranspose", ["c", "w_convt"], ["ct"], name="convt", group=3, strides=[2, 2]),
        helper.make_node("Flatten", ["ct"], ["f"], name="flatten"),  # [N, 384]
        helper.make_node("Gemm", ["f", "w_gemm", "b_gemm"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["a", "b"], ["ab"], name="batched"),  # [2,1,4,6] x [3,6,5]
        helper.make_node("MatMul", ["v", "w_vec"], ["vw"], name="vector"),  # [6] x [6,5]
    ]
    inits = [
        _ones("w_conv", 6, 2, 3, 3),
        _ones("w_convt", 6, 2, 2, 2),
        _ones("w_gemm", 10, 384),
        _ones("b_gemm", 10),
        _ones("w_vec", 6, 5),
    ]
    graph = helper.make_graph(
        nodes,
        "macs",
        [_vi("x", ["N", 4, 7, 7]), _vi("a", [2, 1, 4, 6]), _vi("b", [3, 6, 5]), _vi("v", [6])],
        [_vi("g", ["N", 10]), _vi("ab", None), _vi("vw", None)],
        inits,
    )
    return _model(graph)


def test_macs_hand_computed_at_batch_1() -> None:
    summary = summarize(mac_model())
    conv = 1 * 6 * (4 * 4) * (4 // 2) * (3 * 3)  # N·Cout·out spatial·Cin/group·kernel
    convt = 1 * 6 * (4 * 4) * (6 // 3) * (2 * 2)  # N·Cin·in spatial·Cout/group·kernel
    gemm = 1 * 10 * 384  # M·N·K
    batched = (2 * 3) * 4 * 5 * 6  # broadcast batch·M·N·K
    vector = 1 * 5 * 6
    assert _macs(summary) == {
        "conv": conv,
        "convt": convt,
        "gemm": gemm,
        "batched": batched,
        "vector": vector,
    }
    assert summary.macs_total == conv + convt + gemm + batched + vector == 7086
    assert summary.macs_known == 1.0
    assert summary.macs_input_shapes["x"] == [1, 4, 7, 7]


def test_macs_follow_given_input_shapes() -> None:
    summary = summarize(mac_model(), {"x": [3, 4, 7, 7]})
    macs = _macs(summary)
    assert (macs["conv"], macs["convt"], macs["gemm"]) == (3 * 1728, 3 * 768, 3 * 3840)
    assert summary.macs_total == 3 * (1728 + 768 + 3840) + 720 + 30


def sequence_model() -> ir.Model:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
        "seq",
        [_vi("x", ["batch", "seq", 8])],
        [_vi("y", ["batch", "seq", 16])],
        [_ones("w", 8, 16)],
    )
    return _model(graph)


def test_unknown_dims_give_unknown_macs_with_reason() -> None:
    summary = summarize(sequence_model())
    (entry,) = summary.macs
    assert entry.macs is None and entry.reason is not None and "seq" in entry.reason
    assert (summary.macs_total, summary.macs_known) == (0, 0.0)
    assert summary.macs_input_shapes == {"x": [1, "seq", 8]}
    assert any("'seq'" in note for note in summary.notes)

    resolved = summarize(sequence_model(), {"x": [2, 5, 8]})
    assert (resolved.macs_total, resolved.macs_known, resolved.notes) == (2 * 5 * 8 * 16, 1.0, [])


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"y": [1, 5, 8]}, "unknown input"),
        ({"x": [1, 8]}, "rank 3"),
        ({"x": [1, 5, 9]}, "fixed at 8"),
        ({"x": [0, 5, 8]}, "positive"),
    ],
)
def test_bad_input_shapes_are_input_errors(shapes: dict[str, list[int]], message: str) -> None:
    with pytest.raises(InputError, match=message):
        summarize(sequence_model(), shapes)


def if_model() -> ir.Model:
    """then: one MatMul (24 MACs); else: two MatMuls (48 + 64) with a Constant weight."""
    then_branch = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w_then"], ["y_then"], name="then_mm")],
        "then",
        [],
        [_vi("y_then", [2, 4])],
        [_ones("w_then", 3, 4)],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Constant", [], ["w1"], name="else_c", value=_ones("w1", 3, 8)),
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="else_mm1"),
            helper.make_node("MatMul", ["h", "w2"], ["y_else"], name="else_mm2"),
        ],
        "else",
        [],
        [_vi("y_else", [2, 4])],
        [_ones("w2", 8, 4)],
    )
    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["cond"], ["y"], name="If_0", then_branch=then_branch, else_branch=else_branch
            )
        ],
        "if_model",
        [_vi("x", [2, 3]), _vi("cond", [], TensorProto.BOOL)],
        [_vi("y", [2, 4])],
    )
    return _model(graph)


def test_if_counts_its_most_expensive_branch_and_subgraph_weights() -> None:
    summary = summarize(if_model())
    assert _macs(summary) == {"else_mm1": 48, "else_mm2": 64, "then_mm": 24}
    assert {e.name: e.subgraph_path for e in summary.macs}["then_mm"] == "If_0/then_branch"
    assert summary.macs_total == 48 + 64
    subgraph = summary.weights_by_storage["subgraph"]
    assert (subgraph.tensors, subgraph.params, subgraph.bytes) == (3, 12 + 24 + 32, 4 * (12 + 24 + 32))
    assert (
        summary.weights_by_storage["initializer"].tensors
        == summary.weights_by_storage["constant"].tensors
        == 0
    )
    assert {e.name: e.storage for e in summary.tensors} == {
        "w2": "initializer",
        "w1": "constant",
        "w_then": "initializer",
    }
    assert (summary.nodes_main, summary.nodes_total) == (1, 5)
    assert summary.op_histogram == {"MatMul": 3, "Constant": 1, "If": 1}


def loop_model(trips_as_input: bool = False) -> ir.Model:
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "w_loop"], ["h_out"], name="body_mm"),
        ],
        "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL), _vi("h_in", [1, 4])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("h_out", [1, 4])],
        [_ones("w_loop", 4, 4)],
    )
    inputs = [_vi("h0", [1, 4])]
    inits = [_ones("w_loop_unused_outer", 2)]
    if trips_as_input:
        inputs.append(_vi("M", [], TensorProto.INT64))
    else:
        inits.append(_init("M", np.array(3, dtype=np.int64)))
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "", "h0"], ["h"], name="Loop_1", body=body)],
        "loop",
        inputs,
        [_vi("h", [1, 4])],
        inits,
    )
    return _model(graph)


def test_loop_body_macs_times_constant_trip_count() -> None:
    summary = summarize(loop_model())
    assert _macs(summary) == {"body_mm": 16}
    assert summary.macs_total == 3 * 16
    assert summary.weights_by_storage["subgraph"].params == 16


def test_loop_with_runtime_trip_count_is_left_out_with_a_note() -> None:
    summary = summarize(loop_model(trips_as_input=True))
    assert _macs(summary) == {"body_mm": 16} and summary.macs_total == 0
    assert any("Loop_1" in note and "trip count" in note for note in summary.notes)


def test_scan_body_macs_times_scanned_length() -> None:
    """Scan over 5 rows of [1,4]: each step adds row @ W (16 MACs) to the state."""
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["row", "w_scan"], ["t"], name="scan_mm"),
            helper.make_node("Add", ["s_in", "t"], ["s_out"], name="scan_add"),
        ],
        "scan_body",
        [_vi("s_in", [1, 4]), _vi("row", [1, 4])],
        [_vi("s_out", [1, 4])],
        [_ones("w_scan", 4, 4)],
    )
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "xs"], ["s"], name="Scan_0", body=body, num_scan_inputs=1)],
        "scan",
        [_vi("s0", [1, 4]), _vi("xs", [5, 1, 4])],
        [_vi("s", [1, 4])],
    )
    summary = summarize(_model(graph))
    assert _macs(summary) == {"scan_mm": 16}
    assert summary.macs_total == 5 * 16


# --------------------------------------------------------------------------- weights


def mixed_model() -> ir.Model:
    """Initializers and Constant nodes of several dtypes, with auxiliary shape/scalar tensors.

    out = Reshape((x @ W + b), shape) * s + DequantizeLinear(q, scale, zp)
    """
    nodes = [
        helper.make_node("Constant", [], ["b"], name="cb", value_floats=[1.0, 2.0, 3.0, 4.0]),
        helper.make_node("Constant", [], ["shape"], name="cshape", value_ints=[4, 2]),
        helper.make_node("Constant", [], ["s"], name="cs", value_float=0.5),
        helper.make_node("MatMul", ["x", "W"], ["xw"], name="mm"),
        helper.make_node("Add", ["xw", "b"], ["xwb"], name="add"),
        helper.make_node("Reshape", ["xwb", "shape"], ["r"], name="reshape"),
        helper.make_node("Mul", ["r", "s"], ["rs"], name="mul"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"], name="dq"),
        helper.make_node("Add", ["rs", "dq"], ["out"], name="add_dq"),
    ]
    inits = [
        _init("W", np.arange(1, 17, dtype=np.float32).reshape(4, 4)),
        _init("q", np.arange(1, 9, dtype=np.int8).reshape(4, 2)),
        _init("scale", np.array(0.1, dtype=np.float32)),
        _init("zp", np.array(0, dtype=np.int8)),
    ]
    graph = helper.make_graph(nodes, "mixed", [_vi("x", ["batch", 4])], [_vi("out", [4, 2])], inits)
    return _model(graph, opsets={"": OPSET}, producer_name="hand", producer_version="1.0")


def _stats(summary: ModelSummary, group: str, key: str | None = None) -> tuple[int, ...]:
    stats = getattr(summary, group) if key is None else getattr(summary, group)[key]
    return (stats.tensors, stats.param_tensors, stats.elements, stats.params, stats.bytes)


def test_weight_totals_by_dtype_and_storage() -> None:
    summary = summarize(mixed_model())
    # W 16 f32, b 4 f32, q 8 int8 are parameters; shape (int64[2]) and the scalars s, scale, zp are auxiliary.
    assert _stats(summary, "weights") == (7, 3, 33, 28, 64 + 16 + 8 + 16 + 4 + 4 + 1)
    assert summary.params == 28
    assert _stats(summary, "weights_by_dtype", "float32") == (4, 2, 22, 20, 64 + 16 + 4 + 4)
    assert _stats(summary, "weights_by_dtype", "int64") == (1, 0, 2, 0, 16)
    assert _stats(summary, "weights_by_dtype", "int8") == (2, 1, 9, 8, 9)
    assert _stats(summary, "weights_by_storage", "initializer") == (4, 2, 26, 24, 64 + 8 + 4 + 1)
    assert _stats(summary, "weights_by_storage", "constant") == (3, 1, 7, 4, 16 + 16 + 4)
    assert _stats(summary, "weights_by_storage", "subgraph") == (0, 0, 0, 0, 0)
    assert [(e.name, e.storage, e.shape, e.dtype, e.consumers) for e in summary.tensors] == [
        ("W", "initializer", [4, 4], "float32", ["MatMul"]),
        ("q", "initializer", [4, 2], "int8", ["DequantizeLinear"]),
        ("b", "constant", [4], "float32", ["Add"]),
    ]
    assert {e.name: e.zeros for e in summary.tensors} == {"W": 0, "q": None, "b": 0}


def test_sparsity_after_zeroing_known_elements() -> None:
    model = mixed_model()
    refs = {ref.name: ref for ref in iter_weights(model)}
    w = refs["W"].numpy().copy()
    w.reshape(-1)[[0, 3, 5, 10, 15]] = 0.0
    refs["W"].replace(w)
    refs["b"].replace(np.array([0.0, 2.0, 3.0, 4.0], dtype=np.float32))
    refs["s"].replace(np.array(0.0, dtype=np.float32))  # auxiliary: not part of sparsity
    summary = summarize(model)
    assert (summary.sparsity.float_params, summary.sparsity.zeros) == (20, 6)
    assert summary.sparsity.fraction == pytest.approx(6 / 20)
    assert {e.name: e.zeros_fraction for e in summary.tensors} == {"W": 5 / 16, "q": None, "b": 1 / 4}


def test_header_fields_and_custom_domain_histogram() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Foo", ["r"], ["y"], name="foo", domain="com.example"),
        ],
        "custom",
        [_vi("x", ["batch", 3])],
        [_vi("y", None)],
    )
    model = _model(graph, opsets={"": OPSET, "com.example": 1}, producer_name="me", producer_version="2")
    summary = summarize(model)
    assert summary.opset_imports == {"ai.onnx": OPSET, "com.example": 1}
    assert (summary.default_opset, summary.producer_name, summary.producer_version) == (OPSET, "me", "2")
    assert summary.op_histogram == {"Relu": 1, "com.example::Foo": 1}
    assert [(i.name, i.dtype, i.shape) for i in summary.inputs] == [("x", "float32", ["batch", 3])]
    assert [(o.name, o.dtype, o.shape) for o in summary.outputs] == [("y", "float32", None)]
    assert (summary.macs, summary.macs_total, summary.macs_known) == ([], 0, 1.0)


def test_old_style_initializer_inputs_are_not_model_inputs() -> None:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "old",
        [_vi("x", [1, 3]), _vi("w", [3, 2])],
        [_vi("y", [1, 2])],
        [_ones("w", 3, 2)],
    )
    summary = summarize(_model(graph, opsets={"": 8}, ir_version=3))
    assert [i.name for i in summary.inputs] == ["x"]
    assert summary.overridable_weights == ["w"]
    assert summary.ir_version == 3 and summary.macs_total == 6
    with pytest.raises(InputError, match="unknown input"):
        summarize(_model(graph, opsets={"": 8}, ir_version=3), {"w": [3, 2]})


def test_large_initializers_are_shape_only_for_inference() -> None:
    """Weights above the data limit travel as typed inputs; MACs and the model are unaffected."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "big",
        [_vi("x", ["batch", 64])],
        [_vi("y", ["batch", 300])],
        [_ones("w", 64, 300)],
    )
    model = _model(graph)
    before = ir.to_proto(model).SerializeToString()
    summary = summarize(model)
    assert summary.macs_total == 64 * 300
    assert ir.to_proto(model).SerializeToString() == before


def _only_plain(obj: Any) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _only_plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_only_plain(v) for v in obj)
    return obj is None or type(obj) in (int, float, str, bool)


def test_to_dict_is_plain_json() -> None:
    data = summarize(mixed_model(), {"x": [2, 4]}).to_dict()
    assert _only_plain(data)
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {
        "ir_version", "producer_name", "producer_version", "opset_imports", "default_opset",
        "inputs", "outputs", "nodes_main", "nodes_total", "op_histogram",
        "weights", "weights_by_dtype", "weights_by_storage", "overridable_weights",
        "sparsity", "tensors", "macs_total", "macs_known", "macs", "macs_input_shapes", "notes",
    }  # fmt: skip
    assert set(data["weights"]) == {"tensors", "param_tensors", "elements", "params", "bytes"}
    assert data["macs"] == [{"name": "mm", "op": "MatMul", "subgraph_path": "", "macs": 32, "reason": None}]
    assert data["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}]
    assert data["macs_input_shapes"] == {"x": [2, 4]}


def test_render_text_mentions_the_essentials() -> None:
    text = render_text(summarize(mac_model()))
    assert "MACs: 7,086 (5/5 nodes known) at x=[1, 4, 7, 7]" in text
    assert "ops: " in text and "ConvTranspose 1" in text
    assert "largest 5 weight tensors:" in text and "w_gemm" in text
    assert text.splitlines()[0].startswith("model: IR ")


# --------------------------------------------------------------------------- fixtures

# Conv/Gemm MACs at batch 1 on 8x8 digits, layer by layer from fixtures/build.py.
FIXTURE_MACS = {
    "lenet300": 64 * 300 + 300 * 100 + 100 * 10,
    "lenet5": 6 * 64 * 1 * 9 + 16 * 16 * 6 * 9 + 64 * 120 + 120 * 84 + 84 * 10,
    "resnet": (
        16 * 64 * 9  # stem
        + 2 * 16 * 64 * 16 * 9  # layer1
        + 32 * 16 * 16 * 9
        + 32 * 16 * 32 * 9
        + 32 * 16 * 16  # layer2 (+1x1 shortcut)
        + 64 * 4 * 32 * 9
        + 64 * 4 * 64 * 9
        + 64 * 4 * 32  # layer3 (+1x1 shortcut)
        + 64 * 10
    ),
    "mobilenetv2": (
        16 * 64 * 9
        + 16 * 64 * 9
        + 16 * 64 * 16  # IR(16,16,e1): depthwise, project
        + 64 * 64 * 16
        + 64 * 16 * 9
        + 24 * 16 * 64  # IR(16,24,s2,e4)
        + 96 * 16 * 24
        + 96 * 16 * 9
        + 24 * 16 * 96  # IR(24,24,e4)
        + 16 * 16 * 24
        + 24 * 16 * 9
        + 16 * 16 * 24  # TwoBranch
        + 128 * 16 * 32
        + 128 * 16 * 9
        + 32 * 16 * 128  # IR(32,32,e4)
        + 128 * 16 * 32
        + 128 * 10
    ),
    "yolo_block": 16 * 64 * 9
    + 32 * 16 * 16 * 9
    + 32 * 16 * 32
    + 4 * 16 * 16 * 16 * 9
    + 32 * 16 * 64
    + 32 * 10,
    "transformer": 8 * 8 * 32 + 2 * (4 * 8 * 32 * 32 + 2 * 4 * 8 * 8 * 8 + 2 * 8 * 32 * 64) + 32 * 10,
}
FIXTURE_MACS["lenet5_opset11"] = FIXTURE_MACS["lenet5"]
FIXTURE_MACS["lenet300_constants"] = FIXTURE_MACS["lenet300"]
FIXTURE_MACS["lenet300_if"] = FIXTURE_MACS["lenet300"]  # one branch runs

LENET300_PARAMS = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
# BatchNorm channels per model: ONNX stores running mean and var on top of the torch parameters.
BN_CHANNELS = {
    "resnet": [16, 16, 16, 32, 32, 32, 64, 64, 64],
    "mobilenetv2": [16, 16, 16, 64, 64, 24, 96, 96, 24, 16, 24, 16, 128, 128, 32, 128],
    "yolo_block": [16, 32, 32, 16, 16, 16, 16, 32],
}


def _manifest() -> dict[str, Any]:
    if not MANIFEST.exists():
        pytest.skip(f"{MANIFEST} is absent: fixtures not built (python fixtures/build.py)")
    return json.loads(MANIFEST.read_text())["models"]


def _identity_aliased_elements(path: Path) -> int:
    """Elements of initializers the exporter deduplicated (stored once, re-exposed via Identity)."""
    graph = onnx.load(str(path)).graph
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    return sum(sizes.get(n.input[0], 0) for n in graph.node if n.op_type == "Identity")


@pytest.mark.parametrize("name", sorted(FIXTURE_MACS))
def test_fixture_params_and_macs(name: str) -> None:
    entry = _manifest().get(name)
    if entry is None:
        pytest.skip(f"fixture {name} is not in the manifest")
    path = FIXTURES / entry["file"]
    summary = summarize(ir.load(path))
    copies = 2 if name == "lenet300_if" else 1  # both If branches hold a full MLP
    expected = copies * entry["params"]
    if name in BN_CHANNELS:
        expected += 2 * sum(BN_CHANNELS[name]) - _identity_aliased_elements(path)
    assert summary.params == expected
    assert summary.macs_total == FIXTURE_MACS[name]
    assert summary.macs_known == 1.0
    assert sum(summary.op_histogram.values()) == sum(entry["ops"].values()) == summary.nodes_total


def test_lenet300_variants_store_the_same_mlp() -> None:
    manifest = _manifest()
    assert manifest["lenet300"]["params"] == LENET300_PARAMS == 50_610
    storage = {}
    for name in ("lenet300", "lenet300_constants", "lenet300_if"):
        summary = summarize(ir.load(FIXTURES / manifest[name]["file"]))
        storage[name] = {k: v.params for k, v in summary.weights_by_storage.items()}
        assert summary.macs_total == 50_200
    assert storage == {
        "lenet300": {"initializer": LENET300_PARAMS, "constant": 0, "subgraph": 0},
        "lenet300_constants": {"initializer": 0, "constant": LENET300_PARAMS, "subgraph": 0},
        "lenet300_if": {"initializer": 0, "constant": 0, "subgraph": 2 * LENET300_PARAMS},
    }

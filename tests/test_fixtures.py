"""Checks that the checked-in fixtures (built by fixtures/build.py) are what the manifest says.

Other tests and benchmarks trust these files to be real trained models with particular graph
features (BN kept, depthwise convs, Split/Concat, If subgraphs, ...); a silent change in how they
were exported would make those tests pass for the wrong reason. No torch here: the test
environment only has onnx, onnxruntime and numpy.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
MODELS: dict[str, dict] = MANIFEST["models"]
BN_MODELS = ["resnet", "mobilenetv2", "yolo_block"]


@cache
def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(FIXTURES / MODELS[name]["file"]))


@cache
def data(file: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / file) as npz:
        return {key: npz[key] for key in npz.files}


@cache
def ort_logits(name: str) -> np.ndarray:
    """onnxruntime logits for the model's whole test split (cached: several tests need them)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(FIXTURES / MODELS[name]["file"]), opts, providers=["CPUExecutionProvider"])
    return sess.run([MODELS[name]["output"]], {MODELS[name]["input"]: data(MODELS[name]["test"])["input"]})[0]


def op_types(graph: onnx.GraphProto) -> list[str]:
    return [node.op_type for node in graph.node]


def main_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_manifest_lists_every_fixture() -> None:
    expected = {
        "lenet300",
        "lenet5",
        "resnet",
        "mobilenetv2",
        "yolo_block",
        "transformer",
        "lenet5_opset11",
        "lenet300_constants",
        "lenet300_if",
    }
    assert set(MODELS) == expected
    assert MANIFEST["dataset"] == "sklearn digits"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_is_valid_and_small(name: str) -> None:
    path = FIXTURES / MODELS[name]["file"]
    model = load(name)
    onnx.checker.check_model(model, full_check=True)
    assert path.stat().st_size < 1_000_000
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert main_opset(model) == MODELS[name]["opset"]
    assert [i.name for i in model.graph.input] == [MODELS[name]["input"]]
    assert [o.name for o in model.graph.output] == [MODELS[name]["output"]]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_accuracy_matches_manifest(name: str) -> None:
    labels = data(MODELS[name]["test"])["labels"]
    acc = float((ort_logits(name).argmax(axis=1) == labels).mean())
    assert acc == pytest.approx(MODELS[name]["test_accuracy"], abs=1e-6)
    assert acc >= 0.9


@pytest.mark.parametrize("name", sorted(MODELS))
def test_data_files_fit_the_model(name: str) -> None:
    entry = MODELS[name]
    model_dims = entry["input_shape"][1:]
    calib, test = data(entry["calib"]), data(entry["test"])
    assert calib["input"].shape == (256, *model_dims)
    assert calib["labels"].shape == (256,)
    assert test["input"].shape[1:] == tuple(model_dims)
    assert test["labels"].shape == (test["input"].shape[0],)
    for split in (calib, test):
        assert split["input"].dtype == np.float32
        assert split["labels"].dtype == np.int64
        assert split["input"].min() >= 0.0 and split["input"].max() <= 1.0


@pytest.mark.parametrize("name", BN_MODELS)
def test_batchnorm_kept_in_inference_form(name: str) -> None:
    bns = [n for n in load(name).graph.node if n.op_type == "BatchNormalization"]
    assert bns, "the exporter folded BatchNorm into Conv"
    assert all(len(n.output) == 1 for n in bns)


def test_mobilenetv2_has_depthwise_conv_and_concat() -> None:
    graph = load("mobilenetv2").graph
    groups = [
        onnx.helper.get_attribute_value(a)
        for n in graph.node
        if n.op_type == "Conv"
        for a in n.attribute
        if a.name == "group"
    ]
    assert any(g > 1 for g in groups)
    assert "Concat" in op_types(graph)


def test_yolo_block_has_split_concat_and_silu() -> None:
    graph = load("yolo_block").graph
    ops = op_types(graph)
    assert "Split" in ops or "Slice" in ops
    assert "Concat" in ops
    sigmoid_outputs = {n.output[0] for n in graph.node if n.op_type == "Sigmoid"}
    assert sigmoid_outputs
    assert any(n.op_type == "Mul" and sigmoid_outputs.intersection(n.input) for n in graph.node)


def test_transformer_has_attention_ops() -> None:
    ops = op_types(load("transformer").graph)
    assert "LayerNormalization" in ops
    assert "Softmax" in ops
    assert "MatMul" in ops


def test_lenet5_opset11_is_opset11() -> None:
    assert main_opset(load("lenet5_opset11")) == 11


def test_constants_variant_has_no_initializers() -> None:
    graph = load("lenet300_constants").graph
    assert len(graph.initializer) == 0
    assert op_types(graph).count("Constant") >= 6


def test_if_variant_keeps_weights_in_branches() -> None:
    graph = load("lenet300_if").graph
    assert len(graph.initializer) == 0
    ifs = [n for n in graph.node if n.op_type == "If"]
    assert len(ifs) == 1
    branches = {a.name: a.g for a in ifs[0].attribute if a.type == onnx.AttributeProto.GRAPH}
    assert set(branches) == {"then_branch", "else_branch"}
    for branch in branches.values():
        assert len(branch.initializer) == 6
        assert "Gemm" in op_types(branch)


@pytest.mark.parametrize("name", ["lenet300_constants", "lenet300_if"])
def test_variants_compute_lenet300(name: str) -> None:
    np.testing.assert_allclose(ort_logits(name), ort_logits("lenet300"), rtol=0, atol=1e-5)


STRUCTURAL: dict[str, dict] = MANIFEST.get("structural", {})


def test_structural_fixtures_are_listed() -> None:
    expected = {f"{base}{suffix}" for base in ("yolo_detect", "bert_encoder", "mlp_flatten", "mlp_reshape", "wide_cnn")
                for suffix in ("", "_opset11")}
    assert set(STRUCTURAL) == expected


@pytest.mark.parametrize("name", sorted(STRUCTURAL))
def test_structural_fixture_is_valid_small_and_runs(name: str) -> None:
    entry = STRUCTURAL[name]
    path = FIXTURES / entry["file"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert path.stat().st_size < 1_000_000
    assert main_opset(model) == entry["opset"]
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    assert ops == entry["ops"]
    x = np.random.default_rng(0).random((3, *entry["input_shape"][1:]), dtype=np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run([entry["output"]], {entry["input"]: x})
    assert list(out.shape) == [3, *entry["output_shape"]]


def test_structural_fixtures_have_the_advertised_structure() -> None:
    def ops(name: str) -> set[str]:
        return {n.op_type for n in onnx.load(str(FIXTURES / STRUCTURAL[name]["file"])).graph.node}

    assert {"Split", "Concat", "Sigmoid", "Mul", "Reshape", "BatchNormalization"} <= ops("yolo_detect")
    assert {"LayerNormalization", "Softmax", "Erf", "MatMul"} <= ops("bert_encoder")
    assert "LayerNormalization" not in ops("bert_encoder_opset11")  # decomposed before opset 17
    assert {"Flatten", "Gemm"} <= ops("mlp_flatten")
    assert "Flatten" not in ops("mlp_reshape") and "Reshape" in ops("mlp_reshape")
    assert {"Conv", "BatchNormalization", "MaxPool", "GlobalAveragePool"} <= ops("wide_cnn")

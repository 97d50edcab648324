"""The int8 QDQ pass on every fixture, the accuracy budget, subgraph/Constant weights and the target check."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.data import input_specs, open_data
from onnxcomp.pass_base import PassContext
from onnxcomp.session import create_session, run_named

ALL = ["lenet300", "lenet5", "lenet5_opset11", "resnet", "mobilenetv2", "yolo_block", "transformer",
       "lenet300_constants", "lenet300_if"]


def _data(model: ir.Model, npz: str, batch: int = 64):
    return open_data(str(FIXTURES / npz), input_specs(model), batch_size=batch)


def _quantize(model: ir.Model, calib: str, **options):
    options.setdefault("measure_target", False)
    options.setdefault("progress", False)
    return QuantizePass(QuantizeConfig(**options), PassContext(_data(model, calib)))(model)


def _accuracy(model: ir.Model, test: str) -> float:
    arrays = np.load(FIXTURES / test)
    logits = run_named(create_session(io.serialize(model)), {"input": arrays["input"]})["logits"]
    return float((logits.argmax(-1) == arrays["labels"]).mean())


def _ops(graph: ir.Graph) -> list[str]:
    return [node.op_type for node in ir.traversal.RecursiveGraphIterator(graph)]


@pytest.mark.parametrize("name", ALL)
def test_every_fixture_quantizes_and_keeps_accuracy(name: str, manifest: dict) -> None:
    entry = manifest["models"][name]
    model = io.load(fixture_path(name))
    result = _quantize(model, entry["calib"])
    assert result.modified
    assert result.report.weight_bytes_after < 0.5 * result.report.weight_bytes_before
    accuracy = _accuracy(result.model, entry["test"])
    assert accuracy >= entry["test_accuracy"] - 0.012, (name, accuracy)
    assert "DequantizeLinear" in _ops(result.model.graph)


def test_opset11_is_upgraded_for_per_channel_weights() -> None:
    model = io.load(fixture_path("lenet5_opset11"))
    result = _quantize(model, "lenet5.calib.npz")
    assert result.report.summary["opset_before"] == 11
    assert result.model.graph.opset_imports[""] == 13
    axes = [n.attributes["axis"].as_int() for n in result.model.graph
            if n.op_type == "DequantizeLinear" and "axis" in n.attributes]
    assert axes  # per-channel weights, allowed now that the opset is 13
    onnx.checker.check_model(ir.to_proto(result.model))


def test_per_tensor_weights_never_write_axis() -> None:
    model = io.load(fixture_path("lenet5_opset11"))
    result = _quantize(model, "lenet5.calib.npz", per_channel=False)
    assert result.model.graph.opset_imports[""] == 11
    assert not any("axis" in n.attributes for n in result.model.graph if n.op_type == "DequantizeLinear")


def test_weights_in_constant_nodes_become_int8() -> None:
    model = io.load(fixture_path("lenet300_constants"))
    result = _quantize(model, "lenet300.calib.npz")
    int8 = [v for v in result.model.graph.initializers.values() if v.const_value.dtype == ir.DataType.INT8]
    assert len(int8) >= 3
    assert not any(n.op_type == "Constant" and n.outputs[0].shape and len(n.outputs[0].shape) == 2
                   for n in result.model.graph)


def test_weights_inside_if_branches_are_quantized_weight_only() -> None:
    model = io.load(fixture_path("lenet300_if"))
    result = _quantize(model, "lenet300.calib.npz")
    branch = [v for node in result.model.graph if node.op_type == "If" for attr in ("then_branch", "else_branch")
              for v in node.attributes[attr].as_graph().initializers.values()]
    weights = [v for v in branch if v.name.endswith("_quantized")]
    assert len(weights) == 6 and all(v.const_value.dtype == ir.DataType.INT8 for v in weights)
    assert not any(v.const_value.dtype == ir.DataType.FLOAT and len(v.shape) == 2 for v in branch)
    modes = {entry["mode"] for entry in result.report.changed}
    assert modes == {"weight-only"}


def test_target_report_counts_integer_kernels() -> None:
    model = io.load(fixture_path("lenet300"))
    result = _quantize(model, "lenet300.calib.npz", measure_target=True, latency_runs=5)
    target = result.report.summary["target"]
    assert target["quantized_kernels"] == 3
    assert target["integer_kernels"] == 3 and target["fused_fraction"] == 1.0
    assert target["optimized_ops"].get("QGemm") == 3
    assert target["latency_fp32_ms"] > 0 and target["latency_int8_ms"] > 0


def outlier_lenet300(factor: float = 1000.0) -> ir.Model:
    """lenet300 with one hidden unit's incoming weights x factor and outgoing / factor: the same function,
    but one activation with a range ``factor`` times wider than the rest."""
    model = io.load(fixture_path("lenet300"))
    gemms = [n for n in model.graph if n.op_type == "Gemm"]
    w1, b1, w2 = gemms[0].inputs[1], gemms[0].inputs[2], gemms[1].inputs[1]
    a1, c1, a2 = (np.array(v.const_value.numpy()) for v in (w1, b1, w2))
    unit = int(np.argmax(np.abs(a1).sum(axis=1)))
    a1[unit] *= factor
    c1[unit] *= factor
    a2[:, unit] /= factor
    for value, array in ((w1, a1), (b1, c1), (w2, a2)):
        value.const_value = ir.tensor(array, name=value.name)
    return model


def test_accuracy_budget_returns_the_sensitive_nodes_to_float() -> None:
    reference = outlier_lenet300()
    plain = _quantize(io.load(fixture_path("lenet300")), "lenet300.calib.npz")  # sanity: the clean model is fine
    assert _accuracy(plain.model, "lenet300.test.npz") > 0.96
    naive = _quantize(outlier_lenet300(), "lenet300.calib.npz")
    naive_acc = _accuracy(naive.model, "lenet300.test.npz")
    float_acc = _accuracy(reference, "lenet300.test.npz")
    assert naive_acc < float_acc - 0.05  # plain quantization misses a 1-point budget badly

    fitted = _quantize(outlier_lenet300(), "lenet300.calib.npz", max_drop=0.01)
    budget = fitted.report.summary["budget"]
    assert budget["initial"]["drop"] > 0.01
    assert budget["met"] is True and budget["final"]["drop"] <= 0.01
    assert len(budget["ranking"]) == 3
    floats = fitted.report.summary["float_nodes"]
    assert 1 <= len(floats) < 3
    assert floats == [entry["node"] for entry in budget["ranking"][: len(floats)]]
    assert _accuracy(fitted.model, "lenet300.test.npz") >= float_acc - 0.015


def test_min_cosine_budget_already_met_changes_nothing() -> None:
    model = io.load(fixture_path("lenet300"))
    result = _quantize(model, "lenet300.calib.npz", min_cosine=0.9)
    assert result.report.summary["budget"]["met"] is True
    assert result.report.summary["float_nodes"] == []


def test_metric_callable_budget() -> None:
    arrays = np.load(FIXTURES / "lenet300.test.npz")

    def accuracy(session) -> float:
        logits = session.run(None, {"input": arrays["input"]})[0]
        return float((logits.argmax(-1) == arrays["labels"]).mean())

    result = _quantize(outlier_lenet300(), "lenet300.calib.npz", metric=accuracy, max_drop=0.01)
    budget = result.report.summary["budget"]
    assert budget["met"] is True
    assert budget["final"]["metric_quant"] >= budget["final"]["metric_float"] - 0.01


def test_exclude_keeps_matching_nodes_float() -> None:
    model = io.load(fixture_path("lenet5"))
    result = _quantize(model, "lenet5.calib.npz", exclude="Conv")
    assert {e["op"] for e in result.report.changed} == {"Gemm"}
    assert any(s.reason == "matches --exclude" for s in result.report.skipped)


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_other_methods_keep_accuracy(method: str) -> None:
    model = io.load(fixture_path("lenet5"))
    result = _quantize(model, "lenet5.calib.npz", method=method, bias_correction=True)
    assert _accuracy(result.model, "lenet5.test.npz") >= 0.95  # fp32: 0.972; entropy clips the hardest


def test_int8_activations_and_cuda_target_are_symmetric() -> None:
    model = io.load(fixture_path("lenet300"))
    result = _quantize(model, "lenet300.calib.npz", target="cuda")
    zero_points = [v.const_value.numpy() for name, v in result.model.graph.initializers.items()
                   if name.endswith("_zero_point") and v.const_value.dtype == ir.DataType.INT8]
    assert zero_points and all(np.all(z == 0) for z in zero_points)
    assert "Relu" in _ops(result.model.graph)  # symmetric grids cannot clamp at zero: ReLU stays
    assert _accuracy(result.model, "lenet300.test.npz") >= 0.96


def test_nothing_quantizable_is_reported() -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])])
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    data = open_data("random:4", input_specs(model))
    result = QuantizePass(QuantizeConfig(progress=False), PassContext(data))(model)
    assert not result.modified
    assert result.report.summary["quantized_kernels"] == 0
    assert result.report.skipped

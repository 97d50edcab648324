"""Distillation on real-model shapes of data: feeds that differ in shape, feeds without a batch axis, outputs
without gradients, models with nothing to train, runs that would make the model worse, capped runs."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from support import FIXTURES, fixture_path

pytest.importorskip("torch")

from onnxcomp.passes.distill import DistillConfig, distill
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

from onnxcomp import io
from onnxcomp.data import Batch, DataSource, input_specs, open_data
from onnxcomp.weights import iter_weights


def _source(feeds: list[dict[str, np.ndarray]]) -> DataSource:
    return DataSource("inline", False, lambda: iter([Batch(feed) for feed in feeds]), len(feeds))


def _model(nodes, inputs, outputs, weights, opset: int = 17, ml: bool = False) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in weights.items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("ai.onnx.ml", 1)] if ml else [])
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=opsets, ir_version=8))


def _weights(model: ir.Model) -> dict[str, np.ndarray]:
    return {ref.name: ref.numpy().copy() for ref in iter_weights(model)}


def _pruned(build) -> tuple[ir.Model, ir.Model]:
    """A teacher, and a student that starts off it: the same graph, its float weights perturbed, some zeroed."""
    teacher, student = build(), build()
    rng = np.random.default_rng(9)
    for ref in iter_weights(student):
        array = ref.numpy()
        if array.dtype == np.float32 and array.size > 1:
            noisy = array + rng.standard_normal(array.shape).astype(np.float32) * 0.3 * float(np.std(array))
            ref.replace(np.where(rng.random(array.shape) < 0.25, 0, noisy).astype(np.float32))
    return teacher, student


def _conv_on_any_width() -> ir.Model:
    """Conv -> GlobalAveragePool -> Gemm over ``[1, 2, 4, W]``: an OCR-like input whose width varies."""
    rng = np.random.default_rng(0)
    return _model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "g", "gb"], ["logits"], transB=1)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
        {"w": rng.standard_normal((6, 2, 3, 3), dtype=np.float32), "b": rng.standard_normal(6, dtype=np.float32),
         "g": rng.standard_normal((3, 6), dtype=np.float32), "gb": rng.standard_normal(3, dtype=np.float32)})


def test_feeds_of_different_widths_are_trained_one_by_one():
    teacher, student = _pruned(_conv_on_any_width)
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 2, 4, width), dtype=np.float32)} for width in (5, 9, 7, 5, 12)]
    before = _weights(student)
    result = distill(student, teacher, _source(feeds), DistillConfig(epochs=3, batch_size=2, lr=1e-2))
    assert (result.feeds, result.samples, result.steps) == (5, 5, 9)  # 3 steps per epoch: 2 + 2 + 1 feeds
    assert result.losses_by_output == {"logits": "kl"} and len(result.losses) == 3
    assert result.loss_after < result.loss_before and not result.reverted
    assert result.writeback_max_abs_diff <= 1e-5
    after = _weights(student)
    assert all(np.all(after[name][before[name] == 0] == 0) for name in before)
    assert any(not np.array_equal(before[name], after[name]) for name in before)


def _stateful() -> ir.Model:
    """A recurrent-style step: ``x [1, 4]``, a state ``[2, 1, 3]`` and a scalar rate, as silero's VAD takes them."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("ReduceSum", ["state", "axis0"], ["s"], keepdims=0),
             helper.make_node("Cast", ["sr"], ["rate"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["s", "rate"], ["scaled"]), helper.make_node("Add", ["h", "scaled"], ["pre"]),
             helper.make_node("Sigmoid", ["pre"], ["prob"]),
             helper.make_node("Tanh", ["pre"], ["t"]), helper.make_node("Add", ["state", "t"], ["stateN"])]
    return _model(nodes,
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                   helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 3]),
                   helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                  [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 3]),
                   helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, 3])],
                  {"w": rng.standard_normal((4, 3), dtype=np.float32), "axis0": np.array([0], np.int64)})


def test_feeds_without_a_batch_axis_are_fed_as_they_are():
    teacher, student = _pruned(_stateful)
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 4), dtype=np.float32), "state": rng.standard_normal((2, 1, 3),
              dtype=np.float32) * 0.1, "sr": np.array(2, np.int64)} for _ in range(6)]
    result = distill(student, teacher, _source(feeds), DistillConfig(epochs=2, lr=1e-2))
    assert (result.feeds, result.samples) == (6, 6)  # six feeds of one sample, never stacked into [12, 1, 3]
    assert result.losses_by_output == {"prob": "bce", "stateN": "mse"}
    assert result.loss_after < result.loss_before and result.trained


def _classifier_with_labels() -> ir.Model:
    """skl2onnx's shape: probabilities, ArgMax, ArrayFeatureExtractor over the class labels, and here also the
    winning index cast back to float (a float output with no gradient)."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Add", ["z", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
             helper.make_node("ArrayFeatureExtractor", ["classes", "index"], ["picked"], domain="ai.onnx.ml"),
             helper.make_node("Reshape", ["picked", "flat"], ["label"]),
             helper.make_node("Cast", ["index"], ["index_float"], to=TensorProto.FLOAT)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                  [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                   helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4]),
                   helper.make_tensor_value_info("index_float", TensorProto.FLOAT, ["N"])],
                  {"w": rng.standard_normal((5, 4), dtype=np.float32), "b": rng.standard_normal(4, dtype=np.float32),
                   "classes": np.array([3, 5, 7, 9], np.int64), "flat": np.array([-1], np.int64)}, ml=True)


def test_outputs_without_gradients_are_computed_but_left_out_of_the_loss():
    teacher, student = _pruned(_classifier_with_labels)
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.standard_normal((8, 5), dtype=np.float32)} for _ in range(4)]
    result = distill(student, teacher, _source(feeds), DistillConfig(epochs=3, lr=1e-2))
    assert result.losses_by_output == {"probabilities": "kl_prob", "index_float": "mse"}
    assert any("'label'" in note and "not float" in note for note in result.notes)
    assert any("'index_float'" in note and "differentiably" in note for note in result.notes)
    assert result.samples == 32 and result.trained and not result.reverted
    assert result.metrics_after["teacher_agreement"] >= result.metrics_before["teacher_agreement"]


def test_a_model_with_nothing_to_train_is_left_unchanged_with_a_note():
    model = _conv_on_any_width()
    proto = ir.serde.serialize_model(model)
    for init in proto.graph.initializer:  # IR 3 style: every initializer is also a graph input, so a caller may feed it
        proto.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    student = ir.serde.deserialize_model(proto)
    before = _weights(student)
    feeds = [{"x": np.ones((1, 2, 4, 6), np.float32)}]
    result = distill(student, io.serialize(student), _source(feeds), DistillConfig(epochs=1))
    assert result.trained == [] and result.steps == 0
    assert any("no weight can be trained" in note for note in result.notes)
    assert all(np.array_equal(before[k], v) for k, v in _weights(student).items())


def _lenet300():
    teacher = io.load(fixture_path("lenet300"))
    student = io.load(fixture_path("lenet300"))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.9))(student)
    return teacher, student


def test_training_that_raises_the_loss_is_reverted():
    teacher, student = _lenet300()
    before = _weights(student)
    data = open_data(str(FIXTURES / "lenet300.calib.npz"), input_specs(student), batch_size=64)
    result = distill(student, teacher, data, DistillConfig(epochs=1, lr=50.0))
    assert result.reverted and result.loss_after > result.loss_before and result.trained == []
    assert any("raised the distillation loss" in note for note in result.notes)
    assert all(np.array_equal(before[k], v) for k, v in _weights(student).items())


def test_max_steps_caps_the_run_and_says_so():
    teacher, student = _lenet300()
    data = open_data(str(FIXTURES / "lenet300.calib.npz"), input_specs(student), batch_size=16)
    result = distill(student, teacher, data, DistillConfig(epochs=3, batch_size=16, max_steps=4))
    assert result.steps == 4 and len(result.losses) == 1
    assert any("stopped after 4 optimizer steps" in note for note in result.notes)


def test_feeds_that_differ_in_shape_do_not_pretend_to_stack():
    from onnxcomp.passes.distill import load_samples

    from onnxcomp.errors import InputError

    feeds = [{"x": np.ones((1, 2, 4, width), np.float32)} for width in (5, 6)]
    samples = load_samples(_source(feeds), _conv_on_any_width())
    assert samples.count == 2 and samples.teacher["logits"].shape == (2, 3)  # outputs agree in shape: they stack
    with pytest.raises(InputError, match="do not stack"):
        _ = samples.feed


def test_output_kinds():
    from onnxcomp.torch_exec.losses import output_kinds

    probs = np.array([[0.2, 0.8], [0.5, 0.5]], np.float32)
    teacher = [{"p": probs, "s": np.array([[0.9]], np.float32), "z": np.array([[3.0, -1.0]], np.float32),
                "seq": np.zeros((4, 1, 6), np.float32) - 1, "i": np.array([1], np.int64),
                "embedding": np.array([[0.6, -0.8, 0.0]], np.float32)}]
    assert output_kinds(teacher) == {"p": "kl_prob", "s": "bce", "z": "kl", "seq": "mse", "embedding": "mse"}
    assert output_kinds(teacher, "mse") == dict.fromkeys(["p", "s", "z", "seq", "embedding"], "mse")
    assert onnx.defs.has("ArrayFeatureExtractor", "ai.onnx.ml")


def test_only_feeds_that_show_a_batch_axis_are_split_and_restacked_up_to_their_size():
    from onnxcomp.torch_exec.feeds import Unit, step_groups

    rng = np.random.default_rng(6)
    x, t, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 4)), np.arange(12)
    big = Unit.of({"x": x}, {"p": t}, y)
    assert (big.count, big.stack_limit, len(big.pieces())) == (12, 12, 12)
    group = step_groups(big.pieces()[3:8])
    assert len(group) == 1 and group[0].feed["x"].shape == (5, 5)
    np.testing.assert_array_equal(group[0].labels, y[3:8])
    np.testing.assert_array_equal(group[0].teacher["p"], t[3:8])
    fours = [Unit.of({"x": x[i:i + 4]}, {"p": t[i:i + 4]}, None) for i in (0, 4, 8)]  # a model with a fixed batch 4
    sizes = [g.count for g in step_groups([p for u in fours for p in u.pieces()][:10])]
    assert sizes == [4, 4, 2]
    # no batch axis to trust: a state and a scalar, or a batch-1 input whose output leads with time steps
    stateful = Unit.of({"x": np.ones((1, 4)), "state": np.ones((2, 1, 3)), "sr": np.array(16000)}, {"o": t[:1]}, None)
    ocr = Unit.of({"x": np.ones((1, 1, 4, 9))}, {"logits": np.ones((7, 1, 5))}, None)
    single = Unit.of({"x": x[:1]}, {"p": t[:1]}, None)
    for unit in (stateful, ocr, single):
        assert (unit.count, unit.stack_limit, unit.pieces()) == (1, 0, [unit])
    assert [g.count for g in step_groups([stateful, ocr, single, *big.pieces()[:2]])] == [2, 1, 1, 1]

"""Weight clustering: value budgets, exact zeros, determinism, binary/ternary value sets, accuracy."""

from __future__ import annotations

import time

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass, cluster_rows
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass
from prune_models import accuracy, from_proto, load_fixture, logits, weights

from onnxcomp import io
from onnxcomp.errors import InputError
from onnxcomp.weight_roles import select_weights

FC = ("fc1.weight", "fc2.weight", "fc3.weight")


def _pruned(name: str = "lenet300", sparsity: float = 0.9) -> ir.Model:
    return MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity))(load_fixture(name)).model


def _cluster(model: ir.Model, **options):
    return ClusterPass(ClusterConfig(**options))(model)


def _rows(model: ir.Model, name: str) -> np.ndarray:
    candidate = next(c for c in select_weights(model, min_size=0).candidates if c.name == name)
    return candidate.eligibility.view.to_rows(candidate.ref.numpy())


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_per_tensor_budget_counts_zero_and_zeros_stay_exact(bits: int):
    model = _pruned()
    before = weights(model)
    result = _cluster(model, bits=bits)
    after = weights(result.model)
    for name in FC:
        assert np.unique(after[name]).size <= 2**bits  # zero included: indices fit in `bits` bits
        np.testing.assert_array_equal(after[name] == 0, before[name] == 0)
        assert after[name].dtype == np.float32 and after[name].shape == before[name].shape
    for name in ("fc1.bias", "fc2.bias"):
        np.testing.assert_array_equal(after[name], before[name])
    entry = next(e for e in result.report.changed if e["name"] == "fc2.weight")
    assert entry["distinct_values"] == 2**bits and entry["has_zeros"] and entry["mse"] > 0


def test_dense_tensor_uses_the_whole_budget_for_non_zeros():
    after = weights(_cluster(load_fixture("lenet300"), bits=4).model)
    assert np.unique(after["fc2.weight"]).size == 16 and not (after["fc2.weight"] == 0).any()


def test_per_channel_budget_and_signs():
    model = _pruned(sparsity=0.5)
    before = {name: _rows(model, name) for name in FC}
    result = _cluster(model, bits=3, per_channel=True)
    for name in FC:
        rows = _rows(result.model, name)
        for row, original in zip(rows, before[name], strict=True):
            assert np.unique(row).size <= 8
            np.testing.assert_array_equal(row == 0, original == 0)
            assert (np.sign(row) == np.sign(original)).all()  # halves are clustered apart: no sign flips
    assert result.report.changed[0]["granularity"] == "channel"
    assert result.report.changed[0]["groups"] == 300


def test_clustering_is_deterministic_byte_for_byte():
    first = io.serialize(_cluster(_pruned(), bits=5, per_channel=True).model)
    second = io.serialize(_cluster(_pruned(), bits=5, per_channel=True).model)
    assert first == second


def test_binarization_is_sign_times_channel_mean():
    model = _pruned(sparsity=0.5)
    before = _rows(model, "fc2.weight")
    rows = _rows(_cluster(model, bits=1).model, "fc2.weight")
    for row, original in zip(rows, before, strict=True):
        alpha = np.float32(np.abs(original[original != 0].astype(np.float64)).mean())
        expected = {-alpha, alpha} | ({np.float32(0)} if (original == 0).any() else set())
        assert set(np.unique(row).tolist()) == set(np.array(sorted(expected), dtype=np.float32).tolist())
        np.testing.assert_array_equal(np.sign(row), np.sign(original))


def test_ternary_values_and_threshold():
    model = load_fixture("lenet300")
    before = _rows(model, "fc2.weight").astype(np.float64)
    rows = _rows(_cluster(model, bits=2, ternary=True).model, "fc2.weight")
    for row, original in zip(rows, before, strict=True):
        keep = np.abs(original) > 0.7 * np.abs(original).mean()
        alpha = np.float32(np.abs(original[keep]).mean())
        np.testing.assert_array_equal(row, (np.sign(original) * keep * alpha).astype(np.float32))
        assert set(np.unique(row).tolist()) <= {-float(alpha), 0.0, float(alpha)}


def test_rows_already_within_budget_are_unchanged():
    rows = np.array([[0.0, 1.0, -2.0, 1.0, 0.0, 3.0], [5.0, 5.0, 5.0, -5.0, 0.0, 0.0]])
    np.testing.assert_array_equal(cluster_rows(rows, 2), rows)


def test_kmeans_finds_well_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([-3.0, -1.0, 1.0, 2.0, 4.0, 6.0, 8.0])
    values = rng.choice(centres, 5000) + rng.normal(0, 0.01, 5000)
    values[::10] = 0.0
    quantized = cluster_rows(values[None, :], 3)[0]  # 7 non-zero centroids + zero = 8 symbols
    assert np.unique(quantized).size == 8
    assert np.abs(quantized - values).max() < 0.05


def test_a_million_weights_cluster_quickly():
    rng = np.random.default_rng(0)
    weights_1m = rng.standard_normal((1000, 1000))
    weights_1m[np.abs(weights_1m) < 0.5] = 0.0
    start = time.perf_counter()
    per_tensor = cluster_rows(weights_1m.reshape(1, -1), 5)
    per_channel = cluster_rows(weights_1m, 5)
    elapsed = time.perf_counter() - start
    assert elapsed < 4.0, f"clustering 2 x 1M weights took {elapsed:.2f} s"  # ~0.4 s unloaded
    assert np.unique(per_tensor).size == 32
    assert max(np.unique(row).size for row in per_channel) <= 32


def test_float16_weights_stay_float16():
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float16), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 32])], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    result = _cluster(from_proto(model), bits=4)
    after = weights(result.model)["W"]
    assert after.dtype == np.float16 and np.unique(after).size <= 16


def test_excluded_and_small_tensors_are_left_alone():
    model = load_fixture("lenet5")
    before = weights(model)
    result = _cluster(model, bits=4, exclude=("fc3",))
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert reasons["fc3.weight"] == "matches --exclude 'fc3'"
    assert reasons["conv1.weight"].startswith("54 elements")
    np.testing.assert_array_equal(weights(result.model)["fc3.weight"], before["fc3.weight"])


@pytest.mark.parametrize("options", [{"bits": 0}, {"bits": 17}, {"bits": 3, "ternary": True}, {"exclude": ("[",)}])
def test_bad_config_is_an_input_error(options):
    with pytest.raises(InputError):
        ClusterConfig(**options)


def test_prune_then_cluster_keeps_lenet300_accurate():
    result = _cluster(_pruned(sparsity=0.9), bits=5)
    assert accuracy(result.model, "lenet300") >= 0.9
    assert result.report.summary["relative_error"] < 0.05


def test_if_branches_cluster_like_the_plain_model():
    plain = _cluster(_pruned("lenet300", 0.8), bits=4, per_channel=True).model
    branched = _cluster(_pruned("lenet300_if", 0.8), bits=4, per_channel=True).model
    np.testing.assert_array_equal(logits(branched, "lenet300_if"), logits(plain, "lenet300"))


def test_conv_layers_can_get_their_own_budget():
    result = _cluster(load_fixture("lenet5"), bits=5, conv_bits=8)
    after = weights(result.model)
    assert 32 < np.unique(after["conv2.weight"]).size <= 256
    assert np.unique(after["fc1.weight"]).size <= 32
    bits = {entry["name"]: entry["bits"] for entry in result.report.changed}
    assert bits["conv2.weight"] == 8 and bits["fc1.weight"] == 5

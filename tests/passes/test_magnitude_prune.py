"""Magnitude pruning on the trained fixtures and on tiny hand-built graphs, checked through onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass, parse_nm
from prune_models import (
    accuracy,
    layouts_model,
    load_fixture,
    logits,
    loop_model,
    mixed_use_model,
    overridable_model,
    shared_weight_model,
    tied_model,
    weights,
)

from onnxcomp.errors import InputError
from onnxcomp.weight_roles import MatrixView, select_weights

LENET300_WEIGHTS = {"fc1.weight": 19200, "fc2.weight": 30000, "fc3.weight": 1000}


def _prune(model, **options):
    return MagnitudePrunePass(MagnitudePruneConfig(**options))(model)


def _zeros(array: np.ndarray) -> int:
    return int(np.count_nonzero(array == 0))


def test_global_sparsity_is_count_exact_and_biases_untouched():
    model = load_fixture("lenet300")
    before = weights(model)
    result = _prune(model, sparsity=0.9, keep_first_last=False)
    after = weights(result.model)
    total = sum(LENET300_WEIGHTS.values())
    assert sum(_zeros(after[name]) for name in LENET300_WEIGHTS) == round(0.9 * total)
    for name in ("fc1.bias", "fc2.bias", "fc3.bias"):
        np.testing.assert_array_equal(after[name], before[name])
    summary = result.report.summary
    assert summary["eligible_sparsity"] == round(0.9 * total) / total
    assert summary["tensors_pruned"] == 3
    # every weight tensor is in the table, with its sparsity before and after
    table = {row["name"]: row for row in summary["weights"]}
    assert set(table) == set(before)
    assert table["fc1.bias"]["sparsity_after"] == 0.0 and table["fc2.weight"]["sparsity_before"] == 0.0


def test_global_ranking_prunes_small_weights_first():
    model = load_fixture("lenet300")
    before = weights(model)
    after = weights(_prune(model, sparsity=0.5, keep_first_last=False).model)
    pruned = np.concatenate([before[n][after[n] == 0] for n in LENET300_WEIGHTS])
    kept = np.concatenate([before[n][after[n] != 0] for n in LENET300_WEIGHTS])
    assert np.abs(pruned).max() <= np.abs(kept).min()
    for name in LENET300_WEIGHTS:  # survivors keep their exact values
        survived = after[name] != 0
        np.testing.assert_array_equal(after[name][survived], before[name][survived])


def test_tensor_scope_hits_target_per_tensor_with_first_last_at_half():
    result = _prune(load_fixture("lenet300"), sparsity=0.8, scope="tensor")
    after = weights(result.model)
    assert _zeros(after["fc2.weight"]) == round(0.8 * 30000)
    assert _zeros(after["fc1.weight"]) == round(0.4 * 19200)  # first layer: half the target
    assert _zeros(after["fc3.weight"]) == round(0.4 * 1000)  # last layer: half the target
    layers = {entry["name"]: entry["layer"] for entry in result.report.changed}
    assert layers == {"fc1.weight": "first", "fc2.weight": "", "fc3.weight": "last"}


def test_global_with_first_last_targets_the_other_layers():
    result = _prune(load_fixture("lenet300"), sparsity=0.9)
    after = weights(result.model)
    assert _zeros(after["fc2.weight"]) == 27000
    assert _zeros(after["fc1.weight"]) == round(0.45 * 19200)
    summary = result.report.summary
    assert summary["pool_sparsity"] == 0.9 and summary["target_sparsity"] == 0.9
    assert summary["eligible_sparsity"] == pytest.approx((27000 + 8640 + 450) / 50200)


def test_ties_at_the_threshold_still_give_the_exact_count():
    model = tied_model()
    result = _prune(model, sparsity=0.3, keep_first_last=False, scope="global")
    assert _zeros(weights(result.model)["W"]) == round(0.3 * 1600)
    result = _prune(tied_model(), sparsity=0.37, keep_first_last=False, scope="tensor")
    assert _zeros(weights(result.model)["W"]) == round(0.37 * 1600)


def test_norms_biases_and_shape_constants_are_left_alone_with_reasons():
    model = load_fixture("transformer")
    before = weights(model)
    result = _prune(model, sparsity=0.5, keep_first_last=False, min_size=0)
    after = weights(result.model)
    pruned = {entry["name"] for entry in result.report.changed}
    assert {name for name in before if name.startswith("onnx::MatMul")} <= pruned
    assert "head.weight" in pruned
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert reasons["layers.0.ln1.weight"].startswith("normalization parameter")
    assert reasons["head.bias"].startswith("bias")
    assert reasons["onnx::Unsqueeze_59"].startswith("not a float tensor")
    assert "not a linear-layer weight" in reasons["pos"]
    for name in set(before) - pruned:
        np.testing.assert_array_equal(after[name], before[name])

    resnet = _prune(load_fixture("resnet"), sparsity=0.5)
    bn = [s for s in resnet.report.skipped if "running_var" in s.target]
    assert bn and all(s.reason.startswith("normalization parameter") for s in bn)


@pytest.mark.parametrize("scope", ["global", "tensor"])
def test_constant_node_and_if_branch_weights_prune_like_the_plain_model(scope: str):
    plain = _prune(load_fixture("lenet300"), sparsity=0.8, scope=scope).model
    expected = logits(plain, "lenet300")
    for variant in ("lenet300_constants", "lenet300_if"):
        result = _prune(load_fixture(variant), sparsity=0.8, scope=scope)
        np.testing.assert_array_equal(logits(result.model, variant), expected)
    if_report = _prune(load_fixture("lenet300_if"), sparsity=0.8, scope=scope).report
    locations = {entry["name"]: entry["location"] for entry in if_report.changed}
    assert locations["then_fc2.weight"] == "If_lenet300/then_branch:initializer"
    assert len(locations) == 6
    constants = _prune(load_fixture("lenet300_constants"), sparsity=0.8, scope=scope).report
    assert {entry["location"] for entry in constants.changed} == {"constant"}


def test_loop_body_initializer_and_constant_are_pruned():
    result = _prune(loop_model(), sparsity=0.75, scope="tensor", keep_first_last=False, min_size=0)
    locations = {entry["name"]: entry["location"] for entry in result.report.changed}
    assert locations == {"body_w": "loop/body:initializer", "body_c": "loop/body:constant"}
    after = weights(result.model)
    assert _zeros(after["body_w"]) == 192 and _zeros(after["body_c"]) == 192
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert reasons["trips"].startswith("not a float tensor (int64)")
    assert reasons["cond"].startswith("not a float tensor (bool)")


def test_shared_weight_is_pruned_once():
    model = shared_weight_model()
    result = _prune(model, sparsity=0.5, keep_first_last=False, min_size=0)
    (entry,) = [e for e in result.report.changed if e["name"] == "W"]
    assert entry["sparsity_after"] == 0.5 and entry["ops"] == "Gemm"
    assert _zeros(weights(result.model)["W"]) == 128


def test_weight_with_a_non_weight_use_and_overridable_weight_are_skipped():
    result = _prune(mixed_use_model(), sparsity=0.5, min_size=0)
    assert not result.modified
    (skip,) = result.report.skipped
    assert skip.target == "W" and "Add" in skip.reason

    result = _prune(overridable_model(), sparsity=0.5, min_size=0)
    assert not result.modified
    assert "graph input" in result.report.skipped[0].reason


def _rows_along_reduction(model, name: str) -> np.ndarray:
    candidate = next(c for c in select_weights(model, min_size=0).candidates if c.name == name)
    return candidate.eligibility.view.to_rows(candidate.ref.numpy())


@pytest.mark.parametrize(("pattern", "zeros"), [("2:4", 2), ("1:4", 3), ("1:2", 1)])
def test_nm_pattern_along_the_reduction_axis(pattern: str, zeros: int):
    n, m = parse_nm(pattern)
    result = _prune(load_fixture("lenet300"), nm=(n, m), keep_first_last=False)
    after = weights(result.model)
    for name in LENET300_WEIGHTS:  # Gemm with transB: rows are outputs, K is contiguous
        groups = after[name].reshape(after[name].shape[0], -1, m)
        assert (np.count_nonzero(groups == 0, axis=-1) >= zeros).all()
    assert result.report.summary["eligible_sparsity"] == pytest.approx(zeros / m)


def test_nm_follows_each_layout_and_skips_what_does_not_divide():
    model = layouts_model()
    result = _prune(model, nm=(2, 4), keep_first_last=False, min_size=0)
    # Gemm without transB is [K, N]: the groups run down the columns
    gemm = weights(result.model)["gemm_w"].T.reshape(8, -1, 4)
    assert (np.count_nonzero(gemm == 0, axis=-1) == 2).all()
    for name in ("matmul_w", "deconv_w"):
        rows = _rows_along_reduction(result.model, name).reshape(-1, 4)
        assert (np.count_nonzero(rows == 0, axis=-1) == 2).all()
    np.testing.assert_array_equal(weights(result.model)["shape"], [1, 8, 1, 1])

    conv = _prune(load_fixture("lenet5"), nm=(2, 4), keep_first_last=False, min_size=0)
    reasons = {s.target: s.reason for s in conv.report.skipped}
    assert "reduction length 9 is not a multiple of 4" in reasons["conv1.weight"]
    assert "reduction length 54 is not a multiple of 4" in reasons["conv2.weight"]  # 6 x 3 x 3 per output
    assert _zeros(weights(conv.model)["conv2.weight"]) == 0


def test_nm_keeps_first_and_last_dense_by_default():
    result = _prune(load_fixture("lenet300"), nm=(2, 4))
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert "first weight layer" in reasons["fc1.weight"] and "last weight layer" in reasons["fc3.weight"]
    assert _zeros(weights(result.model)["fc1.weight"]) == 0


def test_threshold_mode():
    model = load_fixture("lenet300")
    before = weights(model)
    after = weights(_prune(model, threshold=0.05).model)
    np.testing.assert_array_equal(after["fc2.weight"] == 0, np.abs(before["fc2.weight"]) < 0.05)
    np.testing.assert_array_equal(after["fc1.weight"] == 0, np.abs(before["fc1.weight"]) < 0.025)


def test_exclude_regex_and_unmatched_pattern_warns():
    result = _prune(load_fixture("lenet300"), sparsity=0.5, exclude=("fc2", "no_such_layer"))
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert reasons["fc2.weight"] == "matches --exclude 'fc2'"
    assert _zeros(weights(result.model)["fc2.weight"]) == 0
    assert result.report.summary["warnings"] == ["--exclude 'no_such_layer' matched no eligible weight"]


def test_min_size_leaves_small_tensors_alone():
    result = _prune(load_fixture("lenet5"), sparsity=0.5)
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert reasons["conv1.weight"] == "54 elements, below the minimum size 128"


@pytest.mark.parametrize("options", [
    {"sparsity": 1.0}, {"sparsity": -0.1}, {"sparsity": float("nan")}, {"nm": (4, 2)}, {"nm": (0, 4)},
    {"threshold": -1.0}, {"threshold": 0.1, "nm": (2, 4)}, {"exclude": ("(",)}, {"scope": "layer"},
])
def test_bad_config_is_an_input_error(options):
    with pytest.raises(InputError):
        MagnitudePruneConfig(**options)


@pytest.mark.parametrize("text", ["2", "a:b", "4:2", "2:4:8", "0:4"])
def test_bad_nm_text(text: str):
    with pytest.raises(InputError):
        parse_nm(text)


def test_zero_sparsity_changes_nothing():
    result = _prune(load_fixture("lenet300"), sparsity=0.0)
    assert not result.modified


def test_half_pruned_lenet300_keeps_accuracy_within_one_point():
    baseline = accuracy(load_fixture("lenet300"), "lenet300")
    pruned = _prune(load_fixture("lenet300"), sparsity=0.5).model
    assert accuracy(pruned, "lenet300") >= baseline - 0.01


@pytest.mark.parametrize(("shape", "view"), [
    ((4, 3, 2, 2), MatrixView((0, 1, 2, 3))),  # Conv: rows = outputs, reduction = in x kernel
    ((3, 4, 2, 2), MatrixView((1, 0, 2, 3))),  # ConvTranspose: outputs on axis 1
    ((5, 6), MatrixView((1, 0))),  # Gemm B without transB, MatMul B: [K, N]
    ((2, 5, 6), MatrixView((0, 2, 1), row_axes=2)),  # batched MatMul B
])
def test_matrix_views_round_trip(shape: tuple[int, ...], view: MatrixView):
    array = np.arange(np.prod(shape)).reshape(shape)
    rows = view.to_rows(array)
    assert rows.shape[1] == view.reduction_length(shape)
    np.testing.assert_array_equal(view.from_rows(rows, shape), array)

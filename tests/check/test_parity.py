"""Parity metrics on real onnxruntime outputs and on hand-made arrays for the edge cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from check_models import Models

from onnxcomp.check.parity import (
    HISTOGRAM_BINS_PER_OCTAVE,
    RELATIVE_ERROR_FLOOR,
    ParityAccumulator,
    ParityMetrics,
    ParityReport,
    ParityThresholds,
    compare,
)
from onnxcomp.errors import InputError
from onnxcomp.session import create_session, run_named

Feed = dict[str, np.ndarray]


def _runs(path: str, feeds: list[Feed]) -> list[dict[str, np.ndarray]]:
    session = create_session(path)
    return [run_named(session, feed) for feed in feeds]


def _compare_models(
    reference: str, candidate: str, feeds: list[Feed], thresholds: ParityThresholds | None = None
) -> ParityReport:
    return compare(_runs(reference, feeds), _runs(candidate, feeds), thresholds)


def _metrics(report: ParityReport, name: str = "logits") -> ParityMetrics:
    metrics = report.output(name).metrics
    assert metrics is not None
    return metrics


def _json(report: ParityReport) -> str:
    return json.dumps(report.to_dict(), allow_nan=False)


STRICT = ParityThresholds(atol=0.0, rtol=0.0, min_cosine=1.0, min_top1=1.0, min_snr_db=200.0)


def test_identical_models_have_zero_error_and_pass_strict_gates(models: Models, feeds: list[Feed]) -> None:
    report = _compare_models(models.classifier(), models.classifier("copy.onnx"), feeds, STRICT)

    m = _metrics(report)
    assert (m.max_abs, m.mean_abs, m.p99_abs, m.max_rel) == (0.0, 0.0, 0.0, 0.0)
    assert m.cosine == 1.0
    assert m.snr_db == math.inf
    assert m.top1 == 1.0 and m.top1_rows == 12
    assert m.count == 120 and m.compared == 120 and m.violations == 0
    assert report.passed and bool(report) and report.failures() == []
    assert [o.name for o in report.outputs] == ["logits", "norm", "label"]


def test_perturbed_weight_fails_and_failures_name_output_and_metric(
    models: Models, feeds: list[Feed]
) -> None:
    thresholds = ParityThresholds(atol=1e-4, min_cosine=0.9999)
    report = _compare_models(
        models.classifier(), models.classifier("cand.onnx", delta=0.5), feeds, thresholds
    )

    assert not report.passed and not report
    failures = report.failures()
    assert any(line.startswith("logits: max abs error") and "> atol 0.0001" in line for line in failures)
    assert any(line.startswith("logits: cosine") and "< min 0.9999" in line for line in failures)
    m = _metrics(report)
    assert 0 < m.violations <= m.count  # type: ignore[operator]
    assert 0 < m.p99_abs <= m.max_abs
    assert m.cosine < 0.9999 and math.isfinite(m.snr_db)


def test_thresholds_at_the_needed_values_pass_and_tighter_ones_fail(
    models: Models, feeds: list[Feed]
) -> None:
    reference, candidate = models.classifier(), models.classifier("cand.onnx", delta=5.0)
    m = _metrics(_compare_models(reference, candidate, feeds))
    assert m.needed_min_top1 is not None and m.needed_min_top1 < 1.0

    exact = ParityThresholds(
        atol=m.needed_atol,
        min_cosine=m.needed_min_cosine,
        min_top1=m.needed_min_top1,
        min_snr_db=m.needed_min_snr_db,
    )
    assert _compare_models(reference, candidate, feeds, exact).output("logits").passed
    assert (
        _compare_models(reference, candidate, feeds, ParityThresholds(rtol=m.needed_rtol))
        .output("logits")
        .passed
    )

    tighter = {
        "atol": ParityThresholds(atol=m.needed_atol * 0.999),
        "rtol": ParityThresholds(rtol=m.needed_rtol * 0.999),
        "cosine": ParityThresholds(min_cosine=math.nextafter(m.needed_min_cosine, 2.0)),
        "SNR": ParityThresholds(min_snr_db=m.needed_min_snr_db + 1e-9),
        "top-1": ParityThresholds(min_top1=m.needed_min_top1 + 1e-9),
    }
    for metric, gate in tighter.items():
        lines = _compare_models(reference, candidate, feeds, gate).output("logits").failures
        assert len(lines) == 1 and metric in lines[0], (metric, lines)


def test_combined_atol_rtol_is_elementwise_and_needed_atol_at_rtol_is_exact(
    models: Models, feeds: list[Feed]
) -> None:
    reference, candidate = models.classifier(), models.classifier("cand.onnx", delta=0.2)
    rtol = 0.01
    m = _metrics(_compare_models(reference, candidate, feeds, ParityThresholds(rtol=rtol)))
    needed = m.needed_atol_at_rtol
    assert needed is not None and 0 < needed <= m.max_abs

    at = _compare_models(reference, candidate, feeds, ParityThresholds(atol=needed, rtol=rtol))
    assert at.output("logits").passed and _metrics(at).violations == 0
    below = _compare_models(reference, candidate, feeds, ParityThresholds(atol=needed * 0.99, rtol=rtol))
    line = below.output("logits").failures[0]
    assert line.startswith("logits: ") and "outside atol" in line and "rtol 0.01" in line
    assert _metrics(below).violations >= 1  # type: ignore[operator]

    ref = np.concatenate([r["logits"] for r in _runs(reference, feeds)])
    cand = np.concatenate([r["logits"] for r in _runs(candidate, feeds)])
    assert np.allclose(cand, ref, atol=needed, rtol=rtol)


def test_nan_in_candidate_fails_even_without_thresholds(models: Models, feeds: list[Feed]) -> None:
    report = _compare_models(models.classifier(), models.classifier("nan.onnx", nan_bias=True), feeds)

    m = _metrics(report)
    assert m.nan_candidate == 12 and m.nan_reference == 0 and m.nonfinite_mismatches == 12
    assert m.compared == m.count - 12  # error metrics only over finite pairs
    assert not report.passed
    assert any(line.startswith("logits: 12 element(s) are NaN/Inf") for line in report.failures())
    json.loads(_json(report), parse_constant=pytest.fail)  # no NaN/Infinity tokens


def test_matching_nan_and_inf_are_accepted_but_mismatched_ones_are_not() -> None:
    ref = np.array([[1.0, np.nan, np.inf, -np.inf, 2.0]], np.float32)
    same = compare([{"y": ref}], [{"y": ref.copy()}], STRICT)
    assert same.passed and _metrics(same, "y").nonfinite_mismatches == 0

    cand = np.array([[1.0, 0.0, -np.inf, np.nan, np.inf]], np.float32)
    m = _metrics(compare([{"y": ref}], [{"y": cand}]), "y")
    assert (m.nonfinite_mismatches, m.compared) == (4, 1)
    assert (m.nan_reference, m.inf_reference, m.nan_candidate, m.inf_candidate) == (1, 2, 1, 2)


def test_shape_mismatch_is_a_reported_failure_not_a_crash(models: Models, feeds: list[Feed]) -> None:
    report = _compare_models(models.classifier(), models.classifier("narrow.onnx", width=5), feeds)

    logits = report.output("logits")
    assert logits.metrics is None and not logits.passed
    assert logits.error == "shape mismatch in batch #0: reference (4, 10) vs candidate (4, 5)"
    assert "logits: shape mismatch in batch #0" in report.failures()[0]
    assert report.output("norm").metrics is not None  # other outputs are still compared
    _json(report)


def test_dtype_mismatch_missing_and_non_tensor_outputs_are_failures() -> None:
    ref = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float32), "c": np.zeros(2, np.float32)}
    cand = {"a": np.zeros((2, 3), np.float16), "c": [{"k": 1.0}]}
    report = compare([ref], [cand])

    assert report.output("a").error == "dtype mismatch: reference float32 vs candidate float16"
    assert report.output("b").error == "missing from the candidate's outputs"
    assert report.output("c").error is not None and "not a numeric tensor" in report.output("c").error
    assert len(report.failures()) == 3 and not report.passed


def test_streaming_over_batches_equals_one_shot(models: Models, feeds: list[Feed]) -> None:
    reference, candidate = models.classifier(), models.classifier("cand.onnx", delta=0.7)
    ref_runs, cand_runs = _runs(reference, feeds), _runs(candidate, feeds)
    one_ref = {k: np.concatenate([r[k] for r in ref_runs]) for k in ref_runs[0]}
    one_cand = {k: np.concatenate([r[k] for r in cand_runs]) for k in cand_runs[0]}
    gates = ParityThresholds(atol=1e-3, rtol=1e-3)

    streamed = ParityAccumulator(gates)
    for ref, cand in zip(ref_runs, cand_runs, strict=True):
        streamed.update(ref, cand)
    one_shot = ParityAccumulator(gates)
    one_shot.update(one_ref, one_cand)

    for name in ("logits", "norm", "label"):
        a, b = _metrics(streamed.result(), name), _metrics(one_shot.result(), name)
        for field, value in a.to_dict().items():
            other = b.to_dict()[field]
            if isinstance(value, float):
                assert value == pytest.approx(other, rel=1e-12, abs=1e-15), (name, field)
            else:
                assert value == other, (name, field)
    assert streamed.result().batches == 3 and one_shot.result().batches == 1


def test_top1_only_for_score_outputs(models: Models, feeds: list[Feed]) -> None:
    report = _compare_models(models.classifier(), models.classifier("copy.onnx"), feeds)

    assert _metrics(report, "logits").top1 == 1.0
    assert _metrics(report, "norm").top1 is None  # last dim 1
    assert _metrics(report, "label").top1 is None  # int64, rank 1
    assert _metrics(report, "norm").needed_min_top1 is None


def test_min_top1_without_any_score_output_fails() -> None:
    y = np.arange(6, dtype=np.float32)
    report = compare([{"y": y}], [{"y": y}], ParityThresholds(min_top1=0.9))
    assert report.failures() == [
        "min_top1 is set but no output is a score vector (float, rank ≥ 2 with more than one class)"
    ]
    # A default gate (not asked for by the user) simply does not apply to such a model.
    lenient = compare([{"y": y}], [{"y": y}], ParityThresholds(min_top1=0.9, require_top1=False))
    assert lenient.passed and lenient.failures() == []


def test_scores_with_trailing_unit_axes_count_as_score_vectors() -> None:
    """NCHW classifiers output [N, classes, 1, 1]; their top-1 is over the classes axis."""
    ref = np.zeros((4, 10, 1, 1), np.float32)
    ref[:, 3] = 1.0
    cand = ref.copy()
    cand[0, 7] = 2.0  # one sample of four now prefers class 7
    m = _metrics(compare([{"s": ref}], [{"s": cand}]), "s")
    assert (m.top1_agree, m.top1_rows) == (3, 4)


def test_top1_agreement_counts_rows_over_all_leading_axes() -> None:
    ref = np.zeros((2, 3, 4), np.float32)
    ref[..., 1] = 1.0
    cand = ref.copy()
    cand[0, 0, 2] = 5.0  # one row of six disagrees
    m = _metrics(compare([{"s": ref}], [{"s": cand}]), "s")
    assert (m.top1_agree, m.top1_rows) == (5, 6) and m.top1 == pytest.approx(5 / 6)


def test_relative_error_uses_the_documented_floor() -> None:
    ref = np.array([0.0, 2.0])
    cand = np.array([1e-7, 2.0])
    m = _metrics(compare([{"y": ref}], [{"y": cand}]), "y")
    assert m.max_rel == pytest.approx(1e-7 / RELATIVE_ERROR_FLOOR)


def test_all_zero_outputs_count_as_identical_and_zero_against_nonzero_as_orthogonal() -> None:
    zeros = np.zeros((3, 2), np.float32)
    m = _metrics(compare([{"y": zeros}], [{"y": zeros}]), "y")
    assert (m.cosine, m.snr_db) == (1.0, math.inf)
    m = _metrics(compare([{"y": zeros}], [{"y": np.ones_like(zeros)}]), "y")
    assert (m.cosine, m.snr_db) == (0.0, -math.inf)


def test_p99_is_exact_for_small_data_and_a_tight_upper_bound_past_the_limit() -> None:
    rng = np.random.default_rng(3)
    refs = [rng.standard_normal(1000) for _ in range(5)]
    cands = [r + rng.standard_normal(1000) * 0.01 for r in refs]
    errors = np.abs(np.concatenate(cands) - np.concatenate(refs))
    true_p99 = float(np.quantile(errors, 0.99, method="inverted_cdf"))

    exact = ParityAccumulator()
    sketched = ParityAccumulator(exact_quantile_limit=1500)
    for ref, cand in zip(refs, cands, strict=True):
        exact.update({"y": ref}, {"y": cand})
        sketched.update({"y": ref}, {"y": cand})

    m_exact, m_sketch = _metrics(exact.result(), "y"), _metrics(sketched.result(), "y")
    assert m_exact.p99_exact and m_exact.p99_abs == true_p99
    assert not m_sketch.p99_exact
    assert true_p99 <= m_sketch.p99_abs <= true_p99 * (1 + 2 / HISTOGRAM_BINS_PER_OCTAVE)
    assert m_sketch.max_abs == m_exact.max_abs


def test_report_json_has_no_nan_tokens_and_keeps_infinity_as_a_string(
    models: Models, feeds: list[Feed]
) -> None:
    report = _compare_models(models.classifier(), models.classifier("copy.onnx"), feeds, STRICT)
    data = json.loads(_json(report))

    logits = data["outputs"][0]
    assert logits["metrics"]["snr_db"] == "inf" and logits["needed"]["min_snr_db"] == "inf"
    assert logits["reference"] == {"dtype": "float32", "shape": [4, 10]}
    assert data["passed"] is True and data["thresholds"]["min_snr_db"] == 200.0


def test_no_batches_is_a_failure_and_unequal_run_counts_are_an_error() -> None:
    assert compare([], []).failures() == ["no batches were compared"]
    with pytest.raises(ValueError, match="differ in number of batches"):
        compare([{"y": np.zeros(1)}], [])


@pytest.mark.parametrize(
    "kwargs",
    [{"atol": -1.0}, {"rtol": float("nan")}, {"min_cosine": 1.5}, {"min_top1": -0.1}],
)
def test_out_of_range_thresholds_are_input_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(InputError, match="threshold"):
        ParityThresholds(**kwargs)


def test_thresholds_describe_and_serialise() -> None:
    gates = ParityThresholds(atol=1e-5, min_cosine=0.99)
    assert gates.describe() == "atol 1e-05, cosine ≥ 0.99"
    assert ParityThresholds().describe() == "none (report only)" and ParityThresholds().is_empty()
    assert gates.to_dict() == {
        "atol": 1e-5,
        "rtol": None,
        "min_cosine": 0.99,
        "min_top1": None,
        "min_snr_db": None,
    }


def test_failure_lines_show_enough_digits_to_tell_value_from_limit() -> None:
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])
    cand = np.array([[1.0, 0.0004], [0.0, 1.0]])
    cosine = _metrics(compare([{"y": ref}], [{"y": cand}]), "y").cosine
    line = compare([{"y": ref}], [{"y": cand}], ParityThresholds(min_cosine=0.99999999)).failures()[0]
    shown, limit = line.removeprefix("y: cosine ").split(" < min ")
    assert shown != limit and float(shown) == pytest.approx(cosine, rel=1e-9)


def test_integer_outputs_are_gated_by_tolerances_not_by_similarity() -> None:
    labels = np.array([3, 1, 4, 1, 5], np.int64)
    other = np.array([3, 1, 4, 1, 9], np.int64)
    similarity = compare(
        [{"label": labels}], [{"label": other}], ParityThresholds(min_cosine=0.999, min_snr_db=40)
    )
    assert similarity.passed and _metrics(similarity, "label").cosine < 0.999  # reported, not gated

    exact = compare([{"label": labels}], [{"label": other}], ParityThresholds(atol=0))
    assert exact.failures() == ["label: max abs error 4 > atol 0 (1 of 5 elements)"]

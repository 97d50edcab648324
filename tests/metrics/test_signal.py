"""Score agreement and feature fidelity on synthetic outputs: perfect on identical, failing on real changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcomp.metrics.base import MetricResult
from onnxcomp.metrics.signal import all_of, feature_fidelity, score_agreement


def _samples(values: list[np.ndarray], name: str = "p") -> list[dict[str, np.ndarray]]:
    return [{name: np.asarray(v, dtype=np.float32)} for v in values]


def test_score_agreement_identical_is_perfect() -> None:
    ref = _samples([[[0.1]], [[0.9]], [[0.6]]])
    result = score_agreement(ref, ref)
    assert result.passed
    assert result.values["decision_agreement"] == 1.0
    assert result.values["max_abs_diff"] == 0.0
    assert result.values["reference_positive_rate"] == pytest.approx(2 / 3)


def test_score_agreement_counts_flips_and_every_element() -> None:
    ref = _samples([[[0.2], [0.8]], [[0.45], [0.7]]])
    cand = _samples([[[0.2], [0.8]], [[0.55], [0.7]]])  # one of four decisions flips across 0.5
    result = score_agreement(ref, cand)
    assert result.values["decision_agreement"] == 0.75
    assert result.values["max_abs_diff"] == pytest.approx(0.1, abs=1e-6)
    assert not result.passed
    assert result.details["decisions"] == 4


def test_score_agreement_threshold_and_max_diff_bar() -> None:
    ref = _samples([[0.1], [0.9]])
    cand = _samples([[0.4], [0.9]])  # no flip at 0.5, but the score moved by 0.3
    assert score_agreement(ref, cand).passed
    strict = score_agreement(ref, cand, max_diff_bar=0.2)
    assert not strict.passed
    assert strict.primary == "max_abs_diff" and not strict.higher_is_better
    assert strict.values["decision_agreement"] == 1.0
    assert not score_agreement(ref, cand, threshold=0.3).passed  # 0.4 crosses a 0.3 threshold


def test_score_agreement_nan_never_agrees() -> None:
    ref = _samples([[0.1], [0.2]])
    cand = _samples([[np.nan], [0.2]])
    result = score_agreement(ref, cand)
    assert result.values["decision_agreement"] == 0.5
    assert math.isinf(result.values["max_abs_diff"])


def test_score_agreement_needs_paired_samples() -> None:
    with pytest.raises(ValueError):
        score_agreement(_samples([[0.1]]), _samples([[0.1], [0.2]]))


def test_feature_fidelity_identical_is_perfect() -> None:
    ref = _samples([np.random.default_rng(0).normal(size=(8, 32))])
    result = feature_fidelity(ref, ref)
    assert result.passed and not result.higher_is_better
    assert result.values["rel_l2"] == 0.0 and math.isinf(result.values["snr_db"])
    assert result.values["min_cosine"] == pytest.approx(1.0)


def test_feature_fidelity_noise_level_and_snr() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(4, 64, 32))
    cand = ref + 0.02 * rng.normal(size=ref.shape)
    result = feature_fidelity(_samples(list(ref)), _samples(list(cand)), center=False)
    assert result.values["rel_l2"] == pytest.approx(0.02, rel=0.1)
    assert result.values["snr_db"] == pytest.approx(-20 * math.log10(result.values["rel_l2"]))
    assert result.passed  # 0.02 <= 0.05
    worse = feature_fidelity(_samples(list(ref)), _samples(list(ref + 0.1 * rng.normal(size=ref.shape))))
    assert not worse.passed


def test_feature_fidelity_is_scale_and_offset_sensitive_when_centred() -> None:
    rng = np.random.default_rng(2)
    log_mel = 40 + 5 * rng.normal(size=(76, 32))  # a spectrogram on a large offset
    shifted = feature_fidelity(_samples([log_mel]), _samples([log_mel + 1.0]))
    assert shifted.values["rel_l2"] == pytest.approx(1 / 5, rel=0.05) and not shifted.passed
    # without centring the offset hides the same shift: the error looks like 1/40
    assert feature_fidelity(_samples([log_mel]), _samples([log_mel + 1.0]), center=False).values["rel_l2"] < 0.03
    scaled = feature_fidelity(_samples([log_mel]), _samples([log_mel * 1.1]))
    assert not scaled.passed
    assert scaled.values["min_cosine"] < 1.0  # the centred candidate is no longer parallel to the reference


def test_feature_fidelity_cosine_bar_and_worst_sample() -> None:
    rng = np.random.default_rng(3)
    ref = [rng.normal(size=256) for _ in range(10)]
    cand = [r.copy() for r in ref]
    cand[3] = rng.normal(size=256)  # one sample unrelated: pooled error is diluted, the worst one is not
    result = feature_fidelity(_samples(ref), _samples(cand), bar=1.0, cosine_bar=0.9)
    assert result.primary == "min_cosine" and not result.passed
    assert result.values["max_rel_l2"] > result.values["rel_l2"]


def test_feature_fidelity_nonfinite_and_zero_reference() -> None:
    assert not feature_fidelity(_samples([[1.0, 2.0]]), _samples([[np.inf, 2.0]]), center=False).passed
    zero = _samples([[0.0, 0.0]])
    assert feature_fidelity(zero, zero, center=False).values["rel_l2"] == 0.0
    assert math.isinf(feature_fidelity(zero, _samples([[0.1, 0.0]]), center=False).values["rel_l2"])
    with pytest.raises(ValueError):
        feature_fidelity(_samples([[1.0, 2.0]]), _samples([[1.0, 2.0, 3.0]]))


def test_all_of_reports_the_first_failure_and_merges_values() -> None:
    ok = MetricResult("a", {"agreement": 1.0}, 0.99)
    bad = MetricResult("b", {"rel_l2": 0.2, "snr_db": 14.0}, 0.05, higher_is_better=False)
    both = all_of(ok, bad)
    assert not both.passed and both.primary == "rel_l2" and both.bar == 0.05
    assert both.values["agreement"] == 1.0 and len(both.details["checks"]) == 2
    fine = all_of(ok, MetricResult("c", {"rel_l2": 0.01}, 0.05, higher_is_better=False))
    assert fine.passed and fine.primary == "agreement"
    with pytest.raises(ValueError):
        all_of()

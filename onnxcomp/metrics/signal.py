"""Scores and signals: does a detector still fire on the same frames, does a front end still emit the same features?

Two families. Score agreement is for models whose output is a probability a threshold turns into a decision
(voice activity, wake word): what a user notices is a decision that flips, so agreement at the threshold is the
primary value, and the largest score change says how close the others came. Feature fidelity is for front ends
and states whose output feeds another model (a log-mel spectrogram, a recurrent state): there is no decision to
compare, so the error is measured against the reference's own energy -- scale- and offset-sensitive on purpose, a
spectrogram shifted by a constant is not the same spectrogram to the model that reads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


def score_agreement(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
                    threshold: float = 0.5, bar: float = 0.99, max_diff_bar: float | None = None) -> MetricResult:
    """Share of scores on the same side of ``threshold`` (primary), max and mean absolute score difference.

    Every element of ``output`` (default: the first output) is one decision: a ``[batch, 1]`` probability counts
    each row. With ``max_diff_bar`` the result also fails when some score moved by more than that, even if no
    decision flipped -- for a detector whose users pick their own threshold.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    ref = np.concatenate([np.asarray(s[name], dtype=np.float64).ravel() for s in reference])
    cand = np.concatenate([np.asarray(s[name], dtype=np.float64).ravel() for s in candidate])
    if ref.shape != cand.shape:
        raise ValueError(f"{name}: reference has {ref.size} scores, candidate {cand.size}")
    diff = np.abs(ref - cand)
    diff = np.where(np.isnan(diff), np.inf, diff)
    same = ((ref >= threshold) == (cand >= threshold)) & ~np.isnan(cand)  # NaN never agrees
    values = {"decision_agreement": float(same.mean()),
              "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
              "reference_positive_rate": float((ref >= threshold).mean())}
    details = {"decisions": int(ref.size), "output": name, "threshold": threshold}
    result = MetricResult(f"decision agreement @ {threshold:g}", values, bar, details=details)
    if result.passed and max_diff_bar is not None and not values["max_abs_diff"] <= max_diff_bar:
        return MetricResult("max abs score diff", {"max_abs_diff": values["max_abs_diff"], **values}, max_diff_bar,
                            higher_is_better=False, details=details)
    return result


def feature_fidelity(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
                     center: bool = True, bar: float = 0.05, cosine_bar: float | None = None) -> MetricResult:
    """Relative L2 error (primary, lower is better), the worst sample's, SNR in dB and cosine similarity.

    The error ``||cand - ref||`` is pooled over all samples and divided by the reference's energy. With
    ``center`` (default) each sample's energy is taken around the reference's mean, and the cosine is between the
    two centred signals: a log-mel spectrogram sits on a large offset that would otherwise make every error look
    small and every cosine look perfect. The candidate is centred with the *reference's* mean, so a shift counts
    as error. With ``cosine_bar`` the result also fails when the worst sample's cosine is below it.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    err_energy = ref_energy = 0.0
    worst = 0.0
    cosines = []
    for r_sample, c_sample in zip(reference, candidate, strict=True):
        r = np.asarray(r_sample[name], dtype=np.float64).ravel()
        c = np.asarray(c_sample[name], dtype=np.float64).ravel()
        if r.shape != c.shape:
            raise ValueError(f"{name}: reference shape {np.shape(r_sample[name])}, "
                             f"candidate {np.shape(c_sample[name])}")
        offset = r.mean() if center and r.size else 0.0
        r, c = r - offset, c - offset
        e, s = _energy(c - r), _energy(r)
        err_energy += e
        ref_energy += s
        worst = max(worst, _ratio(e, s))
        cosines.append(_cosine(r, c))
    rel = _ratio(err_energy, ref_energy)
    snr = -20.0 * math.log10(rel) if 0 < rel < math.inf else (math.inf if rel == 0 else -math.inf)
    values = {"rel_l2": rel, "max_rel_l2": worst, "snr_db": snr, "mean_cosine": float(np.mean(cosines)),
              "min_cosine": float(np.min(cosines))}
    details = {"samples": len(reference), "output": name, "centered": center}
    result = MetricResult("relative L2 error", values, bar, higher_is_better=False, details=details)
    if result.passed and cosine_bar is not None and not values["min_cosine"] >= cosine_bar:
        return MetricResult("min cosine", {"min_cosine": values["min_cosine"], **values}, cosine_bar,
                            details=details)
    return result


def all_of(*results: MetricResult) -> MetricResult:
    """Several checks as one result: the first that fails (its value and bar are reported), else the first.

    The values of all checks are merged (the reported check's first, then the others' where the name is new),
    and ``details["checks"]`` says how each one fared.
    """
    if not results:
        raise ValueError("all_of needs at least one result")
    lead = next((r for r in results if not r.passed), results[0])
    values = dict(lead.values)
    details = dict(lead.details)
    for r in results:
        for key, value in r.values.items():
            values.setdefault(key, value)
        details.setdefault("checks", []).append(r.describe())
    return MetricResult(lead.name, values, lead.bar, lead.higher_is_better, details)


def _energy(x: np.ndarray) -> float:
    return float(np.dot(x, x)) if np.all(np.isfinite(x)) else math.inf


def _ratio(err: float, ref: float) -> float:
    if err == 0:
        return 0.0
    return math.sqrt(err / ref) if ref > 0 else math.inf


def _cosine(r: np.ndarray, c: np.ndarray) -> float:
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr == 0 and nc == 0:
        return 1.0
    if nr == 0 or nc == 0 or not np.isfinite(nc):
        return 0.0
    return float(np.dot(r, c) / (nr * nc))

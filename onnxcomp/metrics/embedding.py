"""Embeddings: are the vectors still pointing the same way, and does each sample keep its nearest neighbour?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


def _rows(samples: Sequence[Outputs], name: str, axis: int) -> np.ndarray:
    rows = [np.moveaxis(np.asarray(s[name], dtype=np.float64), axis, -1) for s in samples]
    return np.concatenate([r.reshape(-1, r.shape[-1]) for r in rows])


def embedding_agreement(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
                        axis: int = -1, bar: float = 0.99, retrieval_bar: float | None = None) -> MetricResult:
    """Mean per-vector cosine (primary), its minimum, and nearest-neighbour retrieval agreement.

    Every vector along ``axis`` (one per sample, or one per frame/token) counts. Retrieval agreement is the
    share of vectors whose nearest other vector (by cosine) is the same under both models: what a search or
    a speaker-verification system built on the embedding would notice. With ``retrieval_bar`` the result
    also fails when retrieval drops below it.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    ref = _rows(reference, name, axis)
    cand = _rows(candidate, name, axis)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, (ref * cand).sum(1) / np.maximum(norms, 1e-30), 0.0)
    cosine = np.where((np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(cand, axis=1) == 0), 1.0, cosine)
    retrieval = _retrieval_agreement(ref, cand) if len(ref) > 2 else float("nan")
    values = {"mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min()),
              "retrieval_agreement": retrieval}
    result = MetricResult("embedding cosine", values, bar, details={"vectors": len(ref), "output": name})
    if retrieval_bar is not None and not (retrieval >= retrieval_bar):
        return MetricResult(result.name, {"retrieval_agreement": retrieval, **values}, retrieval_bar,
                            details=result.details)
    return result


def _retrieval_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    def neighbours(x: np.ndarray) -> np.ndarray:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    return float((neighbours(ref) == neighbours(cand)).mean())

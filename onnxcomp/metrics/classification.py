"""Classification: does the candidate pick the same class as the original?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


def top_k_agreement(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
                    axis: int = -1, k: int = 5, bar: float = 0.99) -> MetricResult:
    """Top-1 agreement (primary) and top-k overlap of the class scores in ``output`` (default: the first).

    Every row along ``axis`` is one decision, so a batch or a sequence of per-frame scores counts each row.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    agree = total = 0
    overlap = []
    for ref, cand in zip(reference, candidate, strict=True):
        r = np.moveaxis(np.asarray(ref[name], dtype=np.float64), axis, -1).reshape(-1, ref[name].shape[axis])
        c = np.moveaxis(np.asarray(cand[name], dtype=np.float64), axis, -1).reshape(r.shape)
        agree += int((r.argmax(-1) == c.argmax(-1)).sum())
        total += len(r)
        kk = min(k, r.shape[-1])
        top_r = np.argsort(-r, axis=-1)[:, :kk]
        top_c = np.argsort(-c, axis=-1)[:, :kk]
        overlap.extend(len(set(a) & set(b)) / kk for a, b in zip(top_r, top_c, strict=True))
    values = {"top1_agreement": agree / total, f"top{k}_overlap": float(np.mean(overlap))}
    return MetricResult("top-1 agreement", values, bar, details={"decisions": total, "output": name})

"""Probability maps (text detectors such as DBNet, segmenters): does the thresholded map cover the same pixels?

What a detector built on a probability map keeps is its binary mask at the post-processing threshold, and the
regions (text boxes) cut out of it. Mask IoU compares the pixels; box F1 compares the connected regions as
boxes, which catches two text lines merging into one or a line breaking up, which barely move the IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


def maps(array: np.ndarray, *, channel: int | None = 0) -> np.ndarray:
    """One sample's maps as ``[maps, H, W]``; a 4-D ``[N, C, H, W]`` output keeps only ``channel``."""
    values = np.asarray(array)
    if values.ndim == 4 and channel is not None:
        values = values[:, channel]
    return values.reshape(-1, *values.shape[-2:])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks agree fully."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def regions(mask: np.ndarray, *, min_side: int = 3, scores: np.ndarray | None = None,
            min_score: float | None = None) -> np.ndarray:
    """Bounding boxes ``[K, 4]`` (y0, x0, y1, x1, exclusive) of the 8-connected regions of a boolean mask.

    Regions thinner than ``min_side`` are dropped, and with ``scores`` and ``min_score`` also those whose mean
    score is below it -- the filters a DB post-process applies before it turns a region into a box.
    """
    from scipy import ndimage  # scipy comes with scikit-learn / scikit-image; only box F1 needs it

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return np.zeros((0, 4), dtype=np.int64)
    boxes = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in ndimage.find_objects(labels)])
    keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= min_side
    if scores is not None and min_score is not None:
        means = np.asarray(ndimage.mean(scores, labels, index=np.arange(1, count + 1)))
        keep &= means >= min_score
    return boxes[keep]


def box_f1(ref_boxes: np.ndarray, cand_boxes: np.ndarray, *, match_iou: float = 0.5) -> float:
    """F1 of a greedy one-to-one matching of two box sets at ``match_iou``; two empty sets agree fully."""
    if len(ref_boxes) == 0 and len(cand_boxes) == 0:
        return 1.0
    if len(ref_boxes) == 0 or len(cand_boxes) == 0:
        return 0.0
    r, c = ref_boxes[:, None, :].astype(np.float64), cand_boxes[None, :, :].astype(np.float64)
    inter = (np.clip(np.minimum(r[..., 2], c[..., 2]) - np.maximum(r[..., 0], c[..., 0]), 0, None)
             * np.clip(np.minimum(r[..., 3], c[..., 3]) - np.maximum(r[..., 1], c[..., 1]), 0, None))
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    overlap = inter / np.maximum(area(r) + area(c) - inter, 1e-12)
    used_ref: set[int] = set()
    used_cand: set[int] = set()
    for flat in np.argsort(-overlap, axis=None):
        i, j = (int(k) for k in np.unravel_index(flat, overlap.shape))
        if overlap[i, j] < match_iou:
            break
        if i not in used_ref and j not in used_cand:
            used_ref.add(i)
            used_cand.add(j)
    return 2 * len(used_ref) / (len(ref_boxes) + len(cand_boxes))


def mask_iou(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
             threshold: float = 0.3, channel: int | None = 0, bar: float = 0.95, match_iou: float = 0.5,
             min_side: int = 3, box_score: float | None = None, box_bar: float | None = None) -> MetricResult:
    """Mean per-map IoU of ``map > threshold`` (primary), its minimum, and box F1 of the masks' regions.

    ``box_score`` drops regions whose mean probability is below it (DBNet's ``box_thresh``). With ``box_bar``
    the result also fails when box F1 drops below it.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    ious, f1s = [], []
    for ref, cand in zip(reference, candidate, strict=True):
        ref_maps, cand_maps = maps(ref[name], channel=channel), maps(cand[name], channel=channel)
        if ref_maps.shape != cand_maps.shape:
            raise ValueError(f"{name}: reference map {ref_maps.shape} vs candidate {cand_maps.shape}")
        for r, c in zip(ref_maps, cand_maps, strict=True):
            r_mask, c_mask = r > threshold, c > threshold
            ious.append(iou(r_mask, c_mask))
            boxes = [regions(m, min_side=min_side, scores=s, min_score=box_score)
                     for m, s in ((r_mask, r), (c_mask, c))]
            f1s.append(box_f1(*boxes, match_iou=match_iou))
    values = {"mean_iou": float(np.mean(ious)), "min_iou": float(np.min(ious)), "box_f1": float(np.mean(f1s))}
    details = {"maps": len(ious), "output": name, "threshold": threshold}
    if box_bar is not None and not (values["box_f1"] >= box_bar):
        return MetricResult(f"box F1 of regions of map > {threshold}", {"box_f1": values["box_f1"], **values},
                            box_bar, details=details)
    return MetricResult(f"mask IoU of map > {threshold}", values, bar, details=details)

"""Object detection: after the model's own decoding, thresholds and NMS, does the candidate find the same boxes?

Boxes are ``x1, y1, x2, y2`` in the model's input pixels. Rescaling to the original image is left out on purpose:
IoU does not change under the axis-aligned scaling that undoes a resize or a letterbox, and the metric only sees
the model's outputs, not the image. The decoders below are generic (keyword parameters for strides, thresholds
and layouts), so ``--metric`` wrappers for one model stay a few lines long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


@dataclass(frozen=True)
class Detections:
    """The boxes one image ends up with: ``boxes [N, 4]`` (xyxy), ``scores [N]``, ``classes [N]``."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.boxes)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre/size boxes to corners (YOLO heads predict centres)."""
    b = np.asarray(boxes, dtype=np.float64)
    half = b[..., 2:4] / 2
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def clip_boxes(boxes: np.ndarray, hw: tuple[float, float]) -> np.ndarray:
    """Clip xyxy boxes to an image of ``(height, width)``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0].clip(0, hw[1]), b[:, 1].clip(0, hw[0]), b[:, 2].clip(0, hw[1]), b[:, 3].clip(0, hw[0])],
                    axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray, *, offset: float = 0.0) -> np.ndarray:
    """Pairwise IoU ``[len(a), len(b)]``; ``offset=1`` counts pixels inclusively as some NMS codes do."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt + offset, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2] + offset, 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2] + offset, 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, top_k: int | None = None,
        candidates: int | None = None, offset: float = 0.0) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, best first; a box goes when its IoU with a kept one exceeds the bar.

    ``candidates`` looks only at that many top-scoring boxes; ``top_k`` stops after that many are kept.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if candidates is not None:
        order = order[:candidates]
    keep: list[int] = []
    while order.size and (top_k is None or len(keep) < top_k):
        best, order = order[0], order[1:]
        keep.append(int(best))
        if order.size:
            order = order[iou_matrix(boxes[best], boxes[order], offset=offset)[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def select(boxes: np.ndarray, class_scores: np.ndarray, *, score_threshold: float, iou_threshold: float,
           class_agnostic: bool = True, top_k: int | None = None, candidates: int | None = None,
           offset: float = 0.0, clip: tuple[float, float] | None = None) -> Detections:
    """Threshold and NMS ``[N, C]`` class scores over ``[N, 4]`` boxes.

    Class-agnostic: each box takes its best class and one NMS runs over all. Per class: every class whose score
    passes keeps its own boxes (NMS within the class), as PaddleDetection's multiclass NMS does. ``clip`` is the
    input ``(height, width)`` the boxes are clipped to before NMS.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if clip is not None:
        boxes = clip_boxes(boxes, clip)
    scores = np.asarray(class_scores, dtype=np.float64).reshape(len(boxes), -1)
    if class_agnostic:
        cls = scores.argmax(1)
        best = scores[np.arange(len(scores)), cls]
        idx = np.nonzero(best > score_threshold)[0]
        kept = idx[nms(boxes[idx], best[idx], iou_threshold, top_k=top_k, candidates=candidates, offset=offset)]
        return Detections(boxes[kept], best[kept], cls[kept])
    parts = []
    for c in range(scores.shape[1]):
        idx = np.nonzero(scores[:, c] > score_threshold)[0]
        kept = idx[nms(boxes[idx], scores[idx, c], iou_threshold, top_k=top_k, candidates=candidates, offset=offset)]
        parts.append((boxes[kept], scores[kept, c], np.full(len(kept), c, dtype=np.int64)))
    if not parts:
        return Detections.empty()
    return Detections(*(np.concatenate(p) for p in zip(*parts, strict=True)))


def decode_yolov8(output: np.ndarray, *, score_threshold: float = 0.25, iou_threshold: float = 0.45,
                  class_agnostic: bool = True, clip: tuple[float, float] | None = None) -> list[Detections]:
    """A YOLOv8 head ``[batch, 4 + C, anchors]`` (cx, cy, w, h, then class scores) to detections per image."""
    out = np.asarray(output, dtype=np.float64)
    out = out[None] if out.ndim == 2 else out
    return [select(cxcywh_to_xyxy(o[:4].T), o[4:].T, score_threshold=score_threshold, iou_threshold=iou_threshold,
                   class_agnostic=class_agnostic, clip=clip) for o in out]


def decode_yolox(output: np.ndarray, *, input_hw: tuple[int, int], strides: Sequence[int] = (8, 16, 32),
                 score_threshold: float = 0.1, iou_threshold: float = 0.45, offset: float = 0.0) -> list[Detections]:
    """A YOLOX head ``[batch, anchors, 5 + C]`` (grid offsets, log sizes, objectness, class scores) to detections.

    The score of a box is objectness times class score; NMS is class-agnostic, as YOLOX's demo code does it.
    """
    out = np.asarray(output, dtype=np.float64)
    grids, steps = [], []
    for s in strides:
        yy, xx = np.meshgrid(np.arange(input_hw[0] // s), np.arange(input_hw[1] // s), indexing="ij")
        grids.append(np.stack([xx.ravel(), yy.ravel()], 1))
        steps.append(np.full((xx.size, 1), s))
    grid, step = np.concatenate(grids), np.concatenate(steps)
    dets = []
    for o in out:
        centre = (o[:, :2] + grid) * step
        size = np.exp(np.minimum(o[:, 2:4], 50)) * step
        boxes = cxcywh_to_xyxy(np.concatenate([centre, size], 1))
        dets.append(select(boxes, o[:, 4:5] * o[:, 5:], score_threshold=score_threshold, iou_threshold=iou_threshold,
                           offset=offset))
    return dets


def decode_distance_bins(scores: Sequence[np.ndarray], distributions: Sequence[np.ndarray], *,
                         input_hw: tuple[int, int], strides: Sequence[int], score_threshold: float = 0.5,
                         iou_threshold: float = 0.5, level_top_k: int = 1000, top_k: int = 100,
                         candidates: int = 200) -> list[Detections]:
    """GFL-style heads (PicoDet, NanoDet): per level ``[batch, H*W, C]`` scores and ``[batch, H*W, 4*bins]``
    distance distributions; each side is the softmax expectation of its bins times the stride, from the cell centre.

    Per level only the ``level_top_k`` best cells are kept, then NMS runs per class; boxes are clipped after it.
    """
    batch = np.asarray(scores[0]).shape[0]
    dets = []
    for b in range(batch):
        all_boxes, all_scores = [], []
        for s, score, dist in zip(strides, scores, distributions, strict=True):
            score = np.asarray(score[b], dtype=np.float64)
            dist = np.asarray(dist[b], dtype=np.float64)
            height, width = int(np.ceil(input_hw[0] / s)), int(np.ceil(input_hw[1] / s))
            yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
            centre = np.stack([xx.ravel(), yy.ravel()] * 2, 1)[: len(score)] * s + s / 2
            bins = dist.reshape(len(score), 4, -1)
            bins = np.exp(bins - bins.max(-1, keepdims=True))
            distance = (bins / bins.sum(-1, keepdims=True)) @ np.arange(bins.shape[-1]) * s
            order = np.argsort(-score.max(1), kind="stable")[:level_top_k]
            all_boxes.append(centre[order] + np.array([-1, -1, 1, 1]) * distance[order])
            all_scores.append(score[order])
        found = select(np.concatenate(all_boxes), np.concatenate(all_scores), score_threshold=score_threshold,
                       iou_threshold=iou_threshold, class_agnostic=False, top_k=top_k, candidates=candidates)
        dets.append(Detections(clip_boxes(found.boxes, input_hw), found.scores, found.classes))
    return dets


def match(reference: Detections, candidate: Detections, *, iou_threshold: float = 0.5,
          class_aware: bool = True) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(ref index, cand index, IoU)``, best IoU first, at ``IoU >= iou_threshold``."""
    iou = iou_matrix(reference.boxes, candidate.boxes)
    if class_aware and iou.size:
        iou = np.where(reference.classes[:, None] == candidate.classes[None, :], iou, 0.0)
    pairs = []
    used_r, used_c = set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < iou_threshold:
            break
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c, float(iou[r, c])))
    return pairs


def box_f1(reference: Sequence[Detections], candidate: Sequence[Detections], *, iou_threshold: float = 0.5,
           class_aware: bool = True, bar: float = 0.95, min_reference_boxes: int = 1) -> MetricResult:
    """Box F1 over all images (primary), precision, recall and the mean IoU of matched boxes.

    With fewer than ``min_reference_boxes`` reference boxes in the whole set the F1 is NaN (a fail): an empty set
    compared with an empty set says nothing about the detector.
    """
    if len(reference) != len(candidate):
        raise ValueError(f"reference has {len(reference)} images, candidate {len(candidate)}")
    n_ref = sum(len(r) for r in reference)
    n_cand = sum(len(c) for c in candidate)
    ious = [iou for r, c in zip(reference, candidate, strict=True)
            for _, _, iou in match(r, c, iou_threshold=iou_threshold, class_aware=class_aware)]
    tp = len(ious)
    enough = n_ref >= max(min_reference_boxes, 1)
    f1 = 2 * tp / (n_ref + n_cand) if enough else float("nan")
    values = {"box_f1": f1, "precision": tp / n_cand if n_cand else float(n_ref == 0),
              "recall": tp / n_ref if n_ref else float("nan"),
              "mean_iou": float(np.mean(ious)) if ious else float("nan")}
    details = {"images": len(reference), "reference_boxes": n_ref, "candidate_boxes": n_cand, "matched": tp,
               "reference_boxes_per_image": round(n_ref / max(len(reference), 1), 2),
               "images_without_reference_boxes": sum(len(r) == 0 for r in reference)}
    if not enough:
        details["flag"] = f"only {n_ref} reference boxes (< {min_reference_boxes}): nothing to compare"
    return MetricResult(f"box F1 @ IoU {iou_threshold:g}", values, bar, details=details)


def detection_f1(reference: Sequence[Outputs], candidate: Sequence[Outputs], *,
                 decode: Callable[[Outputs], Sequence[Detections]], iou_threshold: float = 0.5,
                 class_aware: bool = True, bar: float = 0.95, min_reference_boxes: int = 1) -> MetricResult:
    """Decode every sample of both sides with the model's own ``decode`` (outputs -> detections per image), then
    :func:`box_f1`."""
    check_pairing(reference, candidate)
    ref = [d for sample in reference for d in decode(sample)]
    cand = [d for sample in candidate for d in decode(sample)]
    return box_f1(ref, cand, iou_threshold=iou_threshold, class_aware=class_aware, bar=bar,
                  min_reference_boxes=min_reference_boxes)

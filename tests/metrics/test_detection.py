"""Box decoding, NMS and box F1 on small synthetic heads whose right answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcomp.metrics.detection import (
    Detections,
    box_f1,
    cxcywh_to_xyxy,
    decode_distance_bins,
    decode_yolov8,
    decode_yolox,
    detection_f1,
    iou_matrix,
    match,
    nms,
    select,
)


def dets(boxes, classes=None, scores=None) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    return Detections(boxes, np.asarray(scores if scores is not None else np.ones(n), dtype=np.float64),
                      np.asarray(classes if classes is not None else np.zeros(n), dtype=np.int64))


def test_iou_matrix_known_values():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    # inclusive pixels: 11x11 boxes overlapping in a 6x11 strip
    np.testing.assert_allclose(iou_matrix(a, [[5, 0, 15, 10]], offset=1.0), [[66 / (121 + 121 - 66)]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_cxcywh_to_xyxy():
    np.testing.assert_allclose(cxcywh_to_xyxy([[10, 20, 4, 6]]), [[8, 17, 12, 23]])


def test_nms_suppresses_overlaps_and_respects_limits():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 2]
    assert nms(boxes, scores, 0.99).tolist() == [3, 0, 1, 2]
    assert nms(boxes, scores, 0.99, top_k=2).tolist() == [3, 0]
    assert nms(boxes, scores, 0.5, candidates=2).tolist() == [3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_select_class_agnostic_versus_per_class():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5]])
    scores = np.array([[0.9, 0.0], [0.0, 0.8]])
    agnostic = select(boxes, scores, score_threshold=0.5, iou_threshold=0.5)
    assert agnostic.classes.tolist() == [0]
    per_class = select(boxes, scores, score_threshold=0.5, iou_threshold=0.5, class_agnostic=False)
    assert sorted(per_class.classes.tolist()) == [0, 1]
    assert len(select(boxes, scores, score_threshold=0.95, iou_threshold=0.5)) == 0
    clipped = select(np.array([[-5, -5, 20, 20]]), np.array([[1.0]]), score_threshold=0.5, iou_threshold=0.5,
                     clip=(10, 8))
    np.testing.assert_allclose(clipped.boxes, [[0, 0, 8, 10]])


def test_decode_yolov8_head():
    head = np.zeros((1, 4 + 3, 5))
    head[0, :4, 1] = [50, 40, 20, 10]  # cx, cy, w, h
    head[0, 4 + 2, 1] = 0.9
    head[0, :4, 3] = [51, 40, 20, 10]  # a duplicate, lower score
    head[0, 4 + 2, 3] = 0.6
    head[0, :4, 4] = [200, 200, 10, 10]
    head[0, 4 + 0, 4] = 0.2  # under the threshold
    (found,) = decode_yolov8(head, score_threshold=0.25, iou_threshold=0.45)
    np.testing.assert_allclose(found.boxes, [[40, 35, 60, 45]])
    assert found.classes.tolist() == [2]
    assert found.scores.tolist() == [pytest.approx(0.9)]
    assert len(decode_yolov8(head[0], score_threshold=0.1)[0]) == 2  # unbatched head, low threshold


def test_decode_yolox_grid_and_strides():
    hw = (64, 64)
    cells = (8 * 8) + (4 * 4) + (2 * 2)
    out = np.zeros((1, cells, 6))
    # stride-16 level starts after the 64 stride-8 cells; cell (row 1, col 2) of the 4x4 grid
    index = 64 + 1 * 4 + 2
    out[0, index] = [0.5, 0.5, math.log(2.0), math.log(1.0), 0.9, 0.8]
    (found,) = decode_yolox(out, input_hw=hw, score_threshold=0.1)
    # centre ((2 + 0.5) * 16, (1 + 0.5) * 16) = (40, 24); size (32, 16)
    np.testing.assert_allclose(found.boxes, [[24, 16, 56, 32]])
    assert found.scores.tolist() == [pytest.approx(0.72)]


def test_decode_distance_bins_expectation():
    hw, strides, bins = (16, 16), (8, 16), 8
    scores = [np.zeros((1, 4, 2)), np.zeros((1, 1, 2))]
    dists = [np.zeros((1, 4, 4 * bins)), np.zeros((1, 1, 4 * bins))]
    # stride-8 cell 3 (row 1, col 1): centre (12, 12); sides left/top/right/bottom peaked at bins 1, 1, 2, 0
    scores[0][0, 3, 1] = 0.9
    logits = np.full((4, bins), -50.0)
    logits[[0, 1, 2, 3], [1, 1, 2, 0]] = 50.0
    dists[0][0, 3] = logits.ravel()
    (found,) = decode_distance_bins(scores, dists, input_hw=hw, strides=strides, score_threshold=0.5)
    np.testing.assert_allclose(found.boxes, [[4, 4, 16, 12]], atol=1e-6)  # right side 28 clipped to 16
    assert found.classes.tolist() == [1]


def test_match_is_one_to_one_and_class_aware():
    ref = dets([[0, 0, 10, 10], [0, 0, 10, 10]], classes=[0, 1])
    cand = dets([[0, 0, 10, 10]], classes=[1])
    assert match(ref, cand) == [(1, 0, 1.0)]
    assert len(match(ref, cand, class_aware=False)) == 1
    assert match(ref, dets([[0, 0, 10, 10]], classes=[2])) == []


def test_box_f1_perfect_partial_and_flagged():
    ref = [dets([[0, 0, 10, 10], [20, 20, 30, 30]]), dets([[5, 5, 15, 15]])]
    perfect = box_f1(ref, ref)
    assert perfect.passed and perfect.value == 1.0 and perfect.values["mean_iou"] == 1.0
    # one box lost, one shifted to IoU 1/3 (unmatched), one spurious box added
    cand = [dets([[0, 0, 10, 10], [40, 40, 50, 50]]), dets([[10, 5, 20, 15]])]
    partial = box_f1(ref, cand)
    assert partial.value == pytest.approx(2 * 1 / (3 + 3))
    assert not partial.passed
    assert partial.details["reference_boxes"] == 3 and partial.details["matched"] == 1
    slightly_moved = [dets([[0, 0, 10, 11], [20, 20, 30, 30]]), dets([[5, 5, 15, 15]])]
    moved = box_f1(ref, slightly_moved)
    assert moved.value == 1.0 and moved.values["mean_iou"] < 1.0
    wrong_class = box_f1(ref, [dets(d.boxes, classes=[1] * len(d)) for d in ref])
    assert wrong_class.value == 0.0
    assert box_f1(ref, [dets(d.boxes, classes=[1] * len(d)) for d in ref], class_aware=False).value == 1.0


def test_box_f1_empty_reference_is_not_a_pass():
    empty = [Detections.empty(), Detections.empty()]
    result = box_f1(empty, empty)
    assert math.isnan(result.value) and not result.passed
    assert "flag" in result.details
    few = box_f1([dets([[0, 0, 1, 1]])], [dets([[0, 0, 1, 1]])], min_reference_boxes=3)
    assert not few.passed
    with pytest.raises(ValueError):
        box_f1(empty, empty[:1])


def test_detection_f1_decodes_each_sample():
    head = np.zeros((1, 5, 2))
    head[0, :, 0] = [10, 10, 4, 4, 0.9]
    moved = head.copy()
    moved[0, 0, 0] = 30
    decode = lambda sample: decode_yolov8(sample["out"], score_threshold=0.5)  # noqa: E731
    assert detection_f1([{"out": head}], [{"out": head}], decode=decode).value == 1.0
    assert detection_f1([{"out": head}], [{"out": moved}], decode=decode).value == 0.0

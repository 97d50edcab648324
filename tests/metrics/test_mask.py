"""The mask metric compares thresholded maps pixel by pixel and their regions as boxes."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcomp.metrics.mask import box_f1, iou, maps, mask_iou, regions


def page(lines: list[tuple[int, int, int, int]], shape: tuple[int, int] = (64, 96)) -> np.ndarray:
    """A ``[1, 1, H, W]`` probability map with 0.9 inside each (y0, x0, y1, x1) box, 0.05 elsewhere."""
    prob = np.full(shape, 0.05, dtype=np.float32)
    for y0, x0, y1, x1 in lines:
        prob[y0:y1, x0:x1] = 0.9
    return prob[None, None]


LINES = [(4, 4, 12, 80), (20, 4, 28, 60), (36, 10, 44, 90)]


def test_iou_and_maps():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert iou(a, b) == 1.0
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == pytest.approx(1 / 3)
    assert maps(np.zeros((2, 3, 5, 6)), channel=1).shape == (2, 5, 6)
    assert maps(np.zeros((5, 6))).shape == (1, 5, 6)


def test_regions_filters_thin_and_low_score():
    prob = page([*LINES, (50, 4, 52, 40)])[0, 0]  # the last one is 2 px thin
    boxes = regions(prob > 0.3)
    assert sorted(map(tuple, boxes.tolist())) == sorted(LINES)
    prob[36:44, 10:90] = 0.4  # above the binarization threshold, below the box score
    assert len(regions(prob > 0.3, scores=prob, min_score=0.5)) == 2


def test_box_f1_matching():
    ref = np.array(LINES)
    assert box_f1(ref, ref) == 1.0
    assert box_f1(ref, ref[:2]) == pytest.approx(0.8)
    assert box_f1(ref[:0], ref[:0]) == 1.0
    assert box_f1(ref, ref[:0]) == 0.0
    merged = np.array([(4, 4, 28, 80), LINES[2]])  # two lines fused into one region
    assert box_f1(ref, merged) == pytest.approx(2 * 1 / 5)


def test_mask_iou_identical_passes():
    ref = [{"p": page(LINES)}, {"p": page(LINES[:1])}]
    result = mask_iou(ref, ref)
    assert result.passed
    assert result.values == {"mean_iou": 1.0, "min_iou": 1.0, "box_f1": 1.0}


def test_mask_iou_fails_on_a_lost_line_and_sees_a_merge():
    ref = [{"p": page(LINES)}]
    lost = [{"p": page(LINES[:2])}]
    result = mask_iou(ref, lost)
    assert not result.passed and result.value < 0.8
    bridged = [{"p": page([*LINES, (12, 4, 20, 8)])}]  # a thin bridge fuses the first two lines
    loose = mask_iou(ref, bridged)
    assert loose.passed and loose.values["box_f1"] < 0.9
    strict = mask_iou(ref, bridged, box_bar=0.95)
    assert not strict.passed and strict.primary == "box_f1"
    with pytest.raises(ValueError):
        mask_iou(ref, [{"p": page(LINES, shape=(32, 96))}])

"""Shape and indexing ops of the interpreter against onnxruntime: Pad, Range, Slice, reductions, ArgMax, ..."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

X = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) / 7 - 2


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


@pytest.mark.parametrize(("mode", "pads", "opset"), [
    ("constant", (0, 1, 2, 0, 2, 1), 13), ("constant", (0, -1, 1, 0, 1, -2), 13),
    ("reflect", (0, 2, 3, 0, 1, 4), 13), ("edge", (1, 0, 2, 0, 3, 1), 13), ("wrap", (0, 2, 4, 0, 1, 3), 19),
    ("reflect", (0, -1, 2, 0, 0, -1), 13),
])
def test_pad_modes(same, node, mode: str, pads: tuple, opset: int):
    same(node("Pad", {"x": X}, {"pads": _i64(*pads)}, mode=mode, opset=opset), {"x": X})


def test_pad_constant_value_axes_and_the_attribute_form(same, node):
    weights = {"pads": _i64(1, 2, 3, 0), "value": np.array(9.5, np.float32), "axes": _i64(-1, 1)}
    same(node("Pad", {"x": X}, weights, inputs=["x", "pads", "value", "axes"], opset=18), {"x": X})
    same(node("Pad", {"x": X}, opset=2, pads=[0, 1, 1, 0, 0, 2], value=-1.0), {"x": X})


@pytest.mark.parametrize(("start", "limit", "delta"), [(0, 7, 2), (10, 1, -3), (4, 4, 1), (0.5, 3.2, 0.3),
                                                       (1.0, -1.0, -0.25)])
def test_range_counts_and_accumulates_like_onnxruntime(same, node, start, limit, delta):
    dtype = np.int64 if isinstance(start, int) else np.float32
    feed = {"s": np.array(start, dtype), "l": np.array(limit, dtype), "d": np.array(delta, dtype)}
    same(node("Range", feed), feed)


def test_size_and_shape_slices(same, node):
    same(node("Size", {"x": X}), {"x": X})
    same(node("Shape", {"x": X}, start=-2, opset=15), {"x": X})


@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), [
    ((4,), (-100,), (2,), (-1,)), ((-1, 2), (0, 100), (1, 2), (-2, 2)), ((10,), (0,), (-1,), (-3,)),
    ((1,), (1000,), (0,), (1,)), ((-2,), (-1,), (1,), (1,)),
])
def test_slice_with_negative_steps_and_out_of_range_bounds(same, node, starts, ends, axes, steps):
    weights = {"starts": _i64(*starts), "ends": _i64(*ends), "axes": _i64(*axes), "steps": _i64(*steps)}
    same(node("Slice", {"x": X}, weights), {"x": X})


@pytest.mark.parametrize("op_type", ["ReduceL1", "ReduceL2", "ReduceProd", "ReduceSumSquare", "ReduceLogSumExp",
                                     "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum"])
@pytest.mark.parametrize("opset", [13, 18])
def test_reductions_with_axes_as_attribute_or_input(same, node, op_type: str, opset: int):
    x = np.abs(X) + 0.5
    if opset >= 18 or (op_type == "ReduceSum" and opset >= 13):
        same(node(op_type, {"x": x}, {"axes": _i64(0, -1)}, keepdims=0, opset=opset), {"x": x})
    else:
        same(node(op_type, {"x": x}, axes=[0, -1], keepdims=0, opset=opset), {"x": x})
    same(node(op_type, {"x": x}, opset=opset), {"x": x})  # all axes


def test_reduce_log_sum(same, node):
    same(node("ReduceLogSum", {"x": np.abs(X) + 1}, axes=[1], opset=13), {"x": np.abs(X) + 1})


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [0, 1])
def test_argmax_argmin_ties_first_or_last(same, node, op_type: str, last: int):
    x = np.array([[1, 3, 3, 0], [2, 2, 0, 0]], np.float32)
    same(node(op_type, {"x": x}, axis=1, keepdims=0, select_last_index=last), {"x": x})
    same(node(op_type, {"x": x}, axis=0, select_last_index=last), {"x": x})


def test_array_feature_extractor_of_a_class_list_and_of_columns(same, node):
    indices = {"i": _i64(2, 0, 2)}
    ml = {"domain": "ai.onnx.ml"}
    same(node("ArrayFeatureExtractor", indices, {"classes": _i64(10, 11, 12)}, inputs=["classes", "i"], **ml), indices)
    same(node("ArrayFeatureExtractor", {"x": X, **indices}, inputs=["x", "i"], **ml), {"x": X, **indices})


def test_dropout_is_identity_with_a_mask_of_ones(same, node):
    same(node("Dropout", {"x": X}, outputs=("y", "mask"), opset=13), {"x": X})
    same(node("Dropout", {"x": X}, opset=9, ratio=0.5), {"x": X})


def test_tile_gather_elements_flatten_and_split(same, node):
    same(node("Tile", {"x": X}, {"r": _i64(2, 1, 3)}), {"x": X})
    same(node("GatherElements", {"x": X}, {"i": np.array([[[0, -1, 2]]] * 2, np.int64)}, axis=2), {"x": X})
    same(node("Flatten", {"x": X}, axis=-1), {"x": X})
    same(node("Split", {"x": X}, outputs=("a", "b"), axis=2, num_outputs=2, opset=18), {"x": X})
    same(node("Split", {"x": X}, {"s": _i64(1, 4)}, outputs=("a", "b"), axis=-1, opset=13), {"x": X})

"""Resize and Upsample in the interpreter against onnxruntime: every nearest rounding, linear, sizes, old opsets."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

pytest.importorskip("torch")

import torch

from onnxcomp.torch_exec.graph import TorchGraph
from onnxcomp.torch_exec.ops import unsupported_ops

X = np.random.default_rng(0).standard_normal((1, 2, 5, 7), dtype=np.float32)
EMPTY = np.zeros(0, np.float32)
COORDINATES = ["half_pixel", "asymmetric", "pytorch_half_pixel", "align_corners", "half_pixel_symmetric"]


def _resize(node, scales=None, sizes=None, opset: int = 19, **attributes):
    weights = {"roi": EMPTY, "scales": np.array(scales, np.float32) if scales is not None else EMPTY}
    names = ["x", "roi", "scales"]
    if sizes is not None:
        weights["sizes"] = np.array(sizes, np.int64)
        names.append("sizes")
    return node("Resize", {"x": X}, weights, inputs=names, opset=opset, **attributes)


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("rounding", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("scales", [(1, 1, 2, 3), (1, 1, 0.6, 1.5)])
def test_nearest_picks_the_pixels_onnxruntime_picks(same, node, coordinates, rounding, scales):
    same(_resize(node, scales, mode="nearest", coordinate_transformation_mode=coordinates, nearest_mode=rounding),
         {"x": X})


@pytest.mark.parametrize("coordinates", COORDINATES)
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 0.5, 1.7)])
def test_linear(same, node, coordinates, scales):
    same(_resize(node, scales, mode="linear", coordinate_transformation_mode=coordinates), {"x": X})


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_sizes_instead_of_scales_and_axes(same, node, mode):
    same(_resize(node, sizes=(1, 2, 9, 4), mode=mode), {"x": X})
    model = node("Resize", {"x": X}, {"sizes": np.array([3, 11], np.int64)}, inputs=["x", "", "", "sizes"],
                 opset=19, axes=[2, 3], mode=mode)
    same(model, {"x": X})


def test_tf_half_pixel_for_nn_at_opset_11(same, node):
    same(_resize(node, (1, 1, 1.5, 2.5), opset=11, mode="nearest",
                 coordinate_transformation_mode="tf_half_pixel_for_nn"), {"x": X})


@pytest.mark.parametrize("scales", [(1, 1, 2, 3), (1, 1, 0.5, 0.4)])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_10_and_upsample_9(same, node, scales, mode):
    scale = {"scales": np.array(scales, np.float32)}
    same(node("Resize", {"x": X}, scale, opset=10, mode=mode), {"x": X})
    if min(scales) >= 1:
        same(node("Upsample", {"x": X}, scale, opset=9, mode=mode), {"x": X})


def test_resize_is_differentiable_in_its_input(node):
    model = ir.serde.deserialize_model(_resize(node, (1, 1, 2, 2), mode="linear"))
    x = torch.from_numpy(X).requires_grad_()
    TorchGraph(model)({"x": x})["y"].sum().backward()
    np.testing.assert_allclose(float(x.grad.sum()), 4 * X.size, rtol=1e-5)  # every input pixel, spread 4-fold


def test_unsupported_variants_are_named_up_front(node):
    cubic = ir.serde.deserialize_model(_resize(node, (1, 1, 2, 2), mode="cubic"))
    crop = ir.serde.deserialize_model(_resize(node, (1, 1, 2, 2), coordinate_transformation_mode="tf_crop_and_resize"))
    assert unsupported_ops(cubic.graph) == ["Resize mode 'cubic'"]
    assert unsupported_ops(crop.graph) == ["Resize coordinate_transformation_mode 'tf_crop_and_resize'"]

"""Layers of the interpreter against onnxruntime: ConvTranspose in all its padding forms, norms, pooling."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

pytest.importorskip("torch")

import torch

from onnxcomp.torch_exec.graph import TorchGraph


@pytest.fixture
def conv_data(rng):
    return {"x": rng.standard_normal((1, 4, 5, 6), dtype=np.float32)}, {
        "w": rng.standard_normal((4, 3, 3, 2), dtype=np.float32), "b": rng.standard_normal(3, dtype=np.float32)}


@pytest.mark.parametrize("attributes", [
    {"strides": [2, 2]},
    {"strides": [2, 3], "pads": [1, 0, 2, 1]},
    {"strides": [2, 2], "output_padding": [1, 1]},
    {"strides": [3, 2], "pads": [1, 1, 0, 0], "output_padding": [2, 1], "dilations": [1, 2]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"strides": [3, 2], "output_shape": [14, 13]},
    {"strides": [2, 2], "auto_pad": "SAME_UPPER", "output_shape": [11, 12]},
    {"strides": [3, 3], "auto_pad": "SAME_LOWER"},
    {"strides": [3, 3], "kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "output_padding": [1, 0]},
    {"auto_pad": "VALID", "group": 2},
])
def test_conv_transpose_matches_onnxruntime(same, node, conv_data, attributes: dict):
    feed, weights = conv_data
    if attributes.get("group") == 2:  # [C_in, C_out / group, k...]: 4 outputs from 2 groups of 2
        weights = {"w": weights["w"][:, :2], "b": np.arange(4, dtype=np.float32)}
    same(node("ConvTranspose", feed, weights, **attributes), feed)


def test_conv_transpose_trains_its_weight(node, conv_data):
    feed, weights = conv_data
    graph = TorchGraph(ir.serde.deserialize_model(node("ConvTranspose", feed, weights, strides=[2, 2],
                                                       pads=[1, 0, 0, 1])))
    graph(feed)["y"].square().sum().backward()
    assert all(p.grad is not None and torch.count_nonzero(p.grad) for p in graph.parameters())


def test_conv_1d_with_asymmetric_pads(same, node, rng):
    feed = {"x": rng.standard_normal((2, 3, 9), dtype=np.float32)}
    same(node("Conv", feed, {"w": rng.standard_normal((4, 3, 3), dtype=np.float32)}, pads=[2, 0], strides=[2]), feed)


@pytest.mark.parametrize(("op_type", "attributes"), [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [1, 2], "strides": [1, 2], "pads": [0, 0, 0, 1]}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [3, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
])
def test_pooling(same, node, rng, op_type: str, attributes: dict):
    feed = {"x": rng.standard_normal((1, 2, 7, 8), dtype=np.float32)}
    same(node(op_type, feed, **attributes), feed)


def test_instance_and_layer_normalization(same, node, rng):
    feed = {"x": rng.standard_normal((2, 3, 4, 5), dtype=np.float32)}
    weights = {"s": rng.standard_normal(3, dtype=np.float32), "b": rng.standard_normal(3, dtype=np.float32)}
    same(node("InstanceNormalization", feed, weights, epsilon=1e-3), feed)
    weights = {"s": rng.standard_normal((4, 5), dtype=np.float32), "b": rng.standard_normal((4, 5), dtype=np.float32)}
    same(node("LayerNormalization", feed, weights, axis=2), feed, atol=2e-5)

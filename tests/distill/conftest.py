"""One-node (or few-node) ONNX graphs run by onnxruntime and by the torch interpreter, for op-by-op parity tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from onnxcomp.session import create_session, run_named


def node_model(op_type: str, feed: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray] | None = None,
               inputs: Sequence[str] | None = None, outputs: Sequence[str] = ("y",), opset: int = 17,
               domain: str = "", **attributes: Any) -> onnx.ModelProto:
    """A model of one ``op_type`` node: ``feed`` names become graph inputs, ``weights`` initializers.

    ``inputs`` orders the node's inputs (``""`` for an omitted optional one); by default feed then weights.
    """
    weights = dict(weights or {})
    names = list(inputs) if inputs is not None else [*feed, *weights]
    node = helper.make_node(op_type, names, list(outputs), domain=domain, **attributes)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feed.items()],
        [onnx.ValueInfoProto(name=name) for name in outputs if name],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def run_both(proto: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                                               dict[str, np.ndarray]]:
    """(onnxruntime's outputs, the interpreter's outputs) by name."""
    import torch

    from onnxcomp.torch_exec.graph import TorchGraph

    expected = run_named(create_session(proto.SerializeToString()), feed)
    with torch.no_grad():
        actual = {k: v.numpy() for k, v in TorchGraph(ir.serde.deserialize_model(proto))(feed).items()}
    return expected, actual


def assert_same(proto: onnx.ModelProto, feed: Mapping[str, np.ndarray], atol: float = 1e-5,
                rtol: float = 1e-5) -> dict[str, np.ndarray]:
    """The interpreter computes what onnxruntime computes: same shapes, dtypes, values."""
    expected, actual = run_both(proto, feed)
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        assert actual[name].shape == value.shape, (name, actual[name].shape, value.shape)
        assert actual[name].dtype == value.dtype, (name, actual[name].dtype, value.dtype)
        if value.dtype.kind == "f":
            np.testing.assert_allclose(actual[name], value, atol=atol, rtol=rtol, err_msg=name)
        else:
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
    return expected


@pytest.fixture
def same() -> Callable[..., dict[str, np.ndarray]]:
    pytest.importorskip("torch")
    return assert_same


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def node() -> Callable[..., onnx.ModelProto]:
    return node_model


@pytest.fixture
def both() -> Callable[..., tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    pytest.importorskip("torch")
    return run_both

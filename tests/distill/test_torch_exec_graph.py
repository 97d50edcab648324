"""The differentiable interpreter: same outputs as onnxruntime on every fixture, clear failure on unknown ops."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper
from support import FIXTURES

pytest.importorskip("torch")

import torch

from onnxcomp import io
from onnxcomp.data import input_specs
from onnxcomp.errors import InputError
from onnxcomp.session import create_session, run_named
from onnxcomp.torch_exec.graph import TorchGraph

ALL_FIXTURES = sorted(path.stem for path in FIXTURES.glob("*.onnx"))


def _feed(model, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in input_specs(model):
        shape = [d if isinstance(d, int) else 3 for d in spec.shape]
        feed[spec.name] = (rng.random(shape).astype(spec.dtype) if spec.dtype.kind == "f"
                           else rng.integers(0, 5, shape).astype(spec.dtype))
    return feed


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_interpreter_matches_onnxruntime(name: str):
    path = FIXTURES / f"{name}.onnx"
    model = io.load(path)
    feed = _feed(model)
    expected = run_named(create_session(str(path)), feed)
    with torch.no_grad():
        actual = TorchGraph(model)(feed)
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key].numpy(), value, atol=2e-5, rtol=1e-5)


def test_trainable_and_frozen_weights_have_reasons():
    graph = TorchGraph(io.load(FIXTURES / "resnet.onnx"))
    reasons = {reason for _, reason in graph.frozen}
    assert any("BatchNormalization running statistic" in reason for reason in reasons)
    assert all(weight.parameter.requires_grad for weight in graph.trainable)
    assert {w.ref.name for w in graph.trainable}.isdisjoint({ref.name for ref, _ in graph.frozen})


def test_gradients_reach_weights_behind_identity_aliases():
    model = io.load(FIXTURES / "resnet.onnx")
    graph = TorchGraph(model)
    out = graph({"input": np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)})["logits"]
    out.sum().backward()
    assert all(w.parameter.grad is not None and torch.any(w.parameter.grad != 0) for w in graph.trainable)


def test_unsupported_op_is_named():
    graph = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    model = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match=r"unsupported op.*Hardmax"):
        TorchGraph(ir.serde.deserialize_model(model))

"""LSTM in the interpreter against onnxruntime: directions, states, layouts, sequence lengths, peepholes, clip."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

pytest.importorskip("torch")

import torch

from onnxcomp.torch_exec.graph import TorchGraph

SEQ, BATCH, INPUT, HIDDEN = 5, 3, 4, 6
OUTPUTS = ("y", "y_h", "y_c")


def _weights(rng, dirs: int, peepholes: bool = False) -> dict[str, np.ndarray]:
    found = {"W": rng.standard_normal((dirs, 4 * HIDDEN, INPUT), dtype=np.float32) * 0.5,
             "R": rng.standard_normal((dirs, 4 * HIDDEN, HIDDEN), dtype=np.float32) * 0.5,
             "B": rng.standard_normal((dirs, 8 * HIDDEN), dtype=np.float32) * 0.5}
    if peepholes:
        found["P"] = rng.standard_normal((dirs, 3 * HIDDEN), dtype=np.float32)
    return found


def _model(node, rng, direction: str = "forward", layout: int = 0, states: bool = True, lengths=None,
           peepholes: bool = False, **attributes):
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = (SEQ, BATCH, INPUT) if not layout else (BATCH, SEQ, INPUT)
    s_shape = (dirs, BATCH, HIDDEN) if not layout else (BATCH, dirs, HIDDEN)
    feed = {"x": rng.standard_normal(x_shape, dtype=np.float32)}
    if states:
        feed["h0"] = rng.standard_normal(s_shape, dtype=np.float32)
        feed["c0"] = rng.standard_normal(s_shape, dtype=np.float32)
    weights = _weights(rng, dirs, peepholes)
    if lengths is not None:
        weights["L"] = np.array(lengths, np.int32)
    names = ["x", "W", "R", "B", "L" if lengths is not None else "", "h0" if states else "", "c0" if states else "",
             "P" if peepholes else ""]
    model = node("LSTM", feed, weights, inputs=names, outputs=OUTPUTS, hidden_size=HIDDEN, direction=direction,
                 layout=layout, **attributes)
    return model, feed


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("states", [True, False])
def test_plain_lstm_runs_on_torch_kernel(same, node, rng, direction: str, states: bool):
    same(*_model(node, rng, direction, states=states), atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_batch_major_layout_is_the_transposed_time_major_result(node, both, direction: str):
    """onnxruntime refuses ``layout=1``; the interpreter must give the time-major result, transposed."""
    proto, feed = _model(node, np.random.default_rng(2), direction)
    batch_major, _ = _model(node, np.random.default_rng(2), direction, layout=1)
    expected, _ = both(proto, feed)
    swapped = {name: np.ascontiguousarray(array.swapaxes(0, 1)) for name, array in feed.items()}
    with torch.no_grad():
        actual = TorchGraph(ir.serde.deserialize_model(batch_major))(swapped)
    np.testing.assert_allclose(actual["y"].numpy(), expected["y"].transpose(2, 0, 1, 3), atol=1e-5)
    for name in ("y_h", "y_c"):
        np.testing.assert_allclose(actual[name].numpy(), expected[name].swapaxes(0, 1), atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_shorter_sequences_hold_their_state_and_output_zeros(same, node, rng, direction: str):
    out = same(*_model(node, rng, direction, lengths=[5, 2, 3]), atol=1e-5)
    assert np.all(out["y"][2:, :, 1] == 0) and np.all(out["y"][3:, :, 2] == 0)


@pytest.mark.parametrize("attributes", [{"clip": 0.7}, {"input_forget": 1},
                                        {"activations": ["Sigmoid", "Relu", "Tanh"]}])
def test_loop_variants(same, node, rng, attributes: dict):
    same(*_model(node, rng, **attributes), atol=1e-5)


def test_peepholes(same, node, rng):
    same(*_model(node, rng, "bidirectional", peepholes=True), atol=1e-5)


def test_fused_and_loop_paths_give_the_same_gradients(node, rng):
    """A clip no value reaches forces the step loop; it must train the weights exactly as torch's kernel does."""
    proto, feed = _model(node, np.random.default_rng(1), "bidirectional")
    looped, _ = _model(node, np.random.default_rng(1), "bidirectional", clip=1e6)
    grads = []
    for model in (proto, looped):
        graph = TorchGraph(ir.serde.deserialize_model(model))
        outputs = graph(feed)
        (outputs["y"].sum() + outputs["y_c"].square().sum()).backward()
        grads.append({w.ref.name: w.parameter.grad for w in graph.trainable})
    assert set(grads[0]) == {"W", "R", "B"}
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4)


def test_unsupported_activation_is_named(node, rng):
    from onnxcomp.torch_exec.ops import unsupported_ops

    proto, _ = _model(node, rng, activations=["HardSigmoid", "Tanh", "Tanh"])
    assert unsupported_ops(ir.serde.deserialize_model(proto).graph) == ["LSTM activation(s) HardSigmoid"]

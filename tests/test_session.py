"""onnxcomp.session: provider resolution, session creation errors, input specs and feed checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxcomp import session as sess
from onnxcomp.errors import InputError
from onnxcomp.session import (
    FeedSpec,
    ProviderUnavailableError,
    available_providers,
    check_feed,
    create_session,
    model_feed_specs,
    model_output_specs,
    one_line,
    resolve_provider,
    run_named,
)

CUDA_HERE = resolve_provider("cuda").available


def _model(path: Path | None = None) -> bytes:
    """x [N, 3] float, mask [2] bool (unused by the output) → y = x @ W, W [3, 2]."""
    weight = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "mm",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if path is not None:
        onnx.save(model, path)
    return model.SerializeToString()


def _feed(rows: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.ones((rows, 3), np.float32), "mask": np.array([True, False])}


def test_cpu_is_always_available_under_any_spelling() -> None:
    assert "CPUExecutionProvider" in available_providers()
    for name in ("cpu", "CPU", "CPUExecutionProvider"):
        assert resolve_provider(name) == sess.ProviderStatus("cpu", "CPUExecutionProvider", True, None)


@pytest.mark.skipif(CUDA_HERE, reason="CUDA works on this machine")
def test_cuda_is_reported_unavailable_with_a_reason() -> None:
    status = resolve_provider("cuda")
    assert (status.name, status.ort_name, status.available) == ("cuda", "CUDAExecutionProvider", False)
    assert status.reason is not None and status.reason.startswith("cuda: not available (")


def test_listed_provider_that_falls_back_to_cpu_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu without a GPU lists CUDA but builds CPU sessions: the probe must notice."""
    if CUDA_HERE:
        pytest.skip("CUDA works on this machine")
    listed = [*ort.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    sess._probe_provider.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime warns that it does not really have CUDA
            status = resolve_provider("cuda")
    finally:
        sess._probe_provider.cache_clear()
    assert not status.available
    assert status.reason == "cuda: not available (no GPU / CUDA libraries failed to load)"


@pytest.mark.skipif(CUDA_HERE, reason="CUDA works on this machine")
def test_creating_a_session_on_an_unavailable_provider_is_an_input_error() -> None:
    with pytest.raises(ProviderUnavailableError, match="cuda: not available") as caught:
        create_session(_model(), "cuda")
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2


def test_unknown_provider_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown provider 'tpu': use one of cpu, cuda"):
        resolve_provider("tpu")


def test_unloadable_model_raises_a_one_line_input_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(InputError) as caught:
        create_session(broken)
    message = str(caught.value)
    assert message.startswith(f"cannot load model {broken}: ") and "\n" not in message
    assert "ONNXRuntimeError" in message

    with pytest.raises(InputError, match=r"cannot load model .*missing\.onnx: no such file"):
        create_session(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="cannot load model <in-memory model, 3 bytes>"):
        create_session(b"abc")


def test_session_options_threads_logging_and_optimization(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    _model(path)
    session = create_session(path, intra_op_threads=2, graph_optimization="disable")
    options = session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.log_severity_level == 3
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert sess.session_intra_op_threads(session) == 2 and sess.session_provider(session) == "cpu"
    assert sess.session_intra_op_threads(create_session(str(path))) is None
    with pytest.raises(InputError, match="intra-op threads must be at least 1"):
        create_session(path, intra_op_threads=0)
    with pytest.raises(InputError, match="unknown graph optimization level 'max'"):
        create_session(path, graph_optimization="max")


def test_feed_and_output_specs_describe_the_model() -> None:
    session = create_session(_model())
    x, mask = model_feed_specs(session)
    assert x == FeedSpec("x", "tensor(float)", np.dtype(np.float32), ("N", 3))
    assert mask.dtype == np.dtype(np.bool_) and mask.shape == (2,)
    assert x.describe() == "x: float32[N, 3]" and mask.describe() == "mask: bool[2]"
    assert [spec.describe() for spec in model_output_specs(session)] == ["y: float32[N, 2]"]
    assert FeedSpec("s", "seq(tensor(float))", None, None).describe() == "s: seq(tensor(float))[...]"


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        (
            {"mask": np.array([True, False])},
            r"model input x: float32\[N, 3\] is missing from the data \(got mask\)",
        ),
        (
            {**_feed(), "x": np.ones((2, 3))},
            r"input 'x': got dtype float64; the model expects x: float32\[N, 3\]",
        ),
        ({**_feed(), "x": np.ones(3, np.float32)}, r"input 'x': got rank 1 \(shape \(3,\)\)"),
        ({**_feed(), "x": np.ones((2, 4), np.float32)}, r"input 'x': dimension 1 is 4 \(shape \(2, 4\)\)"),
    ],
)
def test_check_feed_explains_what_does_not_fit(feed: dict[str, np.ndarray], message: str) -> None:
    specs = model_feed_specs(create_session(_model()))
    with pytest.raises(InputError, match=f"^data.npz item 3: {message}"):
        check_feed(specs, feed, where="data.npz item 3")


def test_check_feed_accepts_a_fitting_feed_with_extra_keys() -> None:
    specs = model_feed_specs(create_session(_model()))
    check_feed(specs, {**_feed(rows=5), "labels": np.zeros(5)})


def test_run_named_returns_outputs_by_name_and_ignores_extra_keys() -> None:
    outputs = run_named(create_session(_model()), {**_feed(), "labels": np.zeros(2)})
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"], np.array([[6.0, 9.0], [6.0, 9.0]], np.float32))


def test_one_line_joins_and_truncates() -> None:
    assert one_line(RuntimeError("first\n  second\n\nthird")) == "first second third"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert len(one_line("x" * 500, limit=50)) == 50
    kernel = (
        "[ONNXRuntimeError] : 1 : FAIL : Status Message: /onnxruntime_src/core/reshape_helper.h:84 "
        "onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, bool) "
        "size != 0 was false."
    )
    assert one_line(kernel) == "[ONNXRuntimeError] : 1 : FAIL : Status Message: size != 0 was false."


def test_shapeless_inputs_are_not_rejected_by_check_feed() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "shapeless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (spec,) = model_feed_specs(create_session(model.SerializeToString()))
    assert spec.shape is None and spec.describe() == "x: float32[...]"
    check_feed([spec], {"x": np.ones((2, 3), np.float32)})

"""Data sources: npz, folders, module:function and random, each validated against the model's inputs."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from support import FIXTURES, fixture_path, gemm_model

from onnxcomp import io
from onnxcomp.data import InputSpec, RandomDataWarning, input_specs, open_data, parse_shapes, validate_feed
from onnxcomp.errors import InputError


@pytest.fixture(scope="module")
def lenet5_inputs() -> list[InputSpec]:
    return input_specs(io.load(fixture_path("lenet5")))


def test_input_specs_read_dtype_and_symbolic_batch(lenet5_inputs):
    (spec,) = lenet5_inputs
    assert spec.name == "input"
    assert spec.dtype == np.float32
    assert spec.shape == ("batch", 1, 8, 8)


def test_npz_is_cut_into_batches_with_labels(lenet5_inputs):
    source = open_data(str(FIXTURES / "lenet5.test.npz"), lenet5_inputs, batch_size=32)
    assert source.num_samples == 360 and not source.is_random
    batches = list(source)
    assert [len(b.labels) for b in batches] == [32] * 11 + [8]
    assert batches[0].feed["input"].shape == (32, 1, 8, 8)
    reference = np.load(FIXTURES / "lenet5.test.npz")
    np.testing.assert_array_equal(np.concatenate([b.feed["input"] for b in batches]), reference["input"])
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), reference["labels"])
    # Re-iterable: a second pass sees the same data.
    assert len(list(source)) == len(batches)


def test_npz_feeds_give_the_manifest_accuracy(lenet5_inputs, manifest):
    """The feeds are the real test split: running them reproduces the recorded accuracy."""
    session = ort.InferenceSession(str(fixture_path("lenet5")), providers=["CPUExecutionProvider"])
    correct = total = 0
    for batch in open_data(str(FIXTURES / "lenet5.test.npz"), lenet5_inputs, batch_size=64):
        logits = session.run(None, batch.feed)[0]
        correct += int((logits.argmax(1) == batch.labels).sum())
        total += len(batch.labels)
    assert correct / total == pytest.approx(manifest["models"]["lenet5"]["test_accuracy"])


def test_npz_with_one_extra_axis_holds_whole_feeds(tmp_path: Path, lenet5_inputs):
    path = tmp_path / "stacked.npz"
    np.savez(path, input=np.zeros((5, 2, 1, 8, 8), np.float32))
    feeds = list(open_data(str(path), lenet5_inputs).feeds())
    assert len(feeds) == 5 and feeds[0]["input"].shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 1, 8, 8), np.float32)}, "model input 'input' has no data"),
        ({"input": np.zeros((4, 1, 8, 8), np.float32), "extra": np.zeros(4)}, "data key 'extra' is not an input"),
        ({"input": np.zeros((4, 1, 8, 8), np.float64)}, "input 'input' is float64, the model expects float32"),
        ({"input": np.zeros((4, 8, 8), np.float32)}, "input 'input' has rank 3, the model expects rank 4"),
        ({"input": np.zeros((4, 3, 8, 8), np.float32)}, "input 'input' axis 1 is 3, the model fixes it at 1"),
        ({"input": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(3)}, "different numbers of samples"),
    ],
)
def test_npz_mismatches_are_one_line_errors_naming_the_input(tmp_path: Path, lenet5_inputs, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=message) as info:
        open_data(str(path), lenet5_inputs)
    assert "\n" not in str(info.value)


def test_unreadable_npz_and_missing_sources(tmp_path: Path, lenet5_inputs):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        open_data(str(bad), lenet5_inputs)
    with pytest.raises(InputError, match="no such file"):
        open_data(str(tmp_path / "absent.npz"), lenet5_inputs)
    with pytest.raises(InputError, match="not a module:function"):
        open_data("nonsense", lenet5_inputs)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"holds no \.npz"):
        open_data(str(empty), lenet5_inputs)


def test_folder_of_npz_with_varying_shapes(tmp_path: Path):
    """Inputs whose shapes vary between samples (text lengths) come as one file per shape."""
    spec = [InputSpec("tokens", np.dtype(np.int64), ("batch", "seq"))]
    folder = tmp_path / "texts"
    folder.mkdir()
    np.savez(folder / "a.npz", tokens=np.ones((2, 5), np.int64))
    np.savez(folder / "b.npz", tokens=np.ones((3, 9), np.int64))
    source = open_data(str(folder), spec, batch_size=2)
    assert source.num_samples == 5
    assert [f["tokens"].shape for f in source.feeds()] == [(2, 5), (2, 9), (1, 9)]


def test_static_batch_dimension_wins_over_batch_size(tmp_path: Path):
    spec = [InputSpec("x", np.dtype(np.float32), (4, 3))]
    np.savez(tmp_path / "d.npz", x=np.zeros((8, 3), np.float32))
    assert [f["x"].shape for f in open_data(str(tmp_path / "d.npz"), spec, batch_size=1).feeds()] == [(4, 3)] * 2
    np.savez(tmp_path / "odd.npz", x=np.zeros((6, 3), np.float32))
    with pytest.raises(InputError, match="fixed batch of 4"):
        list(open_data(str(tmp_path / "odd.npz"), spec).feeds())


def test_module_function_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lenet5_inputs):
    (tmp_path / "my_calib.py").write_text(textwrap.dedent("""
        import numpy as np

        def samples():
            for i in range(3):
                yield {"input": np.full((1, 1, 8, 8), i, np.float32), "labels": np.array([i])}

        def wrong_dtype():
            return [{"input": np.zeros((1, 1, 8, 8), np.float64)}]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    batches = list(open_data("my_calib:samples", lenet5_inputs))
    assert [int(b.feed["input"][0, 0, 0, 0]) for b in batches] == [0, 1, 2]
    assert [int(b.labels[0]) for b in batches] == [0, 1, 2]
    with pytest.raises(InputError, match="item 0: input 'input' is float64"):
        list(open_data("my_calib:wrong_dtype", lenet5_inputs))
    with pytest.raises(InputError, match="has no function 'absent'"):
        open_data("my_calib:absent", lenet5_inputs)
    with pytest.raises(InputError, match="cannot import module 'no_such_module_xyz'"):
        open_data("no_such_module_xyz:f", lenet5_inputs)
    sys.modules.pop("my_calib", None)


def test_random_data_warns_and_fills_dynamic_axes(tmp_path: Path):
    path = tmp_path / "g.onnx"
    onnx.save(gemm_model(), path)
    specs = input_specs(io.load(path))
    with pytest.warns(RandomDataWarning, match="not representative"):
        source = open_data("random:3", specs)
    assert source.is_random and source.num_samples == 3
    feeds = list(source.feeds())
    assert [f["x"].shape for f in feeds] == [(1, 16)] * 3
    # Seeded: the same request gives the same data.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomDataWarning)
        again = list(open_data("random:3", specs).feeds())
        np.testing.assert_array_equal(feeds[2]["x"], again[2]["x"])
        shaped = list(open_data("random", specs, shapes={"x": (5, 16)}).feeds())
    assert len(shaped) == 8 and shaped[0]["x"].shape == (5, 16)


def test_random_data_needs_shapes_for_non_batch_dynamic_axes():
    spec = [InputSpec("tokens", np.dtype(np.int64), ("batch", "seq"))]
    with pytest.raises(InputError, match=r"dynamic axis 1 \(seq\): give its size with --shape tokens="):
        open_data("random", spec)
    with pytest.raises(InputError, match="axis 1 is fixed at 8"):
        open_data("random", [InputSpec("x", np.dtype(np.float32), ("b", 8))], shapes={"x": (1, 9)})
    with pytest.raises(InputError, match="not an input of the model"):
        open_data("random", spec, shapes={"typo": (1, 2)})
    with pytest.raises(InputError, match="random or random:N"):
        open_data("random:many", spec)
    with pytest.warns(RandomDataWarning):
        feeds = list(open_data("random:2", spec, shapes={"tokens": (2, 7)}).feeds())
    assert feeds[0]["tokens"].dtype == np.int64 and feeds[0]["tokens"].shape == (2, 7)


def test_parse_shapes():
    assert parse_shapes(["input=1x3x224x224", "mask=1x7"]) == {"input": (1, 3, 224, 224), "mask": (1, 7)}
    with pytest.raises(InputError, match="expected NAME=DIMxDIM"):
        parse_shapes(["input=1,3"])


def test_validate_feed_names_the_input(lenet5_inputs):
    validate_feed({"input": np.zeros((2, 1, 8, 8), np.float32)}, lenet5_inputs, where="feed")
    with pytest.raises(InputError, match="feed: model input 'input' has no data"):
        validate_feed({}, lenet5_inputs, where="feed")


def _stateful_model(tmp_path: Path) -> Path:
    """A recurrent-style model as audio exporters write it: a chunk [?, ?], a state [2, ?, 4] whose first axis
    counts layers, and a scalar sample rate; the chunk's batch axis declared -1 as PaddlePaddle writes it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
         helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["state", "srf"], ["scaled"]),
         helper.make_node("Add", ["scaled", "total"], ["stateN"])],
        "stateful",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [-1, "samples"]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 4]),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 4])])
    path = tmp_path / "stateful.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_minus_one_dims_are_dynamic(tmp_path: Path):
    (chunk, _, sr) = input_specs(io.load(_stateful_model(tmp_path)))
    assert chunk.shape == (None, "samples")
    assert sr.shape == ()


def test_folder_of_whole_feeds_without_a_batch_axis(tmp_path: Path):
    model = _stateful_model(tmp_path)
    folder = tmp_path / "feeds"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(folder / f"{i:03d}.npz", input=rng.standard_normal((1, 512)).astype(np.float32),
                 state=rng.standard_normal((2, 1, 4)).astype(np.float32), sr=np.array(16000, dtype=np.int64))
    source = open_data(str(folder), input_specs(io.load(model)))
    feeds = list(source.feeds())
    assert source.num_samples == 3 and len(feeds) == 3
    assert feeds[0]["state"].shape == (2, 1, 4) and feeds[0]["sr"].shape == () and feeds[0]["input"].shape == (1, 512)
    session = ort.InferenceSession(str(model))
    for feed in feeds:
        session.run(None, feed)


def test_a_whole_feed_with_a_wrong_fixed_dim_is_still_refused(tmp_path: Path):
    model = _stateful_model(tmp_path)
    path = tmp_path / "bad.npz"
    np.savez(path, input=np.zeros((1, 512), np.float32), state=np.zeros((3, 1, 4), np.float32),
             sr=np.array(16000, dtype=np.int64))
    with pytest.raises(InputError, match="different numbers of samples"):
        open_data(str(path), input_specs(io.load(model)))

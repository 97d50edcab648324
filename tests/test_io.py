"""Model I/O: one-line errors for bad files, atomic writes, external data and its path checks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from support import fixture_path, gemm_model

from onnxcomp import io
from onnxcomp.errors import InputError, OutputError


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture
def gemm_file(tmp_path: Path) -> Path:
    path = tmp_path / "gemm.onnx"
    onnx.save(gemm_model(), path)
    return path


def test_load_fixture_reads_graph_and_weights():
    model = io.load(fixture_path("lenet5"))
    assert model.opset_imports[""] == 17
    assert model.graph.inputs[0].name == "input"
    assert any(node.op_type == "Conv" for node in model.graph)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"", "not a valid ONNX model"),
        (b"this is plain text, not a protobuf\n", "not a valid ONNX model"),
        (b"\xff\xfe\x00garbage", "not a valid ONNX model"),
    ],
)
def test_load_bad_files_are_one_line_input_errors(tmp_path: Path, content: bytes | None, expected: str):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=expected) as info:
        io.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.999])
def test_load_truncated_model_is_refused(tmp_path: Path, keep: float):
    data = fixture_path("lenet5").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match="not a valid ONNX model"):
        io.load(path)


def test_load_folder_is_refused(tmp_path: Path):
    with pytest.raises(InputError, match="not a file"):
        io.load(tmp_path)


def test_save_roundtrip_runs_in_onnxruntime(gemm_file: Path, tmp_path: Path):
    model = io.load(gemm_file)
    out = io.save(model, tmp_path / "copy.onnx", source=gemm_file)
    x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(out, x), _run(gemm_file, x))
    assert not (tmp_path / "copy.onnx.data").exists()


def test_save_never_overwrites_the_input_unless_asked(gemm_file: Path):
    before = gemm_file.read_bytes()
    model = io.load(gemm_file)
    with pytest.raises(OutputError, match="output is the input model"):
        io.save(model, gemm_file, source=gemm_file)
    assert gemm_file.read_bytes() == before
    # The same file through another spelling of its path is still the input.
    other_spelling = gemm_file.parent / "." / gemm_file.name
    with pytest.raises(OutputError):
        io.save(model, other_spelling, source=gemm_file)
    io.save(model, gemm_file, source=gemm_file, overwrite=True)
    assert onnx.load(gemm_file).graph.node[0].op_type == "Gemm"


def test_save_into_missing_or_unwritable_folder_fails_cleanly(gemm_file: Path, tmp_path: Path):
    model = io.load(gemm_file)
    with pytest.raises(OutputError, match="does not exist"):
        io.save(model, tmp_path / "nope" / "out.onnx")
    with pytest.raises(OutputError, match="is a folder"):
        io.save(model, tmp_path)
    # /proc accepts no new files even for root, who passes every permission check.
    with pytest.raises(OutputError):
        io.save(model, "/proc/onnxcomp-test.onnx")


def test_failed_save_leaves_no_partial_file_and_keeps_the_old_one(gemm_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    model = io.load(gemm_file)
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous release")

    def exploding_save(model, path, **kwargs):
        Path(path).write_bytes(b"half a mod")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ir, "save", exploding_save)
    with pytest.raises(OutputError, match="No space left"):
        io.save(model, target)
    assert target.read_bytes() == b"previous release"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gemm.onnx", "out.onnx"]


def test_external_data_written_next_to_output_and_reloaded(gemm_file: Path, tmp_path: Path):
    out_dir = tmp_path / "release"
    out_dir.mkdir()
    model = io.load(gemm_file)
    out = io.save(model, out_dir / "big.onnx", external_data=True)
    assert (out_dir / "big.onnx.data").stat().st_size > 0
    proto = onnx.load(out, load_external_data=False)
    assert proto.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
    x = np.ones((2, 16), np.float32)
    np.testing.assert_array_equal(_run(out, x), _run(gemm_file, x))

    # A model loaded with external data is saved with external data (by default), also from a new folder.
    again = io.save(io.load(out), tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx.data").exists()
    np.testing.assert_array_equal(_run(again, x), _run(gemm_file, x))
    # ...and overwriting it in place (with consent) keeps it loadable: data is staged and renamed.
    io.save(io.load(again), again, source=again, overwrite=True)
    np.testing.assert_array_equal(_run(again, x), _run(gemm_file, x))


def _with_external_location(tmp_path: Path, location: str) -> Path:
    proto = gemm_model()
    tensor = proto.graph.initializer[0]
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(16 * 10 * 4)}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_escaping_the_model_folder_is_refused(tmp_path: Path, location: str):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1024)
    path = _with_external_location(tmp_path, location)
    with pytest.raises(InputError, match="refused"):
        io.load(path)


def test_external_data_symlink_out_of_folder_is_refused(tmp_path: Path):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 1024)
    path = _with_external_location(tmp_path, "weights.bin")
    os.symlink(tmp_path / "secret.bin", path.parent / "weights.bin")
    with pytest.raises(InputError, match="outside the model's folder"):
        io.load(path)


def test_missing_or_short_external_data_is_reported(tmp_path: Path):
    path = _with_external_location(tmp_path, "weights.bin")
    with pytest.raises(InputError, match="missing"):
        io.load(path)
    (path.parent / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(InputError, match="past the end"):
        io.load(path)


@pytest.mark.slow
def test_model_over_2gib_saves_and_loads_with_external_data(tmp_path: Path):
    """A model whose weights exceed protobuf's 2 GiB limit goes to external data automatically."""
    count = (2**31 + 2**26) // 4  # 2.06 GiB of float32
    weight = np.full((count,), 0.5, np.float32)
    weight[-1] = 3.0
    tensor = ir.Tensor(weight, name="W")
    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([1]))
    w = ir.Value(name="W", const_value=tensor, type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape([count]))
    reduce = ir.node("ReduceMax", [w], attributes={"keepdims": 1})
    add = ir.node("Add", [x, reduce.outputs[0]])
    add.outputs[0].name = "y"
    graph = ir.Graph([x], [add.outputs[0]], nodes=[reduce, add], initializers=[w], opset_imports={"": 17})
    model = ir.Model(graph, ir_version=8)
    out = io.save(model, tmp_path / "huge.onnx")
    del weight, tensor, model, graph, w
    assert (tmp_path / "huge.onnx.data").stat().st_size == count * 4
    assert (tmp_path / "huge.onnx").stat().st_size < 10_000
    loaded = io.load(out)  # lazy: the 2 GiB stay memory-mapped
    assert isinstance(loaded.graph.initializers["W"].const_value, ir.ExternalTensor)
    assert float(_run(out, np.array([1.0], np.float32))[0]) == 4.0

"""``onnxcomp pack`` / ``unpack`` in-process: reports, exact round trip, and bad input (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from support import fixture_path
from test_container import tensor_hashes

from onnxcomp.cli import run


def test_pack_then_unpack_restores_every_tensor(tmp_path: Path, capsys) -> None:
    packed, restored = tmp_path / "m.onnxc", tmp_path / "m.onnx"
    assert run(["pack", str(fixture_path("mobilenetv2")), "-o", str(packed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packed_bytes"] == packed.stat().st_size < report["source_bytes"]
    first = report["tensors"][0]
    assert {"codec", "bits_per_weight", "entropy_bits_per_weight", "bound_bytes"} <= set(first)
    assert run(["unpack", str(packed), "-o", str(restored), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"] == len(report["tensors"])
    assert tensor_hashes(onnx.load(restored)) == tensor_hashes(onnx.load(fixture_path("mobilenetv2")))


def test_human_output_goes_to_stderr(tmp_path: Path, capsys) -> None:
    assert run(["pack", str(fixture_path("lenet5")), "-o", str(tmp_path / "m.onnxc"), "--show", "2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bits/weight" in captured.err and "more tensors" in captured.err


def test_corrupt_packed_file_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    packed = tmp_path / "m.onnxc"
    assert run(["pack", str(fixture_path("lenet5")), "-o", str(packed)]) == 0
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0x10
    packed.write_bytes(bytes(data))
    out = tmp_path / "never.onnx"
    capsys.readouterr()
    assert run(["unpack", str(packed), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("onnxcomp: error:") and "\n" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnxc"]


def test_pack_of_a_non_model_exits_2(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"not a model")
    assert run(["pack", str(bogus), "-o", str(tmp_path / "x.onnxc")]) == 2
    assert not (tmp_path / "x.onnxc").exists()
    assert run(["unpack", str(bogus), "-o", str(tmp_path / "y.onnx")]) == 2
    assert "wrong magic" in capsys.readouterr().err


def test_unpack_can_force_external_data(tmp_path: Path) -> None:
    packed = tmp_path / "m.onnxc"
    assert run(["pack", str(fixture_path("lenet300")), "-o", str(packed)]) == 0
    assert run(["unpack", str(packed), "-o", str(tmp_path / "e.onnx"), "--external-data"]) == 0
    assert (tmp_path / "e.onnx.data").stat().st_size > 200_000

"""Each preset end to end on the trained digits fixtures: it keeps the budget it claims on held-out data.

The budget is measured during ``optimize`` on the first half of the test split (``--eval-data``) and asserted
here, with the checker, on the second half, which no decision saw. Calibration uses the calibration split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES, fixture_path

import onnxcomp
from onnxcomp.check import ParityAccumulator, ParityThresholds
from onnxcomp.cli import run
from onnxcomp.packing import is_packed_file
from onnxcomp.session import create_session, run_named

FAST = ["lenet300"]
SLOW = ["lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer"]
PRESETS = ["balanced", "speed", "size"]


def _halves(name: str, folder: Path) -> tuple[Path, Path]:
    test = np.load(FIXTURES / f"{name}.test.npz")
    half = len(test["labels"]) // 2
    paths = folder / "eval.npz", folder / "holdout.npz"
    np.savez(paths[0], input=test["input"][:half], labels=test["labels"][:half])
    np.savez(paths[1], input=test["input"][half:], labels=test["labels"][half:])
    return paths


def _holdout_parity(name: str, optimized: Path, holdout: Path) -> ParityAccumulator:
    reference = create_session(str(fixture_path(name)))
    candidate = create_session(onnxcomp.io.serialize(onnxcomp.load(optimized)))
    accumulator = ParityAccumulator(ParityThresholds(min_cosine=0.99, min_top1=0.99))
    data = np.load(holdout)
    for start in range(0, len(data["input"]), 60):
        feed = {"input": data["input"][start:start + 60]}
        accumulator.update(run_named(reference, feed), run_named(candidate, feed))
    return accumulator


def _optimize(name: str, preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict, Path]:
    import json

    eval_path, holdout = _halves(name, tmp_path)
    suffix = "onnxc" if preset == "size" else "onnx"
    out = tmp_path / f"{name}.{preset}.{suffix}"
    code = run(["optimize", str(fixture_path(name)), "-o", str(out), "--preset", preset, "--data",
                str(FIXTURES / f"{name}.calib.npz"), "--eval-data", str(eval_path), "--batch-size", "64",
                "--runs", "10", "--json", "-q"])
    assert code == 0, capsys.readouterr().err
    document = json.loads(capsys.readouterr().out)
    assert out.exists()
    report = _holdout_parity(name, out, holdout).result()
    assert report.passed, report.failures()
    return document, out


def _check_preset(document: dict, out: Path, name: str, preset: str) -> None:
    passes = [stage["pass"] for stage in document["stages"]]
    assert passes[:2] == ["cleanup", "channels"]
    assert passes[-1] == ("cleanup" if preset == "size" else "quantize")
    assert document["budget"]["met"] is True
    assert document["data"]["representative"] is True
    sizes = document["sizes"]
    if preset == "speed":
        assert passes.count("channels") == 2
    if preset == "size":
        assert {"prune", "cluster"} <= set(passes) and sizes[-1]["stage"] == "pack"
        assert is_packed_file(out) and out.stat().st_size == document["pack"]["packed_bytes"]
        assert sizes[-1]["model_bytes"] < sizes[0]["model_bytes"] * 0.75
    for stage in document["stages"]:
        assert stage["status"] in {"kept", "backed-off", "reverted", "unchanged", "skipped"}
        assert stage["status"] in {"kept", "unchanged", "backed-off"} or stage["reason"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", FAST)
def test_preset_keeps_budget_on_held_out_data(name: str, preset: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]):
    document, out = _optimize(name, preset, tmp_path, capsys)
    _check_preset(document, out, name, preset)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", SLOW)
def test_preset_keeps_budget_on_held_out_data_slow(name: str, preset: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    document, out = _optimize(name, preset, tmp_path, capsys)
    _check_preset(document, out, name, preset)

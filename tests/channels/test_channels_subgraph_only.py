"""A model whose every layer sits inside an If body: channel removal with data must report, not crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import FIXTURES, fixture_path

from onnxcomp.cli import run


def test_activation_criterion_on_a_model_with_layers_only_in_subgraphs(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]):
    code = run(["channels", str(fixture_path("lenet300_if")), "-o", str(tmp_path / "out.onnx"), "--ratio", "0.25",
                "--data", str(FIXTURES / "lenet300.calib.npz"), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    summary = document["report"]["summary"]
    assert summary["nothing_removed"] is True
    assert not (tmp_path / "out.onnx").exists()  # nothing removed: nothing written unless --write-unchanged


def test_optimize_presets_run_on_a_model_with_layers_only_in_subgraphs(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]):
    code = run(["optimize", str(fixture_path("lenet300_if")), "--data", str(FIXTURES / "lenet300.calib.npz"),
                "--preset", "speed", "-o", str(tmp_path / "out.onnx"), "-q"])
    assert code in (0, 1)  # 1 would mean the budget was missed, which is reported, not a crash
    assert (tmp_path / "out.onnx").exists()

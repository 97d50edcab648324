"""``onnxcomp distill`` in-process: exit codes, JSON, nothing written on bad input; torch missing -> exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import FIXTURES, fixture_path

from onnxcomp.cli import run


@pytest.fixture
def pruned(tmp_path: Path) -> Path:
    out = tmp_path / "pruned.onnx"
    assert run(["prune", str(fixture_path("lenet300")), "--sparsity", "0.9", "-o", str(out)]) == 0
    return out


def test_distill_json_and_output(pruned: Path, tmp_path: Path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "distilled.onnx"
    capsys.readouterr()
    code = run(["distill", str(pruned), "--teacher", str(fixture_path("lenet300")), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "-o", str(out), "--epochs", "1", "--labels", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and out.exists()
    document = json.loads(captured.out)
    summary = document["report"]["summary"]
    assert len(summary["losses"]) == 1 and summary["writeback_max_abs_diff"] <= 1e-5
    assert "accuracy" in summary["metrics_after"]
    assert "epoch 1/1" in captured.err


def test_distill_bad_input_writes_nothing(pruned: Path, tmp_path: Path, capsys):
    out = tmp_path / "never.onnx"
    code = run(["distill", str(pruned), "--teacher", str(tmp_path / "missing.onnx"), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "-o", str(out)])
    assert code == 2 and not out.exists()
    code = run(["distill", str(pruned), "--teacher", str(fixture_path("lenet300")), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "-o", str(out), "--temperature", "0"])
    assert code == 2 and not out.exists()
    assert "temperature" in capsys.readouterr().err


SIMULATE_NO_TORCH = """
import sys
sys.modules["torch"] = None
from onnxcomp.cli import run
sys.exit(run(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["distill", "lowrank"])
def test_without_torch_commands_name_the_extra(command: str, pruned: Path, tmp_path: Path):
    out = tmp_path / "never.onnx"
    args = {"distill": ["distill", str(pruned), "--teacher", str(fixture_path("lenet300")), "--data",
                        str(FIXTURES / "lenet300.calib.npz"), "-o", str(out)],
            "lowrank": ["lowrank", str(pruned), "-o", str(out), "--distill-epochs", "1", "--data",
                        str(FIXTURES / "lenet300.calib.npz")]}[command]
    done = subprocess.run([sys.executable, "-c", SIMULATE_NO_TORCH, *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'onnxcomp[torch]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_distilled_file_keeps_structure(pruned: Path, tmp_path: Path):
    pytest.importorskip("torch")
    import onnx

    out = tmp_path / "distilled.onnx"
    assert run(["distill", str(pruned), "--teacher", str(fixture_path("lenet300")), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "-o", str(out), "--epochs", "1", "-q"]) == 0
    before, after = onnx.load(str(pruned)), onnx.load(str(out))
    assert [n.op_type for n in before.graph.node] == [n.op_type for n in after.graph.node]
    for a, b in zip(before.graph.initializer, after.graph.initializer, strict=True):
        wa, wb = onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b)
        assert a.name == b.name and wa.shape == wb.shape
        assert np.all(wb[wa == 0] == 0)

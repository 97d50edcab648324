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


def _width_model(tmp_path: Path, mode: str = "nearest") -> Path:
    """Resize x2 -> Conv -> GlobalAveragePool -> Flatten over ``[1, 1, 4, W]``: width varies from feed to feed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {"scales": np.array([1, 1, 2, 2], np.float32), "w": rng.standard_normal((3, 1, 3, 3), dtype=np.float32)}
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["up"], mode=mode),
             helper.make_node("Conv", ["up", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
             helper.make_node("Flatten", ["p"], ["logits"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, "W"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    path = tmp_path / f"width_{mode}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_distill_a_folder_of_feeds_of_different_widths(tmp_path: Path, capsys):
    pytest.importorskip("torch")
    model = _width_model(tmp_path)
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, width in enumerate((5, 8, 6, 11)):
        np.savez(folder / f"{i}.npz", x=rng.standard_normal((1, 1, 4, width), dtype=np.float32))
    out = tmp_path / "distilled.onnx"
    capsys.readouterr()
    code = run(["distill", str(model), "--teacher", str(model), "--data", str(folder), "-o", str(out),
                "--epochs", "3", "--batch-size", "1", "--max-steps", "5", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and out.exists(), captured.err
    summary = json.loads(captured.out)["report"]["summary"]
    assert (summary["feeds"], summary["steps"]) == (4, 5)
    assert any("stopped after 5 optimizer steps" in note for note in summary["notes"])


def test_unsupported_variant_is_exit_2_in_one_line(tmp_path: Path, capsys):
    pytest.importorskip("torch")
    model = _width_model(tmp_path, mode="cubic")
    np.savez(tmp_path / "one.npz", x=np.ones((1, 1, 4, 5), np.float32))
    out = tmp_path / "never.onnx"
    capsys.readouterr()
    code = run(["distill", str(model), "--teacher", str(model), "--data", str(tmp_path / "one.npz"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not out.exists()
    assert err == ["onnxcomp: error: cannot run the model in torch for training: unsupported op(s) Resize mode 'cubic'"]

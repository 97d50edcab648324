"""``onnxcomp quantize`` in-process: outputs, JSON, exit codes and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, save
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.cli import run
from onnxcomp.session import create_session, run_named


def _args(tmp_path: Path, *extra: str, name: str = "lenet300") -> list[str]:
    return ["quantize", str(fixture_path(name)), "-o", str(tmp_path / "q.onnx"), *extra]


def test_quantize_writes_a_model_and_one_json_document(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(_args(tmp_path, "--data", str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64", "--json"))
    out = capsys.readouterr().out
    assert code == 0
    document = json.loads(out)
    assert document["written"] == str(tmp_path / "q.onnx")
    assert document["report"]["summary"]["target"]["fused_fraction"] == 1.0
    arrays = np.load(FIXTURES / "lenet300.test.npz")
    session = create_session(str(tmp_path / "q.onnx"))
    accuracy = (run_named(session, {"input": arrays["input"]})["logits"].argmax(-1) == arrays["labels"]).mean()
    assert accuracy >= 0.965


def test_budget_option_reports_ranking(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(_args(tmp_path, "--data", str(FIXTURES / "lenet5.calib.npz"), "--batch-size", "64",
                     "--min-cosine", "0.99999", "--method", "percentile", "--json", name="lenet5"))
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    budget = document["report"]["summary"]["budget"]
    assert budget["initial"]["cosine"] < 0.99999  # int8 cannot be this close: the loop must act
    assert len(budget["ranking"]) == 5
    assert document["report"]["summary"]["float_nodes"]


def test_missing_data_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(_args(tmp_path)) == 2
    assert "--data" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()


def test_data_that_does_not_match_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(_args(tmp_path, "--data", str(FIXTURES / "lenet5.calib.npz")))
    assert code == 2
    err = capsys.readouterr().err
    assert "input" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q.onnx").exists()


def test_two_budgets_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(_args(tmp_path, "--data", str(FIXTURES / "lenet300.calib.npz"), "--max-drop", "0.01",
                     "--min-cosine", "0.99"))
    assert code == 2
    assert "at most one" in capsys.readouterr().err


def test_nothing_quantizable_reports_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    save(model, str(path))
    code = run(["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--data", "random:2", "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["written"] is None
    assert document["report"]["summary"]["quantized_kernels"] == 0


def test_require_speedup_writes_nothing_when_slower(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # lenet300_if is quantized weight-only (inside If branches): DequantizeLinear runs on every call, so the
    # int8 model cannot be faster than fp32.
    code = run(_args(tmp_path, "--data", str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64",
                     "--require-speedup", "--json", name="lenet300_if"))
    document = json.loads(capsys.readouterr().out)
    target = document["report"]["summary"]["target"]
    assert code == (1 if target["slower"] else 0)
    assert (tmp_path / "q.onnx").exists() == (not target["slower"])
    assert io.load(fixture_path("lenet300_if")) is not None

"""``onnxcomp optimize`` on the command line: defaults, skipped steps without data, random data, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import FIXTURES, fixture_path

from onnxcomp.cli import run
from onnxcomp.commands.optimize import default_output


@pytest.fixture
def lenet300(tmp_path: Path) -> Path:
    model = tmp_path / "lenet300.onnx"
    shutil.copy(fixture_path("lenet300"), model)
    return model


def test_default_output_sits_next_to_the_input():
    assert default_output("dir/m.onnx", False) == Path("dir/m.opt.onnx")
    assert default_output("dir/m.onnx", True) == Path("dir/m.opt.onnxc")


def test_without_data_steps_needing_it_are_skipped_with_a_note(lenet300: Path, capsys: pytest.CaptureFixture[str]):
    report = lenet300.parent / "r.html"
    code = run(["optimize", str(lenet300), "--preset", "size", "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (lenet300.parent / "lenet300.opt.onnxc").exists()
    page = report.read_text()
    assert page.count("Not measured (no data)") == 2 and "No ranking: quantization did not run" in page
    assert "quantize skipped: it needs calibration data (--data)" in err
    assert "prune skipped: it changes outputs and the budget cannot be checked without --data" in err
    assert "not measured (no --data)" in err


def test_json_is_one_document_and_quiet_prints_nothing(lenet300: Path, capsys: pytest.CaptureFixture[str]):
    code = run(["optimize", str(lenet300), "--data", str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64",
                "--runs", "5", "--json", "-q"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    document = json.loads(captured.out)
    assert document["output"] == str(lenet300.parent / "lenet300.opt.onnx")
    assert document["budget"]["description"] == "cosine ≥ 0.99, top-1 agreement ≥ 0.99"
    assert document["budget"]["met"] is True and document["final"]["cosine"] >= 0.99
    assert [s["pass"] for s in document["stages"]] == ["cleanup", "channels", "quantize"]
    assert any("measured on the calibration data" in note for note in document["notes"])
    assert document["latency"]["original"]["p50_ms"] > 0


def test_random_data_is_labelled_unrepresentative(lenet300: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]):
    report = tmp_path / "r.html"
    code = run(["optimize", str(lenet300), "--data", "random:16", "--runs", "3", "--json", "-q",
                "--report", str(report)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["data"]["random"] is True and document["data"]["representative"] is False
    assert any("NOT representative" in note for note in document["notes"])
    assert "NOT representative" in report.read_text()


def test_recipe_file_drives_the_run(lenet300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("budget: {min_cosine: 0.999}\npasses:\n  - pass: prune\n    config: {sparsity: 0.9}\n"
                      "    fallbacks: [{sparsity: 0.2}]\n")
    code = run(["optimize", str(lenet300), "--recipe", str(recipe), "--data", str(FIXTURES / "lenet300.calib.npz"),
                "--batch-size", "64", "--runs", "3", "--json", "-q", "-o", str(tmp_path / "out.onnx")])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    (stage,) = document["stages"]
    assert stage["status"] == "backed-off" and len(stage["attempts"]) == 2
    assert stage["attempts"][0]["passed"] is False and stage["attempts"][1]["passed"] is True
    assert document["budget"]["min_cosine"] == 0.999 and document["final"]["cosine"] >= 0.999


@pytest.mark.parametrize(("extra", "message"), [
    (["--min-cosine", "0.9", "--min-top1", "0.9"], "at most one of --max-drop, --min-cosine, --min-top1"),
    (["--min-cosine", "1.5"], "budget min_cosine must be a number in"),
    (["--max-drop", "-0.1"], "budget max_drop must be a number in"),
    (["--preset", "size", "--recipe", "r.yaml"], "either --preset or --recipe"),
    (["--recipe", "missing.yaml"], "cannot read"),
    (["-o", "/nonexistent-dir/out.onnx"], "/nonexistent-dir"),
    (["--report", "/nonexistent-dir/r.html"], "/nonexistent-dir"),
    (["--eval-data", "x.npz"], "--eval-data needs --data"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(lenet300: Path, extra: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]):
    before = sorted(p.name for p in lenet300.parent.iterdir())
    code = run(["optimize", str(lenet300), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in lenet300.parent.iterdir()) == before


def test_never_overwrites_the_input(lenet300: Path, capsys: pytest.CaptureFixture[str]):
    original = lenet300.read_bytes()
    assert run(["optimize", str(lenet300), "-o", str(lenet300)]) == 2
    assert lenet300.read_bytes() == original


def test_saved_preset_recipe_runs_the_same_steps(lenet300: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    saved = tmp_path / "size.yaml"
    assert run(["optimize", str(lenet300), "--preset", "size", "--save-recipe", str(saved), "--json", "-q"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert "pass: cluster" in saved.read_text() and "pack: true" in saved.read_text()
    assert run(["optimize", str(lenet300), "--recipe", str(saved), "--json", "-q",
                "-o", str(tmp_path / "again.onnxc")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(s["pass"], s["status"]) for s in again["stages"]] == [(s["pass"], s["status"]) for s in first["stages"]]

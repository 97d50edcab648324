"""The release gate's settings from ``[tool.onnxcomp.check]`` in pyproject.toml or ``--config FILE``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import FIXTURES, fixture_path

from onnxcomp.cli import run
from onnxcomp.config import CheckConfig, load_check_config
from onnxcomp.errors import InputError


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with a released model, a candidate (50% pruned) and held-out data."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(fixture_path("lenet300"), folder / "released.onnx")
    (folder / "eval").mkdir()
    shutil.copy(FIXTURES / "lenet300.test.npz", folder / "eval" / "holdout.npz")
    assert run(["prune", str(folder / "released.onnx"), "-o", str(folder / "candidate.onnx"),
                "--sparsity", "0.5"]) == 0
    return folder


def test_nearest_pyproject_supplies_data_and_thresholds(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.onnxcomp.check]\ndata = "eval/holdout.npz"\nmin_cosine = 0.9999999\n'
        "batch-size = 60\n")
    sub = project / "eval"
    monkeypatch.chdir(sub)  # found by walking up; data resolves against the pyproject's folder
    code = run(["check", str(project / "released.onnx"), str(project / "candidate.onnx"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["providers"][0]["parity"]["thresholds"]["min_cosine"] == 0.9999999
    assert "holdout.npz" in json.dumps(report)
    code = run(["check", str(project / "released.onnx"), str(project / "candidate.onnx"), "--min-cosine", "0.9",
                "--min-top1", "0.9", "--json"])  # the command line wins over the file
    assert code == 0, capsys.readouterr().err
    (project / "pyproject.toml").unlink()


def test_config_file_with_a_bare_table_and_a_latency_gate(project: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "gate.toml"
    config.write_text(f'data = "{project / "eval" / "holdout.npz"}"\nmin_cosine = 0.9\nmin_top1 = 0.9\n'
                      "max_slowdown = 1000.0\nruns = 5\n")
    code = run(["check", str(project / "released.onnx"), str(project / "candidate.onnx"), "--config", str(config),
                "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    latency = report["providers"][0]["latency"]
    assert latency is not None and latency["models"][0]["runs"] >= 5


@pytest.mark.parametrize(("text", "message"), [
    ("[tool.onnxcomp.check]\nmin_cosin = 0.9\n", "unknown key 'min_cosin'"),
    ("[tool.onnxcomp.check]\nruns = 0\n", "runs must be a positive integer"),
    ("[tool.onnxcomp.check]\nmin_cosine = 'high'\n", "min_cosine must be a number"),
    ("[tool.onnxcomp.check\n", "not valid TOML"),
])
def test_bad_settings_are_one_line_errors(project: Path, tmp_path: Path, text: str, message: str,
                                          capsys: pytest.CaptureFixture[str]):
    config = tmp_path / "pyproject.toml"
    config.write_text(text)
    code = run(["check", str(project / "released.onnx"), str(project / "candidate.onnx"), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(config) in err and len(err.strip().splitlines()) == 1


def test_a_pyproject_without_the_table_means_no_settings(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_check_config(start=tmp_path) == CheckConfig()


def test_missing_config_file_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(InputError, match=r"missing\.toml: cannot read"):
        load_check_config(tmp_path / "missing.toml")

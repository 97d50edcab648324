"""``onnxcomp prune`` and ``onnxcomp cluster`` end to end, in-process: exit codes, JSON, what is written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from prune_models import weights
from support import fixture_path

from onnxcomp import io
from onnxcomp.cli import run


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _copy(tmp_path: Path, name: str = "lenet300") -> Path:
    return Path(shutil.copy(fixture_path(name), tmp_path / f"{name}.onnx"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prune_json_writes_the_output_and_leaves_the_input(capsys, tmp_path: Path):
    model = _copy(tmp_path)
    digest = _digest(model)
    output = tmp_path / "pruned.onnx"
    code, out, err = _cli(capsys, "prune", str(model), "-o", str(output), "--sparsity", "0.8",
                          "--no-keep-first-last", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["output"] == str(output)
    report = document["report"]
    assert report["name"] == "prune" and report["summary"]["eligible_sparsity"] == round(0.8 * 50200) / 50200
    assert {s["target"] for s in report["skipped"]} == {"fc1.bias", "fc2.bias", "fc3.bias"}
    assert _digest(model) == digest
    written = weights(io.load(output))
    assert sum(int((written[n] == 0).sum()) for n in ("fc1.weight", "fc2.weight", "fc3.weight")) == 40160


def test_prune_text_report_and_unmatched_exclude_warning(capsys, tmp_path: Path):
    output = tmp_path / "pruned.onnx"
    code, out, err = _cli(capsys, "prune", str(fixture_path("lenet5")), "-o", str(output), "--nm", "2:4",
                          "--exclude", "nothing_matches")
    assert code == 0 and out == ""
    assert "onnxcomp: warning: --exclude 'nothing_matches' matched no eligible weight" in err
    assert "left alone conv1.weight" in err and output.exists()


@pytest.mark.parametrize("argv", [
    ["--sparsity", "1.0"],
    ["--sparsity", "-0.2"],
    ["--sparsity", "1.5"],
    [],
    ["--sparsity", "0.5", "--threshold", "0.1"],
    ["--nm", "4:2"],
    ["--nm", "two:four"],
    ["--sparsity", "0.5", "--exclude", "("],
    ["--sparsity", "0.5", "--scope", "layer"],
])
def test_prune_bad_options_exit_2_and_write_nothing(capsys, tmp_path: Path, argv: list[str]):
    output = tmp_path / "out.onnx"
    code, out, err = _cli(capsys, "prune", str(fixture_path("lenet300")), "-o", str(output), *argv)
    assert code == 2
    assert out == "" and err.startswith("onnxcomp: error:") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_output_is_never_the_input(capsys, tmp_path: Path):
    model = _copy(tmp_path)
    digest = _digest(model)
    for command in (["prune", "--sparsity", "0.5"], ["cluster", "--bits", "4"]):
        code, _, err = _cli(capsys, command[0], str(model), "-o", str(model), *command[1:])
        assert code == 2 and "error" in err
        assert _digest(model) == digest
    code, _, err = _cli(capsys, "prune", str(model), "-o", str(model), "--sparsity", "0.5", "--force")
    assert code == 0, err
    assert _digest(model) != digest


def test_missing_or_broken_model_exits_2(capsys, tmp_path: Path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    for model in (tmp_path / "missing.onnx", broken):
        for command in (["prune", "--sparsity", "0.5"], ["cluster"]):
            code, out, _ = _cli(capsys, command[0], str(model), "-o", str(tmp_path / "out.onnx"), *command[1:])
            assert code == 2 and out == ""
    assert not (tmp_path / "out.onnx").exists()


def test_cluster_json_after_prune(capsys, tmp_path: Path):
    pruned, clustered = tmp_path / "pruned.onnx", tmp_path / "clustered.onnx"
    assert _cli(capsys, "prune", str(fixture_path("lenet300")), "-o", str(pruned), "--sparsity", "0.9")[0] == 0
    code, out, err = _cli(capsys, "cluster", str(pruned), "-o", str(clustered), "--bits", "5", "--json")
    assert code == 0, err
    report = json.loads(out)["report"]
    assert report["summary"]["method"] == "kmeans" and report["summary"]["max_distinct_per_group"] <= 31
    for entry in report["changed"]:
        assert entry["distinct_values"] <= 32 and entry["relative_error"] < 0.1
    before, after = weights(io.load(pruned)), weights(io.load(clustered))
    np.testing.assert_array_equal(after["fc2.weight"] == 0, before["fc2.weight"] == 0)


def test_cluster_ternary_and_binary_from_the_cli(capsys, tmp_path: Path):
    output = tmp_path / "ternary.onnx"
    code, _, err = _cli(capsys, "cluster", str(fixture_path("lenet300")), "-o", str(output), "--bits", "2",
                        "--ternary")
    assert code == 0, err
    assert "method: ternary" in err
    rows = weights(io.load(output))["fc2.weight"]
    assert all(np.unique(np.abs(row)).size <= 2 for row in rows)
    code, _, err = _cli(capsys, "cluster", str(fixture_path("lenet300")), "-o", str(output), "--bits", "1")
    assert code == 0, err


@pytest.mark.parametrize("argv", [["--bits", "0"], ["--bits", "3", "--ternary"], ["--bits", "99"],
                                  ["--exclude", "["]])
def test_cluster_bad_options_exit_2_and_write_nothing(capsys, tmp_path: Path, argv: list[str]):
    code, out, err = _cli(capsys, "cluster", str(fixture_path("lenet300")), "-o", str(tmp_path / "o.onnx"), *argv)
    assert code == 2 and out == "" and err.startswith("onnxcomp: error:")
    assert list(tmp_path.iterdir()) == []

"""``onnxcomp channels`` in-process: exit codes, outputs written or not, one JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from channel_support import run, sample_inputs
from support import FIXTURES, fixture_path

from onnxcomp.cli import run as cli


def test_prunes_and_writes_json_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "lenet5.pruned.onnx"
    code = cli(["channels", str(fixture_path("lenet5")), "-o", str(out), "--ratio", "0.25", "--round-to", "2",
                "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    summary = document["report"]["summary"]
    assert document["output"] == str(out)
    assert summary["macs_after"] < summary["macs_before"]
    assert all(row["channels_after"] % 2 == 0 or row["frozen"] for row in summary["group_table"])
    x, _ = sample_inputs("lenet5", 4)
    assert run(str(out), x).shape == (4, 10)


def test_ratio_outside_range_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    for ratio in ("1.0", "-0.2"):
        code = cli(["channels", str(fixture_path("lenet5")), "-o", str(out), "--ratio", ratio])
        assert code == 2
        assert "ratio must be in [0, 1)" in capsys.readouterr().err
    assert not out.exists()


def test_exclude_matching_nothing_warns(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    code = cli(["channels", str(fixture_path("lenet300")), "-o", str(out), "--exclude", "no_such_layer"])
    assert code == 0
    assert "matches no layer" in capsys.readouterr().err
    assert out.exists()


def test_exclude_keeps_matching_group(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    code = cli(["channels", str(fixture_path("lenet300")), "-o", str(out), "--exclude", "fc1", "--round-to", "1",
                "--json"])
    assert code == 0
    rows = {r["group"]: r for r in json.loads(capsys.readouterr().out)["report"]["summary"]["group_table"]}
    assert rows["/fc1/Gemm"]["channels_after"] == 300
    assert rows["/fc2/Gemm"]["channels_after"] == 75


def test_everything_frozen_exits_0_without_output_unless_asked(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    assert cli(["channels", str(fixture_path("lenet300_if")), "-o", str(out)]) == 0
    assert "nothing could be removed" in capsys.readouterr().err
    assert not out.exists()
    assert cli(["channels", str(fixture_path("lenet300_if")), "-o", str(out), "--write-unchanged"]) == 0
    assert out.exists()


def test_max_drop_needs_data_and_holds_the_budget(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    assert cli(["channels", str(fixture_path("lenet300")), "-o", str(out), "--max-drop", "0.02"]) == 2
    capsys.readouterr()
    code = cli(["channels", str(fixture_path("lenet300")), "-o", str(out), "--ratio", "0.6", "--max-drop", "0.02",
                "--data", str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)["report"]["summary"]
    trials = summary["search"]
    assert trials and summary["ratio"] == max([t["ratio"] for t in trials if t["passed"]], default=0.0)
    with np.load(FIXTURES / "lenet300.calib.npz") as npz:
        x = npz["input"]
    agreement = float((run(str(out), x).argmax(1) == run(str(fixture_path("lenet300")), x).argmax(1)).mean())
    assert agreement >= 0.98


def test_bad_regex_exits_2(tmp_path: Path, capsys) -> None:
    assert cli(["channels", str(fixture_path("lenet5")), "-o", str(tmp_path / "x.onnx"), "--exclude", "(["]) == 2
    assert "regular expression" in capsys.readouterr().err

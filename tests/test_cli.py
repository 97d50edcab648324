"""The command line end to end, in-process, with real onnxruntime sessions on the fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from support import FIXTURES, fixture_path

from onnxcomp.cli import run

LENET5 = str(fixture_path("lenet5"))
LENET5_TEST = str(FIXTURES / "lenet5.test.npz")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _perturbed_copy(tmp_path: Path, name: str = "lenet5") -> Path:
    """The fixture with its first conv's weights replaced by noise of the same scale."""
    model = onnx.load(fixture_path(name))
    conv_weight = next(i for i in model.graph.initializer if len(i.dims) == 4)
    array = numpy_helper.to_array(conv_weight)
    noisy = np.random.default_rng(0).standard_normal(array.shape).astype(np.float32) * array.std()
    conv_weight.CopyFrom(numpy_helper.from_array(noisy, conv_weight.name))
    path = tmp_path / f"{name}.perturbed.onnx"
    onnx.save(model, path)
    return path


def test_check_identical_models_passes_with_zero_error(capsys):
    code, out, err = _cli(capsys, "check", LENET5, LENET5, "--data", LENET5_TEST, "--json")
    assert code == 0
    report = json.loads(out)  # exactly one JSON document on stdout
    assert report["passed"] and report["exit_code"] == 0
    (cpu,) = report["providers"]
    (logits,) = cpu["parity"]["outputs"]
    assert logits["name"] == "logits"
    metrics = logits["metrics"]
    assert metrics["max_abs"] == 0 and metrics["max_rel"] == 0 and metrics["p99_abs"] == 0
    assert metrics["cosine"] == 1.0 and metrics["snr_db"] == "inf" and metrics["top1"] == 1.0
    assert metrics["count"] == 360 * 10
    assert err == ""


def test_check_opset11_export_matches_opset17(capsys):
    opset11 = str(fixture_path("lenet5_opset11"))
    code, _, err = _cli(capsys, "check", LENET5, opset11, "--data", LENET5_TEST, "--atol", "1e-5")
    assert code == 0, err
    assert "PASSED" in err and "logits" in err


def test_check_perturbed_weight_fails_naming_output_and_metric(capsys, tmp_path: Path):
    candidate = str(_perturbed_copy(tmp_path))
    code, out, err = _cli(capsys, "check", LENET5, candidate, "--data", LENET5_TEST)
    assert code == 1
    assert out == ""
    assert "FAILED" in err
    assert "logits: cosine" in err and "logits: top-1" in err

    code, out, _ = _cli(capsys, "check", LENET5, candidate, "--data", LENET5_TEST, "--json")
    report = json.loads(out)
    assert code == 1 and report["exit_code"] == 1 and not report["passed"]
    metrics = report["providers"][0]["parity"]["outputs"][0]["metrics"]
    assert 0 < metrics["top1"] < 0.99 and metrics["cosine"] < 0.99 and metrics["max_abs"] > 0.1


def test_check_thresholds_at_the_needed_values_pass(capsys, tmp_path: Path):
    """The report's 'smallest tolerance that would have passed' really passes."""
    candidate = str(_perturbed_copy(tmp_path))
    _, out, _ = _cli(capsys, "check", LENET5, candidate, "--data", LENET5_TEST, "--json")
    needed = json.loads(out)["providers"][0]["parity"]["outputs"][0]["needed"]
    code, _, err = _cli(capsys, "check", LENET5, candidate, "--data", LENET5_TEST,
                        "--atol", repr(needed["atol"]), "--min-cosine", repr(needed["min_cosine"]),
                        "--min-top1", repr(needed["min_top1"]))
    assert code == 0, err


def test_check_latency_gate(capsys):
    code, out, _ = _cli(capsys, "check", LENET5, LENET5, "--data", LENET5_TEST, "--latency", "--runs", "20",
                        "--threads", "1", "--json")
    assert code == 0
    latency = json.loads(out)["providers"][0]["latency"]
    assert [m["runs"] for m in latency["models"]] == [20, 20]
    assert all(m["intra_op_threads"] == 1 for m in latency["models"])
    assert all(0 < m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"] for m in latency["models"])
    # An impossible budget must fail, and say it is latency that failed.
    code, _, err = _cli(capsys, "check", LENET5, LENET5, "--data", LENET5_TEST, "--max-slowdown", "0.01",
                        "--runs", "10")
    assert code == 1
    assert "latency" in err.lower()


def test_check_cuda_reported_not_available_never_silently(capsys):
    code, _, err = _cli(capsys, "check", LENET5, LENET5, "--data", LENET5_TEST, "--provider", "cpu",
                        "--provider", "cuda")
    assert code == 0
    assert "cuda: not available" in err
    code, _, err = _cli(capsys, "check", LENET5, LENET5, "--data", LENET5_TEST, "--provider", "cuda")
    assert code == 2 and "cuda: not available" in err


def test_check_random_data_warns(capsys):
    code, _, err = _cli(capsys, "check", LENET5, LENET5, "--data", "random:3")
    assert code == 0
    assert "warning: --data random:3: random inputs are not representative" in err


def _unloadable_model(tmp_path: Path) -> Path:
    """Valid protobuf, valid ONNX structure, but an operator onnxruntime has never heard of."""
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 10])])
    path = tmp_path / "unloadable.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    "case",
    ["missing", "not_onnx", "truncated", "unloadable", "wrong_dtype", "wrong_names", "no_data", "bad_shape_flag",
     "other_model"],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, tmp_path: Path, case: str):
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("these are my notes\n")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(fixture_path("lenet5").read_bytes()[:30_000])
    wrong_dtype = tmp_path / "f64.npz"
    np.savez(wrong_dtype, input=np.zeros((2, 1, 8, 8)))
    wrong_names = tmp_path / "names.npz"
    np.savez(wrong_names, image=np.zeros((2, 1, 8, 8), np.float32))
    argv = {
        "missing": ["inspect", str(tmp_path / "absent.onnx")],
        "not_onnx": ["inspect", str(not_onnx)],
        "truncated": ["check", LENET5, str(truncated), "--data", LENET5_TEST],
        "unloadable": ["check", LENET5, str(_unloadable_model(tmp_path)), "--data", LENET5_TEST],
        "wrong_dtype": ["check", LENET5, LENET5, "--data", str(wrong_dtype)],
        "wrong_names": ["check", LENET5, LENET5, "--data", str(wrong_names)],
        "no_data": ["check", LENET5, LENET5],
        "bad_shape_flag": ["inspect", LENET5, "--shape", "input=1x2"],
        "other_model": ["check", LENET5, str(fixture_path("lenet300")), "--data", LENET5_TEST],
    }[case]
    before = sorted(tmp_path.iterdir())
    code, out, err = _cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("onnxcomp: error: ")
    assert "Traceback" not in err
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_inspect_json_counts_weights_everywhere(capsys):
    for name in ("lenet300", "lenet300_constants"):
        code, out, _ = _cli(capsys, "inspect", str(fixture_path(name)), "--json")
        summary = json.loads(out)
        assert code == 0
        assert summary["weights"]["params"] == 50_610
        assert summary["macs_total"] == 50_200
        assert summary["default_opset"] == 17
    code, out, _ = _cli(capsys, "inspect", str(fixture_path("lenet300_if")), "--json", "--shape", "input=4x64")
    summary = json.loads(out)
    assert summary["weights_by_storage"]["subgraph"]["params"] == 2 * 50_610
    assert summary["op_histogram"]["If"] == 1 and summary["op_histogram"]["Gemm"] == 6
    assert summary["macs_total"] == 4 * 50_200  # the costlier branch of the If, at batch 4


def test_inspect_text_goes_to_stderr(capsys):
    code, out, err = _cli(capsys, "inspect", str(fixture_path("resnet")))
    assert code == 0 and out == ""
    assert "BatchNormalization 9" in err and "MACs:" in err

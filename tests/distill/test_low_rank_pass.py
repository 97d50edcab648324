"""Low-rank factorization on hand-built Gemm, MatMul and Conv layers (low-rank weights plus noise) and fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxcomp.passes.low_rank import LowRankConfig, LowRankPass, choose_rank
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.cli import run
from onnxcomp.errors import InputError
from onnxcomp.macs import count_macs
from onnxcomp.session import create_session


def _low_rank(rng: np.random.Generator, rows: int, cols: int, rank: int = 4) -> np.ndarray:
    return (rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols))
            + 0.01 * rng.standard_normal((rows, cols))).astype(np.float32)


def _model(op: str) -> tuple[onnx.ModelProto, list[int]]:
    rng = np.random.default_rng(0)
    if op == "Gemm":
        weight, shape = _low_rank(rng, 48, 64), [3, 64]  # transB: weight is N x K
        node = helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1, alpha=0.5, beta=2.0)
        extra = [numpy_helper.from_array(rng.standard_normal(48).astype(np.float32), "B")]
        out = [3, 48]
    elif op == "MatMul":
        weight, shape = _low_rank(rng, 64, 48), [2, 5, 64]
        node, extra, out = helper.make_node("MatMul", ["x", "W"], ["y"]), [], [2, 5, 48]
    else:
        weight = _low_rank(rng, 32, 16 * 9).reshape(32, 16, 3, 3)
        shape, out = [2, 16, 10, 10], [2, 32, 5, 5]
        node = helper.make_node("Conv", ["x", "W", "B"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
        extra = [numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "B")]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                              [numpy_helper.from_array(weight, "W"), *extra])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), shape


@pytest.mark.parametrize("op", ["Gemm", "MatMul", "Conv"])
def test_factorization_keeps_outputs_close_and_cuts_macs(op: str):
    proto, shape = _model(op)
    model = ir.serde.deserialize_model(proto)
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = create_session(proto.SerializeToString()).run(None, {"x": x})[0]
    macs_before = count_macs(model).total

    report = LowRankPass(LowRankConfig(energy=0.999, min_size=0))(model).report

    (entry,) = report.changed
    assert entry["rank"] == 4 and entry["relative_error"] < 0.01
    actual = create_session(io.serialize(model)).run(None, {"x": x})[0]
    np.testing.assert_allclose(actual, expected, atol=0.05 * float(np.abs(expected).max()))
    assert count_macs(model).total < 0.25 * macs_before
    assert report.summary["macs_after"] < report.summary["macs_before"]
    assert [n.op_type for n in model.graph] == [op, op] and "W" not in model.graph.initializers
    assert model.graph.outputs[0].name == "y"


def test_full_rank_layers_are_left_alone_with_a_reason():
    proto, _ = _model("Gemm")
    model = ir.serde.deserialize_model(proto)
    report = LowRankPass(LowRankConfig(energy=1.0, min_size=0))(model).report
    assert not report.modified and "would save" in report.skipped[0].reason


def test_rank_mode_and_energy_choice():
    singular = np.array([4.0, 2.0, 1.0, 0.5])
    assert choose_rank(singular, 0.75, None) == 1  # 16 / 21.25 = 0.753
    assert choose_rank(singular, 0.98, None) == 3  # 21 / 21.25
    assert choose_rank(singular, 0.5, 10) == 4
    with pytest.raises(InputError):
        LowRankConfig(energy=0.0)


def test_lenet300_fixture_factorized_within_the_if_and_constants():
    for name in ("lenet300_constants", "lenet300_if"):
        model = io.load(fixture_path(name))
        report = LowRankPass(LowRankConfig(energy=0.9, min_size=256))(model).report
        assert report.modified
        test = np.load(FIXTURES / "lenet300.test.npz")
        logits = create_session(io.serialize(model)).run(None, {"input": test["input"]})[0]
        assert np.mean(logits.argmax(1) == test["labels"]) > 0.93


def test_lowrank_cli_json(tmp_path: Path, capsys):
    out = tmp_path / "lr.onnx"
    code = run(["lowrank", str(fixture_path("lenet300")), "-o", str(out), "--rank", "16", "--min-size", "256",
                "--json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and out.exists()
    assert {e["rank"] for e in document["report"]["changed"]} <= {10, 16}
    assert document["report"]["summary"]["macs_after"] < document["report"]["summary"]["macs_before"]


def test_lowrank_cli_bad_input(tmp_path: Path, capsys):
    out = tmp_path / "lr.onnx"
    assert run(["lowrank", str(fixture_path("lenet300")), "-o", str(out), "--rank", "4", "--energy", "0.9"]) == 2
    assert run(["lowrank", str(fixture_path("lenet300")), "-o", str(out), "--distill-epochs", "1"]) == 2
    assert not out.exists()

"""The budget's fewest-first search, measured activation types and the speed-aware option."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass, _speed_steps
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.calibration import fewest_meeting
from onnxcomp.cli import run
from onnxcomp.data import input_specs, open_data
from onnxcomp.macs import count_macs
from onnxcomp.pass_base import PassContext


def _quantize(name: str, calib: str, **options):
    model = io.load(fixture_path(name))
    data = open_data(str(FIXTURES / calib), input_specs(model), batch_size=64)
    options.setdefault("progress", False)
    return QuantizePass(QuantizeConfig(**options), PassContext(data))(model)


@pytest.mark.parametrize("answer", [1, 2, 3, 5, 8, 13, 31, 64])
def test_fewest_meeting_finds_the_smallest_count_in_logarithmic_steps(answer: int) -> None:
    asked: list[int] = []

    def meets(k: int) -> bool:
        asked.append(k)
        return k >= answer

    assert fewest_meeting(64, meets) == answer
    assert len(asked) == len(set(asked))  # never the same count twice
    assert len(asked) <= 2 * math.ceil(math.log2(answer)) + 1
    assert answer == 1 or answer - 1 in asked  # the count just below was seen to fail: fewest first


def test_fewest_meeting_when_nothing_or_no_candidates_meet() -> None:
    asked: list[int] = []
    assert fewest_meeting(10, lambda k: asked.append(k) or False) is None
    assert asked == [1, 2, 4, 8, 10]
    assert fewest_meeting(0, lambda k: True) is None


def test_budget_search_is_fewest_first_on_a_real_model() -> None:
    from test_quantize_pass import outlier_lenet300

    model = outlier_lenet300()
    data = open_data(str(FIXTURES / "lenet300.calib.npz"), input_specs(model), batch_size=64)
    result = QuantizePass(QuantizeConfig(max_drop=0.0, measure_target=False, progress=False), PassContext(data))(model)
    budget = result.report.summary["budget"]
    floats = result.report.summary["float_nodes"]
    assert budget["met"] is True and floats == [e["node"] for e in budget["ranking"][: len(floats)]]
    assert str(len(floats)) in budget["tried"]
    assert len(floats) == 1 or str(len(floats) - 1) in budget["tried"]  # one fewer was measured and missed


def test_speed_steps_grow_geometrically() -> None:
    assert _speed_steps(0) == [0]
    assert _speed_steps(1) == [0, 1]
    assert _speed_steps(5) == [0, 1, 2, 4, 5]
    assert _speed_steps(8) == [0, 1, 2, 4, 8]


def test_auto_activations_are_measured_on_cpu() -> None:
    result = _quantize("lenet300", "lenet300.calib.npz", measure_target=True, latency_runs=5)
    choice = result.report.summary["activation_choice"]
    assert choice["measured"] is True and choice["chosen"] in ("uint8", "int8")
    assert set(choice["p50_ms"]) == {"uint8", "int8"} and all(v > 0 for v in choice["p50_ms"].values())
    assert result.report.summary["activations"] == choice["chosen"]


def test_auto_activations_follow_the_rule_without_measuring() -> None:
    result = _quantize("lenet300", "lenet300.calib.npz", measure_target=False)
    assert result.report.summary["activation_choice"] == {
        "chosen": "uint8", "measured": False,
        "why": "rule for the target (model too slow to time, or cuda)"}


def test_speed_aware_returns_the_cheapest_kernels_and_is_not_slower_than_fp32() -> None:
    result = _quantize("lenet5", "lenet5.calib.npz", speed_aware=True, measure_target=False, latency_runs=5)
    speed = result.report.summary["speed"]
    if not speed["int8_pays"]:  # timing-dependent: on a machine where no variant beats fp32, nothing changes
        assert not result.modified and [n.op_type for n in result.model.graph] == [
            n.op_type for n in io.load(fixture_path("lenet5")).graph]
        assert any("left unchanged" in s.reason for s in result.report.skipped)
        return
    model = io.load(fixture_path("lenet5"))
    macs = {e.name: e.macs for e in count_macs(model, {"input": [64, 1, 8, 8]}).entries}
    returned = speed["returned"]
    assert [macs[label] for label in returned] == sorted(macs[label] for label in returned)
    assert all(macs[label] <= min((macs[k] for k in macs if k not in returned), default=math.inf)
               for label in returned)
    chosen = speed["p50_ms"][str(speed["chosen_step"])]
    assert (speed["int8_pays"] and chosen < speed["p50_ms"]["fp32"]) or len(returned) == 5
    reasons = {s.target: s.reason for s in result.report.skipped}
    assert all("speed-aware" in reasons[label] for label in returned)
    ops = [n.op_type for n in result.model.graph]
    assert ("QuantizeLinear" in ops) == (len(returned) < 5)
    kept = [e["node"] for e in result.report.changed]
    assert not set(kept) & set(returned)


def test_cli_speed_aware_and_no_bias_correction(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = run(["quantize", str(fixture_path("lenet300")), "-o", str(tmp_path / "q.onnx"), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64", "--speed-aware", "--no-bias-correction",
                "--json"])
    summary = json.loads(capsys.readouterr().out)["report"]["summary"]
    assert code == 0
    if not summary["speed"]["int8_pays"]:  # timing-dependent: int8 never faster here, so nothing is written
        assert not (tmp_path / "q.onnx").exists()
        return
    assert summary["bias_correction"] is False
    assert summary["speed"]["chosen_step"] in (0, 1, 2, 3)
    assert summary["activation_choice"]["measured"] is True
    written = io.load(tmp_path / "q.onnx")
    int8 = [v for v in written.graph.initializers.values() if v.const_value.dtype == ir.DataType.INT8]
    assert (len(int8) > 0) == (summary["speed"]["chosen_step"] < 3)
    assert np.isfinite(summary["target"]["latency_int8_ms"])


def test_speed_aware_leaves_subgraph_weights_float() -> None:
    result = _quantize("lenet300_if", "lenet300.calib.npz", speed_aware=True, measure_target=False, latency_runs=5)
    assert not any(e.get("mode") == "weight-only" for e in result.report.changed)
    reasons = [s.reason for s in result.report.skipped]
    # Either int8 paid for some main-graph kernels and the subgraph weights were left float with that reason,
    # or nothing paid (timing-dependent) and the whole model was left unchanged.
    assert any("left float by --speed-aware" in r for r in reasons) or (
        not result.modified and any("left unchanged" in r for r in reasons))

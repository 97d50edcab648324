"""Latency measurement on real sessions: counts, interleaving, ratios, recorded settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from check_models import Models

from onnxcomp.check.latency import LatencyReport, measure_latency
from onnxcomp.errors import InputError
from onnxcomp.session import create_session


def _feed(rows: int = 32, size: int = 256) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((rows, size)).astype(np.float32)}


def test_runs_are_counted_and_interleaved_a_b_a_b(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=1)
    sessions = {"reference": create_session(path), "candidate": create_session(path)}
    order: list[str] = []

    report = measure_latency(sessions, _feed(), warmup=2, runs=7, on_run=order.append)

    assert order == ["reference", "candidate"] * 7
    assert [m.runs for m in report.models] == [7, 7]
    assert report.warmup == 2 and report.baseline.name == "reference"


def test_timings_are_ordered_and_in_milliseconds(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=1)
    report = measure_latency({"only": create_session(path)}, _feed(), warmup=1, runs=20)

    m = report.model("only")
    assert 0 < m.min_ms <= m.p50_ms <= m.p90_ms <= m.p99_ms <= m.max_ms < 1000
    assert m.min_ms <= m.mean_ms <= m.max_ms
    assert m.ratio_p50 is None and report.ratio_p50 is None
    assert report.passes(1.0)  # nothing to compare with: no gate to fail


def test_identical_models_have_a_ratio_near_one(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=2)
    sessions = {"reference": create_session(path), "candidate": create_session(path)}

    report = measure_latency(sessions, _feed(), warmup=5, runs=40)

    assert report.ratio_p50 is not None and report.ratio_p90 is not None
    assert 1 / 3 < report.ratio_p50 < 3  # loose: shared CI machines are noisy
    assert report.model("candidate").ratio_p50 == report.ratio_p50


def test_a_model_doing_clearly_more_work_is_slower_and_fails_the_gate(models: Models) -> None:
    sessions = {
        "reference": create_session(models.matmul_chain("light.onnx", layers=0)),
        "candidate": create_session(models.matmul_chain("heavy.onnx", layers=8)),
    }

    report = measure_latency(sessions, _feed(rows=64), warmup=2, runs=10)

    assert report.ratio_p50 is not None and report.ratio_p50 > 2
    assert report.passes(None) and not report.passes(1.5)
    assert report.passes(report.ratio_p50)  # the measured ratio is the loosest passing gate
    (line,) = report.failures(1.5)
    assert line.startswith("candidate: latency p50 ") and "reference > max 1.5x" in line


def test_provider_and_thread_count_are_recorded(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=1)
    sessions = {"reference": create_session(path), "candidate": create_session(path, intra_op_threads=1)}

    report = measure_latency(sessions, _feed(), warmup=0, runs=2)

    assert report.model("reference").provider == "cpu"
    assert report.model("reference").intra_op_threads is None  # onnxruntime's default
    assert report.model("candidate").intra_op_threads == 1


def test_min_seconds_adds_rounds_beyond_runs(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=0)
    sessions = {"reference": create_session(path), "candidate": create_session(path)}

    report = measure_latency(sessions, _feed(rows=2), warmup=0, runs=2, min_seconds=0.05)

    runs = [m.runs for m in report.models]
    assert runs[0] == runs[1] > 2


def test_each_session_gets_only_its_own_inputs(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=1)
    feed = {**_feed(), "unused": np.zeros(3, np.float32)}

    report = measure_latency({"reference": create_session(path)}, feed, warmup=0, runs=1)

    assert report.baseline.runs == 1


def test_latency_report_is_json_safe(models: Models) -> None:
    path = models.matmul_chain("m.onnx", layers=1)
    sessions = {"reference": create_session(path), "candidate": create_session(path)}
    report: LatencyReport = measure_latency(sessions, _feed(), warmup=0, runs=3)

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))

    assert data["baseline"] == "reference" and data["warmup"] == 0
    assert [m["name"] for m in data["models"]] == ["reference", "candidate"]
    assert data["models"][1]["runs"] == 3 and data["models"][0]["ratio_p50"] is None
    assert data["ratio_p50"] == pytest.approx(report.ratio_p50)


@pytest.mark.parametrize(("kwargs", "message"), [({"runs": 0}, "runs"), ({"warmup": -1}, "warmup")])
def test_bad_arguments_are_input_errors(models: Models, kwargs: dict[str, int], message: str) -> None:
    session = create_session(models.matmul_chain("m.onnx", layers=0))
    with pytest.raises(InputError, match=message):
        measure_latency({"reference": session}, _feed(), **kwargs)
    with pytest.raises(InputError, match="no sessions"):
        measure_latency({}, _feed())

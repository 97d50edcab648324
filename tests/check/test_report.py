"""run_check end to end on real sessions: verdicts, exit codes, providers, input errors, rendering."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from check_models import Models
from onnx import TensorProto

from onnxcomp.check.parity import ParityThresholds, compare
from onnxcomp.check.report import CheckReport, ProviderCheck, check_compatible_inputs, run_check
from onnxcomp.errors import InputError
from onnxcomp.session import FeedSpec, resolve_provider

Feed = dict[str, np.ndarray]
GATES = ParityThresholds(atol=1e-5, min_cosine=0.9999, min_top1=0.99)
CUDA_HERE = resolve_provider("cuda").available


def _factory(feeds: list[Feed]) -> tuple[Callable[[], Iterable[Feed]], list[int]]:
    """A feeds factory that counts how often it is called."""
    calls: list[int] = []

    def make() -> Iterable[Feed]:
        calls.append(1)
        return iter(feeds)

    return make, calls


def _json(report: CheckReport) -> dict[str, object]:
    return json.loads(json.dumps(report.to_dict(), allow_nan=False))


def test_identical_models_pass_with_exit_0(models: Models, feeds: list[Feed]) -> None:
    make, calls = _factory(feeds)
    report = run_check(
        models.classifier(),
        models.classifier("copy.onnx"),
        make,
        thresholds=GATES,
        data_description="3 batches of 4",
    )

    assert report.passed and bool(report) and report.exit_code == 0 and report.failures() == []
    (cpu,) = report.providers
    assert (cpu.provider, cpu.ort_name, cpu.available, cpu.latency) == (
        "cpu",
        "CPUExecutionProvider",
        True,
        None,
    )
    assert cpu.parity is not None and cpu.parity.batches == 3 and calls == [1]
    text = report.render_text()
    assert "logits" in text and "3 batches of 4" in text and text.endswith("PASSED")


def test_perturbed_candidate_fails_with_exit_1_and_provider_prefixed_lines(
    models: Models, feeds: list[Feed]
) -> None:
    report = run_check(
        models.classifier(), models.classifier("cand.onnx", delta=5.0), lambda: feeds, thresholds=GATES
    )

    assert not report.passed and report.exit_code == 1
    failures = report.failures()
    assert any(line.startswith("cpu: logits: cosine ") for line in failures)
    assert any(line.startswith("cpu: logits: top-1 agreement ") for line in failures)
    text = report.render_text()
    assert "FAILED (exit 1):" in text and "  cpu: logits: cosine" in text


@pytest.mark.skipif(CUDA_HERE, reason="CUDA works on this machine")
def test_unavailable_provider_is_reported_and_does_not_fail_the_check(
    models: Models, feeds: list[Feed]
) -> None:
    make, calls = _factory(feeds)
    report = run_check(
        models.classifier(),
        models.classifier("copy.onnx"),
        make,
        providers=("cpu", "cuda", "CPUExecutionProvider"),
        thresholds=GATES,
    )

    assert [p.provider for p in report.providers] == ["cpu", "cuda"]  # repeats collapse
    cuda = report.providers[1]
    assert not cuda.available and cuda.parity is None and cuda.reason is not None
    assert cuda.reason.startswith("cuda: not available (")
    assert report.passed and report.exit_code == 0 and calls == [1]
    assert cuda.reason in report.render_text()
    assert _json(report)["providers"][1]["passed"] is None  # type: ignore[index]


@pytest.mark.skipif(CUDA_HERE, reason="CUDA works on this machine")
def test_only_unavailable_providers_is_exit_2(models: Models, feeds: list[Feed]) -> None:
    report = run_check(
        models.classifier(), models.classifier("copy.onnx"), lambda: feeds, providers=("cuda",)
    )

    assert not report.passed and report.exit_code == 2
    (line,) = report.failures()
    assert line.startswith("no requested provider is available: cuda: not available")
    assert "FAILED (exit 2)" in report.render_text()


def test_latency_is_measured_and_gated(models: Models) -> None:
    feeds = [{"x": np.ones((64, 256), np.float32)}]
    light, heavy = models.matmul_chain("light.onnx", 0), models.matmul_chain("heavy.onnx", 8)

    report = run_check(
        light, light, lambda: feeds, latency=True, max_slowdown=3.0, latency_runs=6, intra_op_threads=1
    )
    latency = report.providers[0].latency
    assert latency is not None and [m.runs for m in latency.models] == [6, 6]
    assert latency.baseline.intra_op_threads == 1
    text = report.render_text()
    assert "latency (cpu, threads 1)" in text and "candidate/reference" in text

    slow = run_check(light, heavy, lambda: feeds, latency=True, max_slowdown=1.5, latency_runs=6)
    assert slow.exit_code == 1
    assert any(line.startswith("cpu: candidate: latency p50 ") for line in slow.failures())


def test_candidate_that_fails_at_run_time_is_a_gate_failure(models: Models, feeds: list[Feed]) -> None:
    report = run_check(
        models.classifier(), models.classifier("broken.onnx", runtime_error=True), lambda: feeds, latency=True
    )

    cpu = report.providers[0]
    assert cpu.error is not None and cpu.error.startswith("candidate failed on feed #0: ")
    assert "\n" not in cpu.error and cpu.latency is None
    assert cpu.parity is None  # it failed before any batch was compared
    assert report.exit_code == 1 and report.failures()[0].startswith("cpu: candidate failed on feed #0")


def test_incompatible_candidate_inputs_raise_input_error_naming_the_input(
    models: Models, feeds: list[Feed]
) -> None:
    reference = models.classifier()
    with pytest.raises(InputError, match="candidate input 'y' is not an input of the reference"):
        run_check(reference, models.classifier("renamed.onnx", input_name="y"), lambda: feeds)
    with pytest.raises(InputError, match="input 'x' differs: reference takes x: float32"):
        run_check(reference, models.classifier("double.onnx", input_type=TensorProto.DOUBLE), lambda: feeds)


def test_fixed_dimensions_must_agree() -> None:
    ref = [FeedSpec("x", "tensor(float)", np.dtype(np.float32), ("N", 8))]
    check_compatible_inputs(ref, [FeedSpec("x", "tensor(float)", np.dtype(np.float32), (1, 8))])
    with pytest.raises(InputError, match="'x' differs"):
        check_compatible_inputs(ref, [FeedSpec("x", "tensor(float)", np.dtype(np.float32), ("N", 9))])
    check_compatible_inputs(ref, [])  # the candidate may drop inputs


def test_input_problems_raise_one_line_input_errors(
    models: Models, tmp_path: Path, feeds: list[Feed]
) -> None:
    reference = models.classifier()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")

    with pytest.raises(InputError, match=re.escape(f"cannot load model {broken}: ")) as loading:
        run_check(reference, broken, lambda: feeds)
    assert "\n" not in str(loading.value)
    with pytest.raises(InputError, match="no feeds"):
        run_check(reference, reference, list)
    with pytest.raises(InputError, match="feed #0: input 'x': got dtype float64"):
        run_check(reference, reference, lambda: [{"x": np.zeros((2, 8))}])
    with pytest.raises(InputError, match="latency runs must be at least 1"):
        run_check(reference, reference, lambda: feeds, latency=True, latency_runs=0)
    with pytest.raises(InputError, match="max_slowdown needs latency"):
        run_check(reference, reference, lambda: feeds, max_slowdown=1.2)
    with pytest.raises(InputError, match="unknown provider 'tpu'"):
        run_check(reference, reference, lambda: feeds, providers=("tpu",))


def test_json_layout(models: Models, feeds: list[Feed]) -> None:
    report = run_check(
        models.classifier(),
        models.classifier("copy.onnx"),
        lambda: feeds,
        thresholds=GATES,
        latency=True,
        max_slowdown=10.0,
        latency_runs=3,
        data_description="d",
    )

    data = _json(report)
    assert list(data) == [
        "format",
        "version",
        "reference",
        "candidate",
        "data",
        "thresholds",
        "max_slowdown",
        "passed",
        "exit_code",
        "failures",
        "providers",
    ]
    assert (data["format"], data["version"], data["exit_code"], data["max_slowdown"]) == (
        "onnxcomp.check",
        1,
        0,
        10.0,
    )
    provider = data["providers"][0]  # type: ignore[index]
    assert set(provider) == {
        "provider",
        "ort_name",
        "available",
        "reason",
        "passed",
        "error",
        "parity",
        "latency",
    }
    logits = provider["parity"]["outputs"][0]
    assert logits["metrics"]["snr_db"] == "inf" and logits["metrics"]["top1"] == 1.0
    assert provider["latency"]["models"][1]["runs"] == 3


def test_provider_check_of_an_unavailable_provider_has_no_failures() -> None:
    check = ProviderCheck("cuda", "CUDAExecutionProvider", False, "cuda: not available (x)")
    assert check.failures(None) == [] and check.passed(None) is None


def test_failing_report_still_carries_its_parity_in_json_and_text(models: Models, feeds: list[Feed]) -> None:
    report = run_check(
        models.classifier(), models.classifier("cand.onnx", delta=5.0), lambda: feeds, thresholds=GATES
    )

    provider = _json(report)["providers"][0]  # type: ignore[index]
    assert provider["passed"] is False and provider["parity"]["passed"] is False
    assert provider["parity"]["batches"] == 3 and provider["parity"]["failures"]
    assert "cpu (CPUExecutionProvider): 3 batch(es), FAILED" in report.render_text()
    cosine = report.providers[0].parity.output("logits").metrics.cosine  # type: ignore[union-attr]
    assert 0.9 < cosine < 1 and f"  {math.floor(cosine * 1e6) / 1e6:.6f}  " in report.render_text()


def test_a_cosine_just_below_one_never_renders_as_one() -> None:
    ref = {"y": np.array([[1.0, 0.0]], np.float32)}
    cand = {"y": np.array([[1.0, 0.0009]], np.float32)}
    parity = compare([ref], [cand])
    provider = ProviderCheck("cpu", "CPUExecutionProvider", True, None, parity)
    text = CheckReport("r.onnx", "c.onnx", "", ParityThresholds(), (provider,)).render_text()

    assert "0.999999" in text and "1.000000" not in text

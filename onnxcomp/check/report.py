"""``onnxcomp check``: run a reference and a candidate on the same data, per provider, and gate.

:func:`run_check` does the work and returns a :class:`CheckReport`, which decides the exit code:

* ``0`` — every available requested provider passed parity (and latency, when gated);
* ``1`` — a gate failed: a parity threshold, a NaN/shape/dtype mismatch, the latency ratio, or
  the candidate raising at run time where the reference did not;
* ``2`` — nothing could be checked: none of the requested providers is available here. A
  provider that is unavailable while another one ran is reported as "not available" and does
  not fail the check: CI machines without a GPU can share a command line with ones that have
  one, and the report says plainly what was skipped.

Problems with the inputs themselves raise :class:`~onnxcomp.errors.InputError` (exit 2) instead
of producing a report: a model onnxruntime cannot load, an unknown provider name, empty data,
data that does not fit the reference, or a candidate whose inputs are not compatible with the
reference's (an input the reference lacks, a different dtype, rank or fixed dimension). The
candidate may drop reference inputs: each model is fed only the inputs it has.

JSON layout of :meth:`CheckReport.to_dict` (non-finite floats: ``"inf"``/``"-inf"``, NaN → null)::

    {"format": "onnxcomp.check", "version": 1,
     "reference": str, "candidate": str, "data": str,
     "thresholds": {"atol", "rtol", "min_cosine", "min_top1", "min_snr_db": float | null},
     "max_slowdown": float | null, "passed": bool, "exit_code": 0 | 1 | 2, "failures": [str],
     "providers": [{"provider": "cpu", "ort_name": str, "available": bool, "reason": str | null,
                    "passed": bool | null, "error": str | null,
                    "parity": ParityReport.to_dict() | null, "latency": LatencyReport.to_dict() | null}]}
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from onnxcomp.check._json import json_float
from onnxcomp.check.latency import LatencyReport, measure_latency
from onnxcomp.check.parity import ParityAccumulator, ParityReport, ParityThresholds
from onnxcomp.errors import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_OK, InputError
from onnxcomp.session import (
    FeedSpec,
    ProviderStatus,
    check_feed,
    create_session,
    model_feed_specs,
    one_line,
    resolve_provider,
    run_named,
)

FORMAT = "onnxcomp.check"
FORMAT_VERSION = 1

Feed = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class ProviderCheck:
    """The check on one execution provider.

    Attributes:
        provider: Our short name (``cpu``, ``cuda``).
        ort_name: onnxruntime's name.
        available: False when the provider cannot run here; ``reason`` says why and nothing
            else is filled in.
        parity: Parity over all feeds; None when unavailable.
        latency: Latency on the first feed when asked for; None otherwise.
        error: The candidate raised while running (the reference did not): a failure.
    """

    provider: str
    ort_name: str
    available: bool
    reason: str | None = None
    parity: ParityReport | None = None
    latency: LatencyReport | None = None
    error: str | None = None

    def failures(self, max_slowdown: float | None) -> list[str]:
        """Failing lines, each prefixed with the provider; empty for an unavailable provider."""
        if not self.available:
            return []
        lines = [self.error] if self.error else []
        if self.parity is not None:
            lines.extend(self.parity.failures())
        if self.latency is not None:
            lines.extend(self.latency.failures(max_slowdown))
        return [f"{self.provider}: {line}" for line in lines]

    def passed(self, max_slowdown: float | None) -> bool | None:
        """True/False for an available provider; None when it was not available (not checked)."""
        return None if not self.available else not self.failures(max_slowdown)

    def to_dict(self, max_slowdown: float | None) -> dict[str, object]:
        """JSON-safe mapping."""
        return {
            "provider": self.provider,
            "ort_name": self.ort_name,
            "available": self.available,
            "reason": self.reason,
            "passed": self.passed(max_slowdown),
            "error": self.error,
            "parity": self.parity.to_dict() if self.parity is not None else None,
            "latency": self.latency.to_dict() if self.latency is not None else None,
        }


@dataclass(frozen=True)
class CheckReport:
    """Everything ``onnxcomp check`` found, with the verdict and the exit code.

    Attributes:
        reference: Path of the reference model, as given.
        candidate: Path of the candidate model, as given.
        data: What the feeds were, as the caller described them.
        thresholds: The parity gates.
        providers: One entry per requested provider, in request order.
        max_slowdown: Latency gate on the p50 ratio candidate/reference; None for none.
    """

    reference: str
    candidate: str
    data: str
    thresholds: ParityThresholds
    providers: tuple[ProviderCheck, ...]
    max_slowdown: float | None = None

    @property
    def checked(self) -> list[ProviderCheck]:
        """The providers that were available and ran."""
        return [p for p in self.providers if p.available]

    @property
    def passed(self) -> bool:
        """True when at least one provider ran and every one that ran passed every gate."""
        return bool(self.checked) and not self.failures()

    def __bool__(self) -> bool:
        return self.passed

    @property
    def exit_code(self) -> int:
        """0 passed, 1 a gate failed, 2 no requested provider was available (nothing checked)."""
        if not self.checked:
            return EXIT_BAD_INPUT
        return EXIT_OK if self.passed else EXIT_GATE_FAILED

    def failures(self) -> list[str]:
        """Why the check did not pass, one line each (``provider: output: metric …``)."""
        if not self.checked:
            reasons = "; ".join(p.reason or p.provider for p in self.providers)
            return [f"no requested provider is available: {reasons}"]
        return [line for p in self.providers for line in p.failures(self.max_slowdown)]

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping (``json.dumps(..., allow_nan=False)`` accepts it); layout in the module doc."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "reference": self.reference,
            "candidate": self.candidate,
            "data": self.data,
            "thresholds": self.thresholds.to_dict(),
            "max_slowdown": json_float(self.max_slowdown),
            "passed": self.passed,
            "exit_code": self.exit_code,
            "failures": self.failures(),
            "providers": [p.to_dict(self.max_slowdown) for p in self.providers],
        }

    def render_text(self) -> str:
        """A compact human summary for stderr: per provider, per output, latency, verdict."""
        lines = [
            f"reference  {self.reference}",
            f"candidate  {self.candidate}",
            f"data       {self.data or '(not described)'}",
            f"gates      {self.thresholds.describe()}{_latency_gate(self.max_slowdown)}",
        ]
        for provider in self.providers:
            lines.append("")
            lines.extend(_render_provider(provider, self.max_slowdown))
        lines.append("")
        lines.extend(self._render_verdict())
        return "\n".join(lines)

    def _render_verdict(self) -> list[str]:
        if self.passed:
            return ["PASSED"]
        return [f"FAILED (exit {self.exit_code}):", *(f"  {line}" for line in self.failures())]


def run_check(
    reference: str | os.PathLike[str],
    candidate: str | os.PathLike[str],
    feeds: Callable[[], Iterable[Feed]],
    providers: Sequence[str] = ("cpu",),
    thresholds: ParityThresholds | None = None,
    latency: bool = False,
    max_slowdown: float | None = None,
    latency_runs: int = 50,
    intra_op_threads: int | None = None,
    data_description: str = "",
) -> CheckReport:
    """Check ``candidate`` against ``reference`` on every requested provider.

    For each provider (duplicates such as ``cpu`` and ``CPUExecutionProvider`` collapse into one)
    both sessions are created only when the provider is available, the candidate's inputs are
    checked against the reference's, the feeds are streamed once through both models into a
    :class:`~onnxcomp.check.parity.ParityAccumulator` (memory does not grow with the data), and
    latency is measured on the first feed when asked. Sessions are released before the next
    provider starts.

    Args:
        reference: The model taken as correct.
        candidate: The model under test.
        feeds: Returns a fresh iterable of feeds each call: one pass per provider.
        providers: ``cpu``, ``cuda`` or onnxruntime provider names.
        thresholds: Parity gates; None reports without gating parity.
        latency: Measure latency (interleaved, see :mod:`onnxcomp.check.latency`).
        max_slowdown: Fail when candidate p50 / reference p50 exceeds this (needs ``latency``).
        latency_runs: Timed runs per model.
        intra_op_threads: Threads per operator for both sessions; None keeps onnxruntime's default.
        data_description: Shown in the report, e.g. ``"test.npz (360 samples)"``.

    Raises:
        InputError: A model cannot be loaded, a provider name is unknown, no provider was
            requested, the data is empty or does not fit the reference, the candidate's inputs are
            incompatible, or ``max_slowdown`` is given without ``latency``.
    """
    if max_slowdown is not None and not latency:
        raise InputError("max_slowdown needs latency measurement to be enabled")
    if max_slowdown is not None and max_slowdown <= 0:
        raise InputError(f"max_slowdown must be positive, got {max_slowdown}")
    if latency and latency_runs < 1:
        raise InputError(f"latency runs must be at least 1, got {latency_runs}")
    gates = thresholds if thresholds is not None else ParityThresholds()
    job = _Job(
        os.fspath(reference), os.fspath(candidate), feeds, gates, latency, latency_runs, intra_op_threads
    )
    checks = tuple(job.run(status) for status in _resolve_all(providers))
    return CheckReport(job.reference, job.candidate, data_description, gates, checks, max_slowdown)


def _resolve_all(providers: Sequence[str]) -> list[ProviderStatus]:
    """Resolve provider names in order, dropping repeats of the same onnxruntime provider."""
    if not providers:
        raise InputError("no provider requested")
    resolved: dict[str, ProviderStatus] = {}
    for name in providers:
        status = resolve_provider(name)
        resolved.setdefault(status.ort_name, status)
    return list(resolved.values())


@dataclass(frozen=True)
class _Job:
    """The parts of a check that are the same for every provider."""

    reference: str
    candidate: str
    feeds: Callable[[], Iterable[Feed]]
    thresholds: ParityThresholds
    latency: bool
    latency_runs: int
    intra_op_threads: int | None

    def run(self, status: ProviderStatus) -> ProviderCheck:
        """Check one provider; an unavailable one is only reported."""
        if not status.available:
            return ProviderCheck(status.name, status.ort_name, False, status.reason)
        ref = create_session(self.reference, status.ort_name, intra_op_threads=self.intra_op_threads)
        cand = create_session(self.candidate, status.ort_name, intra_op_threads=self.intra_op_threads)
        check_compatible_inputs(model_feed_specs(ref), model_feed_specs(cand))
        parity, first_feed, error = self._parity(ref, cand)
        timing = None
        if self.latency and error is None:
            sessions = {"reference": ref, "candidate": cand}
            timing = measure_latency(sessions, first_feed, runs=self.latency_runs)
        return ProviderCheck(status.name, status.ort_name, True, None, parity, timing, error)

    def _parity(
        self, ref: ort.InferenceSession, cand: ort.InferenceSession
    ) -> tuple[ParityReport | None, Feed, str | None]:
        """Stream every feed through both models; stop at the first candidate run error.

        Returns the parity (None when the candidate failed before any batch was compared), a copy
        of the first feed for latency (data loaders may reuse their buffers), and the candidate's
        run error if any.
        """
        accumulator = ParityAccumulator(self.thresholds)
        ref_specs, cand_specs = model_feed_specs(ref), model_feed_specs(cand)
        first: Feed | None = None
        for index, feed in enumerate(self.feeds()):
            if first is None:
                first = {name: np.array(value, copy=True) for name, value in feed.items()}
            check_feed(ref_specs, feed, where=f"{self.reference}, feed #{index}")
            check_feed(cand_specs, feed, where=f"{self.candidate}, feed #{index}")
            ref_out = _run(ref, feed)
            if isinstance(ref_out, str):
                raise InputError(f"{self.reference}: reference failed on feed #{index}: {ref_out}")
            cand_out = _run(cand, feed)
            if isinstance(cand_out, str):
                partial = accumulator.result() if index > 0 else None
                return partial, first, f"candidate failed on feed #{index}: {cand_out}"
            accumulator.update(ref_out, cand_out)
        if first is None:
            raise InputError("the data has no feeds: nothing to compare")
        return accumulator.result(), first, None


def _run(session: ort.InferenceSession, feed: Feed) -> dict[str, np.ndarray] | str:
    """Outputs by name, or onnxruntime's error as one line."""
    try:
        return run_named(session, feed)
    except Exception as error:  # onnxruntime's exceptions derive from Exception only
        return one_line(error)


def check_compatible_inputs(reference: Sequence[FeedSpec], candidate: Sequence[FeedSpec]) -> None:
    """Raise :class:`InputError` naming the input when the candidate cannot take the reference's feeds.

    Every candidate input must be a reference input with the same dtype and rank, and the same
    size wherever both fix a dimension. The candidate may lack reference inputs.
    """
    by_name = {spec.name: spec for spec in reference}
    for spec in candidate:
        ref = by_name.get(spec.name)
        if ref is None:
            names = ", ".join(by_name) or "none"
            raise InputError(
                f"candidate input {spec.name!r} is not an input of the reference (reference inputs: {names})"
            )
        if not _compatible(ref, spec):
            raise InputError(
                f"input {spec.name!r} differs: reference takes {ref.describe()}, "
                f"candidate takes {spec.describe()}"
            )


def _compatible(ref: FeedSpec, cand: FeedSpec) -> bool:
    if ref.type != cand.type:
        return False
    if ref.shape is None or cand.shape is None:
        return True
    if len(ref.shape) != len(cand.shape):
        return False
    return all(
        not (isinstance(a, int) and isinstance(b, int)) or a == b
        for a, b in zip(ref.shape, cand.shape, strict=True)
    )


def _latency_gate(max_slowdown: float | None) -> str:
    return "" if max_slowdown is None else f"; latency p50 ≤ {max_slowdown:g}x reference"


def _render_provider(check: ProviderCheck, max_slowdown: float | None) -> list[str]:
    if not check.available:
        return [check.reason or f"{check.provider}: not available"]
    verdict = "ok" if check.passed(max_slowdown) else "FAILED"
    batches = check.parity.batches if check.parity is not None else 0
    lines = [f"{check.provider} ({check.ort_name}): {batches} batch(es), {verdict}"]
    if check.error:
        lines.append(f"  {check.error}")
    if check.parity is not None:
        lines.extend(_parity_table(check.parity))
    if check.latency is not None:
        lines.extend(_latency_table(check.latency, max_slowdown))
    return lines


def _parity_table(parity: ParityReport) -> list[str]:
    header = ("output", "max abs", "p99 abs", "max rel", "cosine", "SNR dB", "top-1", "verdict")
    rows = [header]
    for out in parity.outputs:
        m = out.metrics
        if m is None:
            rows.append((out.name, "-", "-", "-", "-", "-", "-", "error"))
            continue
        p99 = _num(m.p99_abs) if m.p99_exact else "≤" + _num(m.p99_abs)
        top1 = "-" if m.top1 is None else f"{m.top1:.4f}"
        rows.append(
            (
                out.name,
                _num(m.max_abs),
                p99,
                _num(m.max_rel),
                _cosine(m.cosine),
                _snr(m.snr_db),
                top1,
                "ok" if out.passed else "FAILED",
            )
        )
    return _table(rows)


def _latency_table(latency: LatencyReport, max_slowdown: float | None) -> list[str]:
    base = latency.baseline
    threads = base.intra_op_threads if base.intra_op_threads is not None else f"default, {os.cpu_count()} cpus"
    rows: list[tuple[str, ...]] = [
        (f"latency ({base.provider}, threads {threads})", "p50 ms", "p90 ms", "p99 ms", "runs", "")
    ]
    for m in latency.models:
        rows.append((m.name, f"{m.p50_ms:.4g}", f"{m.p90_ms:.4g}", f"{m.p99_ms:.4g}", str(m.runs), ""))
    for m in latency.models[1:]:
        passed = m.ratio_p50 is None or max_slowdown is None or m.ratio_p50 <= max_slowdown
        gate = "" if max_slowdown is None else f"{'ok' if passed else 'FAILED'} (max {max_slowdown:g}x)"
        rows.append((f"{m.name}/{base.name}", _ratio(m.ratio_p50), _ratio(m.ratio_p90), "", "", gate))
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _num(value: float) -> str:
    return "0" if value == 0 else f"{value:.3g}"


def _cosine(value: float) -> str:
    """Six decimals, rounded down: a cosine just below 1 must never print as 1."""
    return "1" if value == 1.0 else f"{math.floor(value * 1e6) / 1e6:.6f}"


def _snr(value: float) -> str:
    return "inf" if value == float("inf") else ("-inf" if value == float("-inf") else f"{value:.1f}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"

"""Latency of two (or more) sessions on the same feed, measured so the comparison is fair.

Why it is measured this way:

* **interleaved runs** (A B A B …, after a warm-up of each): slow drift (CPU frequency and
  temperature, a noisy neighbour, a background compile) hits both models alike instead of
  whichever happened to run second;
* ``time.perf_counter_ns`` around ``session.run`` only, with the inputs and output names prepared
  beforehand, so Python overhead outside the runtime is not measured;
* **percentiles, not just the mean**: p50 is the gate (robust to the odd descheduled run), p90
  and p99 show the tail. Percentiles are nearest-rank, i.e. an actually observed time;
* the provider and intra-op thread count are recorded, because a latency number without them
  cannot be compared with anything.

The first session in the mapping is the baseline; every other one gets ratios to it
(``candidate p50 / reference p50``), and :meth:`LatencyReport.passes` gates the p50 ratio.

Models that run in tens of microseconds are dominated by thread wake-ups: on a shared two-core
machine the p50 ratio of two identical 15 µs models varied from 0.76 to 1.32 at 50 runs. Gate
such models loosely, or measure longer (more ``runs``, ``min_seconds``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from onnxcomp.check._json import json_float
from onnxcomp.errors import InputError
from onnxcomp.session import session_intra_op_threads, session_provider

_NS_PER_MS = 1e6


@dataclass(frozen=True)
class ModelLatency:
    """Timing of one model; times in milliseconds.

    Attributes:
        intra_op_threads: As set in the session options; None means onnxruntime's default
            (one thread per physical core).
        ratio_p50: This model's p50 over the baseline's; None for the baseline itself.
    """

    name: str
    provider: str
    intra_op_threads: int | None
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    ratio_p50: float | None = None
    ratio_p90: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping of every field."""
        return {
            "name": self.name,
            "provider": self.provider,
            "intra_op_threads": self.intra_op_threads,
            "runs": self.runs,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "ratio_p50": json_float(self.ratio_p50),
            "ratio_p90": json_float(self.ratio_p90),
        }


@dataclass(frozen=True)
class LatencyReport:
    """Latency of every model, the first being the baseline the others are compared with."""

    models: tuple[ModelLatency, ...]
    warmup: int

    @property
    def baseline(self) -> ModelLatency:
        """The first model (the reference)."""
        return self.models[0]

    def model(self, name: str) -> ModelLatency:
        """The timing of model ``name``.

        Raises:
            KeyError: No model of that name was measured.
        """
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    @property
    def ratio_p50(self) -> float | None:
        """Worst p50 slowdown against the baseline (candidate / reference); None with one model."""
        return _worst(m.ratio_p50 for m in self.models[1:])

    @property
    def ratio_p90(self) -> float | None:
        """Worst p90 slowdown against the baseline; None with one model."""
        return _worst(m.ratio_p90 for m in self.models[1:])

    def passes(self, max_slowdown: float | None) -> bool:
        """True when no model's p50 exceeds ``max_slowdown`` times the baseline's (None: no gate)."""
        ratio = self.ratio_p50
        return max_slowdown is None or ratio is None or ratio <= max_slowdown

    def failures(self, max_slowdown: float | None) -> list[str]:
        """One line per model slower than allowed, e.g. ``candidate: p50 1.31x reference > max 1.2x``."""
        if max_slowdown is None:
            return []
        return [
            f"{m.name}: latency p50 {m.ratio_p50:.3g}x {self.baseline.name} > max {max_slowdown:g}x "
            f"({m.p50_ms:.4g} ms vs {self.baseline.p50_ms:.4g} ms)"
            for m in self.models[1:]
            if m.ratio_p50 is not None and m.ratio_p50 > max_slowdown
        ]

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping: ``warmup``, ``baseline``, ``ratio_p50``, ``ratio_p90``, ``models``."""
        return {
            "warmup": self.warmup,
            "baseline": self.baseline.name,
            "ratio_p50": json_float(self.ratio_p50),
            "ratio_p90": json_float(self.ratio_p90),
            "models": [m.to_dict() for m in self.models],
        }


@dataclass(frozen=True)
class _Plan:
    """What one timed run needs, prepared outside the timed region."""

    session: ort.InferenceSession
    outputs: list[str]
    inputs: dict[str, np.ndarray]


def measure_latency(
    sessions: Mapping[str, ort.InferenceSession],
    feed: Mapping[str, np.ndarray],
    *,
    warmup: int = 5,
    runs: int = 50,
    min_seconds: float | None = None,
    on_run: Callable[[str], None] | None = None,
) -> LatencyReport:
    """Time every session on ``feed``, interleaving the runs, and compare with the first one.

    Args:
        sessions: Name to session, e.g. ``{"reference": s1, "candidate": s2}``; the first is the
            baseline. Each session gets only the inputs of ``feed`` it has.
        feed: Input name to array.
        warmup: Untimed runs of each session first (allocations, kernel selection, caches).
        runs: Timed runs of each session (at least).
        min_seconds: Keep adding rounds until this much time has passed too, for models so fast
            that ``runs`` rounds are over before the machine settles.
        on_run: Called with the session name just before each timed run (outside the timing);
            lets callers and tests observe the order.

    Raises:
        InputError: No sessions, ``runs`` < 1 or ``warmup`` < 0.
    """
    _check_arguments(sessions, warmup, runs)
    plans = {name: _plan(session, feed) for name, session in sessions.items()}
    for _ in range(warmup):
        for plan in plans.values():
            plan.session.run(plan.outputs, plan.inputs)
    samples = _timed_rounds(plans, runs, min_seconds, on_run)
    return _report(sessions, samples, warmup)


def _check_arguments(sessions: Mapping[str, ort.InferenceSession], warmup: int, runs: int) -> None:
    if not sessions:
        raise InputError("latency: no sessions to measure")
    if runs < 1:
        raise InputError(f"latency: runs must be at least 1, got {runs}")
    if warmup < 0:
        raise InputError(f"latency: warmup must not be negative, got {warmup}")


def _plan(session: ort.InferenceSession, feed: Mapping[str, np.ndarray]) -> _Plan:
    wanted = {arg.name for arg in session.get_inputs()}
    inputs = {name: value for name, value in feed.items() if name in wanted}
    return _Plan(session, [arg.name for arg in session.get_outputs()], inputs)


def _timed_rounds(
    plans: Mapping[str, _Plan], runs: int, min_seconds: float | None, on_run: Callable[[str], None] | None
) -> dict[str, list[int]]:
    """Run every plan once per round, in order, until ``runs`` rounds and ``min_seconds`` are done."""
    samples: dict[str, list[int]] = {name: [] for name in plans}
    deadline = time.perf_counter() + (min_seconds or 0.0)
    rounds = 0
    while rounds < runs or time.perf_counter() < deadline:
        for name, plan in plans.items():
            if on_run is not None:
                on_run(name)
            start = time.perf_counter_ns()
            plan.session.run(plan.outputs, plan.inputs)
            samples[name].append(time.perf_counter_ns() - start)
        rounds += 1
    return samples


def _report(
    sessions: Mapping[str, ort.InferenceSession], samples: Mapping[str, list[int]], warmup: int
) -> LatencyReport:
    names = list(sessions)
    base = _stats(names[0], sessions[names[0]], samples[names[0]], None)
    models = [base] + [_stats(name, sessions[name], samples[name], base) for name in names[1:]]
    return LatencyReport(tuple(models), warmup)


def _stats(
    name: str, session: ort.InferenceSession, times_ns: Sequence[int], base: ModelLatency | None
) -> ModelLatency:
    ordered = sorted(times_ns)
    p50, p90, p99 = (_nearest_rank(ordered, pct) / _NS_PER_MS for pct in (50, 90, 99))
    return ModelLatency(
        name=name,
        provider=session_provider(session),
        intra_op_threads=session_intra_op_threads(session),
        runs=len(ordered),
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        mean_ms=sum(ordered) / len(ordered) / _NS_PER_MS,
        min_ms=ordered[0] / _NS_PER_MS,
        max_ms=ordered[-1] / _NS_PER_MS,
        ratio_p50=_ratio(p50, base.p50_ms) if base is not None else None,
        ratio_p90=_ratio(p90, base.p90_ms) if base is not None else None,
    )


def _nearest_rank(ordered: Sequence[int], percent: int) -> int:
    """Smallest sample with at least ``percent`` % of samples at or below it."""
    rank = (percent * len(ordered) + 99) // 100
    return ordered[max(rank, 1) - 1]


def _ratio(value: float, base: float) -> float | None:
    return value / base if base > 0 else None


def _worst(ratios: Iterable[float | None]) -> float | None:
    known = [r for r in ratios if r is not None]
    return max(known) if known else None

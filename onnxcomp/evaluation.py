"""Measuring a candidate against the original on the data: the budget check ``optimize`` runs after each step.

One pass over the data gives everything the budget and the report need: the checker's parity metrics
(cosine, top-1 agreement, errors) through :class:`~onnxcomp.check.ParityAccumulator`, accuracy against labels
when the data has them, and optionally a histogram of absolute errors per output for the report's plot. The
original model's outputs are computed once and reused for every candidate (up to a memory cap).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxcomp.check.parity import ParityAccumulator, ParityReport, ParityThresholds
from onnxcomp.data import DataSource
from onnxcomp.progress import Progress
from onnxcomp.recipe import Budget
from onnxcomp.session import run_named

__all__ = ["ErrorHistogram", "Evaluation", "Evaluator", "latency_samples"]

#: Reference outputs kept in memory for reuse across candidates, at most this many bytes.
REFERENCE_CACHE_BYTES = 256 * 2**20
#: Error histogram bins: log10(|error|) from 1e-9 to 1e3, four bins a decade.
_LOG_EDGES = np.linspace(-9.0, 3.0, 49)


@dataclass
class ErrorHistogram:
    """Counts of ``|candidate - reference|`` per output on log-spaced bins, plus exact zeros."""

    edges: list[float] = field(default_factory=lambda: [float(e) for e in _LOG_EDGES])
    counts: list[int] = field(default_factory=lambda: [0] * (len(_LOG_EDGES) - 1))
    zeros: int = 0
    below: int = 0
    above: int = 0

    def add(self, errors: np.ndarray) -> None:
        errors = np.abs(errors[np.isfinite(errors)]).ravel()
        nonzero = errors[errors > 0]
        self.zeros += int(errors.size - nonzero.size)
        logs = np.log10(nonzero)
        self.below += int(np.sum(logs < _LOG_EDGES[0]))
        self.above += int(np.sum(logs > _LOG_EDGES[-1]))
        counts, _ = np.histogram(logs, bins=_LOG_EDGES)
        self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {"log10_edges": self.edges, "counts": self.counts, "zeros": self.zeros,
                "below_range": self.below, "above_range": self.above}


@dataclass
class Evaluation:
    """A candidate against the original on the data."""

    parity: ParityReport
    accuracy_reference: float | None
    accuracy_candidate: float | None
    histograms: dict[str, ErrorHistogram] = field(default_factory=dict)

    @property
    def cosine(self) -> float | None:
        values = [o.metrics.cosine for o in self.parity.outputs if o.metrics is not None]
        return min(values) if values else None

    @property
    def top1(self) -> float | None:
        values = [o.metrics.top1 for o in self.parity.outputs if o.metrics is not None and o.metrics.top1 is not None]
        return min(values) if values else None

    @property
    def drop(self) -> float | None:
        """Top-1 accuracy drop with labels, else top-1 disagreement with the original."""
        if self.accuracy_reference is not None and self.accuracy_candidate is not None:
            return self.accuracy_reference - self.accuracy_candidate
        return None if self.top1 is None else 1.0 - self.top1

    def failures(self, budget: Budget) -> list[str]:
        """One line per budget item that does not hold (empty: within budget)."""
        lines = [f"parity: {line}" for line in self.parity.failures() if "no batches" in line or "mismatch" in line]
        if budget.min_cosine is not None and (self.cosine is None or self.cosine < budget.min_cosine):
            lines.append(f"cosine {_fmt(self.cosine)} < {budget.min_cosine:.8g}")
        if budget.min_top1 is not None and self.top1 is not None and self.top1 < budget.min_top1:
            lines.append(f"top-1 agreement {_fmt(self.top1)} < {budget.min_top1:.8g}")
        if budget.max_drop is not None and self.drop is not None and self.drop > budget.max_drop + 1e-12:
            lines.append(f"top-1 drop {_fmt(self.drop)} > {budget.max_drop:.8g}")
        return lines

    def summary(self) -> dict[str, Any]:
        """The few numbers a stage reports (the full parity report is kept for the final model)."""
        return {"cosine": self.cosine, "top1_agreement": self.top1, "accuracy_reference": self.accuracy_reference,
                "accuracy_candidate": self.accuracy_candidate, "drop": self.drop}


class Evaluator:
    """Runs candidates against one reference session over the data."""

    def __init__(self, reference: ort.InferenceSession, data: DataSource, *, progress: bool = False) -> None:
        self.reference = reference
        self.data = data
        self.progress = progress
        self._cache: list[dict[str, np.ndarray]] | None = None

    def evaluate(self, candidate: ort.InferenceSession, *, histograms: bool = False,
                 label: str = "evaluating") -> Evaluation:
        accumulator = ParityAccumulator(ParityThresholds())
        hist: dict[str, ErrorHistogram] = {}
        right = {"reference": 0, "candidate": 0}
        labelled = 0
        cached, fresh = self._cache, _Cache()
        with Progress(label, self.data.num_samples, enabled=self.progress) as bar:
            for index, batch in enumerate(self.data):
                ref = cached[index] if cached is not None else fresh.add(run_named(self.reference, batch.feed))
                cand = run_named(candidate, batch.feed)
                accumulator.update(ref, cand)
                if histograms:
                    _add_errors(hist, ref, cand)
                if batch.labels is not None and (hits := _hits(ref, cand, batch.labels)) is not None:
                    right["reference"] += hits[0]
                    right["candidate"] += hits[1]
                    labelled += batch.labels.size
                bar.advance(_samples(batch.feed))
        if cached is None and fresh.items is not None:
            self._cache = fresh.items
        return Evaluation(accumulator.result(), right["reference"] / labelled if labelled else None,
                          right["candidate"] / labelled if labelled else None, hist)


class _Cache:
    """Reference outputs collected during the first evaluation, dropped once they outgrow the cap."""

    def __init__(self) -> None:
        self.items: list[dict[str, np.ndarray]] | None = []
        self.size = 0

    def add(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.items is not None:
            self.size += sum(getattr(v, "nbytes", 0) for v in outputs.values())
            if self.size <= REFERENCE_CACHE_BYTES:
                self.items.append(outputs)
            else:
                self.items = None
        return outputs


def _add_errors(hist: dict[str, ErrorHistogram], ref: dict[str, Any], cand: dict[str, Any]) -> None:
    for name, value in ref.items():
        other = cand.get(name)
        if isinstance(value, np.ndarray) and isinstance(other, np.ndarray) and value.shape == other.shape \
                and np.issubdtype(value.dtype, np.floating):
            hist.setdefault(name, ErrorHistogram()).add(other.astype(np.float64) - value.astype(np.float64))


def _hits(ref: dict[str, Any], cand: dict[str, Any], labels: np.ndarray) -> tuple[int, int] | None:
    """Correct top-1 predictions of both models on the first output, when it holds one score row per label."""
    name = next(iter(ref))
    r, c = ref[name], cand.get(name)
    if not isinstance(c, np.ndarray) or r.ndim < 2 or r.shape[-1] < 2 or r[..., 0].size != labels.size:
        return None
    flat = labels.reshape(-1)
    return (int(np.sum(r.argmax(-1).reshape(-1) == flat)), int(np.sum(c.argmax(-1).reshape(-1) == flat)))


def _samples(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if isinstance(first, np.ndarray) and first.ndim else 1


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.8g}"


def latency_samples(sessions: dict[str, ort.InferenceSession], feed: dict[str, np.ndarray], *, runs: int = 30,
                    warmup: int = 5, progress: bool = False,
                    clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, list[float]]:
    """Every timed run of every session in milliseconds, interleaved (A B A B ...) so drift hits all alike.

    The report plots the distributions; :func:`onnxcomp.check.measure_latency` gives only percentiles.
    """
    plans = {}
    for name, session in sessions.items():
        wanted = {arg.name for arg in session.get_inputs()}
        plans[name] = (session, [o.name for o in session.get_outputs()],
                       {k: v for k, v in feed.items() if k in wanted})
    for _ in range(warmup):
        for session, outputs, inputs in plans.values():
            session.run(outputs, inputs)
    samples: dict[str, list[float]] = {name: [] for name in plans}
    with Progress("latency", runs, enabled=progress) as bar:
        for _ in range(runs):
            for name, (session, outputs, inputs) in plans.items():
                start = clock()
                session.run(outputs, inputs)
                samples[name].append((clock() - start) / 1e6)
            bar.advance()
    return samples

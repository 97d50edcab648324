"""The metric protocol, its result, and loading a metric named as ``module:function``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxcomp.data import import_callable
from onnxcomp.errors import InputError

#: One sample's outputs, by output name.
Outputs = Mapping[str, np.ndarray]
Metric = Callable[[Sequence[Outputs], Sequence[Outputs]], "MetricResult"]


@dataclass(frozen=True)
class MetricResult:
    """Named values of a task metric; truthy when the primary value clears its bar.

    Attributes:
        name: what was measured, e.g. ``"box F1 @ IoU 0.5"``.
        values: named values, the primary one first (insertion order is kept).
        bar: the threshold the primary value must reach (``>=`` when higher is better, ``<=`` otherwise).
        higher_is_better: the direction of the primary value.
        details: free-form facts for a report (sample counts, what was skipped).
    """

    name: str
    values: dict[str, float]
    bar: float
    higher_is_better: bool = True
    details: dict[str, object] = field(default_factory=dict)

    @property
    def primary(self) -> str:
        return next(iter(self.values))

    @property
    def value(self) -> float:
        return self.values[self.primary]

    @property
    def passed(self) -> bool:
        value = self.value
        if math.isnan(value):
            return False
        return value >= self.bar if self.higher_is_better else value <= self.bar

    def __bool__(self) -> bool:
        return self.passed

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "kept" if self.passed else "NOT kept"
        return f"{self.primary} {self.value:.4g} (bar {op} {self.bar:g}): task {verdict}"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "primary": self.primary, "value": _finite(self.value), "bar": self.bar,
                "higher_is_better": self.higher_is_better, "passed": self.passed,
                "values": {k: _finite(v) for k, v in self.values.items()}, "details": self.details}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def load_metric(spec: str) -> Metric:
    """Import the metric named ``package.module:function``; a one-line InputError when it is not there."""
    if not re.fullmatch(r"[\w.]+:\w+", spec):
        raise InputError(f"--metric {spec!r}: expected module:function, e.g. onnxcomp.corpus.models.yolov8n:metric")
    return import_callable(spec, "--metric")  # type: ignore[return-value]


def check_pairing(reference: Sequence[Outputs], candidate: Sequence[Outputs]) -> None:
    """Metrics compare sample by sample: both sides must hold the same number of samples."""
    if len(reference) != len(candidate):
        raise ValueError(f"reference has {len(reference)} samples, candidate {len(candidate)}")
    if not reference:
        raise ValueError("no samples to compare")

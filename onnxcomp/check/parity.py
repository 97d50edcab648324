"""Numerical parity between a reference model's outputs and a candidate's, accumulated in a stream.

What is measured, per output, over every element of every batch (all arithmetic in float64):

* **absolute error** ``|cand - ref|``: max, mean and p99;
* **relative error** ``|cand - ref| / max(|ref|, RELATIVE_ERROR_FLOOR)``: max and mean. The floor
  keeps elements whose reference is (almost) zero from dividing by zero; such elements get a
  large relative error on purpose. Use ``atol`` together with ``rtol`` to forgive them;
* **cosine similarity** of the flattened outputs, ``dot / (|ref| |cand|)``, accumulated as a dot
  product and two sums of squares. Identical outputs give exactly 1.0 (two all-zero outputs
  included), one all-zero output against a non-zero one 0.0;
* **SNR** in dB, ``10 log10(sum ref² / sum (ref - cand)²)``: ``inf`` when the outputs are
  identical, ``-inf`` when the reference is all zeros and the candidate is not;
* **top-1 agreement** for score outputs only (floating dtype, rank ≥ 2, more than one class; trailing
  size-1 axes as in ``[N, 1000, 1, 1]`` are ignored): the
  share of rows (all leading dimensions) whose argmax over the last axis agrees. None otherwise;
* **NaN / Inf** counts in both models. Error metrics use only the positions where both values
  are finite; a position where the two differ in finiteness (NaN or Inf in one model only,
  NaN against Inf, or infinities of opposite sign) is a *non-finite mismatch* and always fails.
  Matching NaNs and equal infinities are accepted, like ``numpy.allclose(equal_nan=True)``.

The p99 of the absolute error is exact while an output has at most ``exact_quantile_limit``
elements (the errors are kept); past that the kept errors move into a logarithmic histogram with
``HISTOGRAM_BINS_PER_OCTAVE`` bins per power of two, and p99 is reported as the upper edge of its
bin (never more than the max), so it over-states the true value by at most 1/128 (0.8 %). Memory
is bounded either way; ``p99_exact`` says which case applied. Percentiles are nearest-rank: the
smallest error such that at least 99 % of elements are at or below it.

Threshold semantics (:class:`ParityThresholds`; unset ones are not checked):

* ``atol`` alone: ``max abs error <= atol``;
* ``rtol`` alone: ``max rel error <= rtol`` (relative error as above, with the floor);
* both: element-wise like ``numpy.allclose``, ``|cand - ref| <= atol + rtol * |ref|`` for every
  element (no floor: ``atol`` covers the zeros). Evaluated as
  ``max(|cand - ref| - rtol * |ref|) <= atol`` so the reported ``needed_atol_at_rtol`` passes
  exactly, without float re-association;
* ``min_cosine``, ``min_snr_db``: ``value >= min``, for floating-point outputs only. Integer and
  bool outputs (labels, indices, masks) are reported with the same metrics but gated only by
  ``atol``/``rtol`` (``atol=0`` demands equality): the cosine of class indices means nothing,
  and the agreement of labels is what ``min_top1`` on the scores measures;
* ``min_top1``: ``top1 >= min`` for every score output; when no output is a score output the
  check fails (a gate that cannot be evaluated must not pass silently).

Shape or dtype differences, a missing output or a non-numeric output fail the check with a
reason (batches are numbered from 0, like the data loader's items). Every metric also has its
"needed" value: the loosest threshold that would just have passed, so a failing gate says how
far off it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from onnxcomp.check._json import json_float
from onnxcomp.errors import InputError

#: Denominator floor for relative errors: ``|ref|`` below this counts as this.
RELATIVE_ERROR_FLOOR = 1e-6
#: Elements per output up to which p99 is exact (float64 each: 8 MB at the default).
EXACT_QUANTILE_LIMIT = 1_000_000
#: Histogram resolution once p99 is no longer exact (relative bin width ≤ 2 / this).
HISTOGRAM_BINS_PER_OCTAVE = 256


@dataclass(frozen=True)
class ParityThresholds:
    """Gates on parity metrics; None means "not checked". See the module docstring for semantics.

    Raises:
        InputError: A threshold is NaN or outside its range (tolerances ≥ 0, cosine in [-1, 1],
            top-1 in [0, 1]). InputError is a ValueError, and reaches CLI users as exit 2.
    """

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    min_snr_db: float | None = None
    #: Fail when ``min_top1`` is set but no output is a score vector. On for a threshold the user asked
    #: for (a gate that can never apply must not pass silently), off for a default applied to any model.
    require_top1: bool = True

    def __post_init__(self) -> None:
        limits = {
            "atol": (0.0, math.inf),
            "rtol": (0.0, math.inf),
            "min_cosine": (-1.0, 1.0),
            "min_top1": (0.0, 1.0),
            "min_snr_db": (-math.inf, math.inf),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise InputError(f"threshold {name} must be in [{low}, {high}], got {value}")

    def is_empty(self) -> bool:
        """True when no threshold is set: the check only reports."""
        return all(getattr(self, name) is None for name in _GATES)

    def describe(self) -> str:
        """One line for humans, e.g. ``atol 1e-05, cosine ≥ 0.99``."""
        parts = []
        if self.atol is not None:
            parts.append(f"atol {self.atol:g}")
        if self.rtol is not None:
            parts.append(f"rtol {self.rtol:g}")
        if self.min_cosine is not None:
            parts.append(f"cosine ≥ {self.min_cosine:g}")
        if self.min_top1 is not None:
            parts.append(f"top-1 ≥ {self.min_top1:g}")
        if self.min_snr_db is not None:
            parts.append(f"SNR ≥ {self.min_snr_db:g} dB")
        return ", ".join(parts) if parts else "none (report only)"

    def to_dict(self) -> dict[str, float | str | None]:
        """JSON-safe mapping of every threshold (None when unset)."""
        return {name: json_float(getattr(self, name)) for name in _GATES}


_GATES = ("atol", "rtol", "min_cosine", "min_top1", "min_snr_db")


@dataclass(frozen=True)
class TensorInfo:
    """dtype and shape of an output as first seen (the shape of the first batch)."""

    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping."""
        return {"dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ParityMetrics:
    """Accumulated error metrics of one output. See the module docstring for definitions.

    Attributes:
        count: Elements seen.
        compared: Elements where both values are finite; the error, cosine and SNR metrics
            cover these.
        p99_exact: False once the output outgrew the exact limit and p99 comes from the
            histogram (then it is an upper bound within 0.8 %).
        top1: Share of rows whose argmax agrees; None for outputs that are not score vectors.
        nonfinite_mismatches: Positions where NaN/Inf differ between the models (always a failure).
        violations: Elements outside the element-wise tolerance (atol and/or rtol) the
            accumulator was given; None when neither was set.
        needed_atol_at_rtol: With an ``rtol`` threshold, the smallest ``atol`` that passes the
            combined check at that ``rtol``; None without ``rtol``.
    """

    count: int
    compared: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    p99_exact: bool
    max_rel: float
    mean_rel: float
    cosine: float
    snr_db: float
    top1: float | None
    top1_rows: int
    top1_agree: int
    nan_reference: int
    inf_reference: int
    nan_candidate: int
    inf_candidate: int
    nonfinite_mismatches: int
    violations: int | None
    needed_atol_at_rtol: float | None

    @property
    def needed_atol(self) -> float:
        """Smallest ``atol`` (alone) that passes: the max absolute error."""
        return self.max_abs

    @property
    def needed_rtol(self) -> float:
        """Smallest ``rtol`` (alone) that passes: the max relative error."""
        return self.max_rel

    @property
    def needed_min_cosine(self) -> float:
        """Largest ``min_cosine`` that passes: the cosine."""
        return self.cosine

    @property
    def needed_min_top1(self) -> float | None:
        """Largest ``min_top1`` that passes: the agreement (None for non-score outputs)."""
        return self.top1

    @property
    def needed_min_snr_db(self) -> float:
        """Largest ``min_snr_db`` that passes: the SNR."""
        return self.snr_db

    def needed(self) -> dict[str, float | None]:
        """The "just passes" value of every threshold, keyed like :class:`ParityThresholds`."""
        return {
            "atol": self.needed_atol,
            "rtol": self.needed_rtol,
            "min_cosine": self.needed_min_cosine,
            "min_top1": self.needed_min_top1,
            "min_snr_db": self.needed_min_snr_db,
            "atol_at_rtol": self.needed_atol_at_rtol,
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping (non-finite floats as in :mod:`onnxcomp.check._json`)."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class OutputParity:
    """Parity of one output: metrics, or the reason it could not be compared, and its verdict.

    Attributes:
        metrics: None when ``error`` is set (a shape/dtype mismatch in any batch, a missing or
            non-numeric output): numbers from the batches before it would mislead.
        failures: Human lines, each naming the output and the metric; empty when it passed.
    """

    name: str
    reference: TensorInfo | None
    candidate: TensorInfo | None
    batches: int
    metrics: ParityMetrics | None
    error: str | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """True when every set threshold holds and nothing structural went wrong."""
        return not self.failures

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping."""
        metrics = self.metrics
        return {
            "name": self.name,
            "passed": self.passed,
            "error": self.error,
            "failures": list(self.failures),
            "reference": self.reference.to_dict() if self.reference is not None else None,
            "candidate": self.candidate.to_dict() if self.candidate is not None else None,
            "batches": self.batches,
            "metrics": metrics.to_dict() if metrics is not None else None,
            "needed": {k: json_float(v) for k, v in metrics.needed().items()}
            if metrics is not None
            else None,
        }


@dataclass(frozen=True)
class ParityReport:
    """Parity of every reference output over all batches, with the thresholds applied.

    ``bool(report)`` is ``report.passed``. A report over zero batches fails: a gate that compared
    nothing must not pass.
    """

    outputs: tuple[OutputParity, ...]
    thresholds: ParityThresholds
    batches: int

    @property
    def passed(self) -> bool:
        """True when there is data, every output passed and no report-level check failed."""
        return not self.failures()

    def __bool__(self) -> bool:
        return self.passed

    def output(self, name: str) -> OutputParity:
        """The parity of output ``name``.

        Raises:
            KeyError: The reference has no such output.
        """
        for out in self.outputs:
            if out.name == name:
                return out
        raise KeyError(name)

    def failures(self) -> list[str]:
        """Every failing line: report-level ones first, then per output in output order."""
        lines = self._report_failures()
        for out in self.outputs:
            lines.extend(out.failures)
        return lines

    def _report_failures(self) -> list[str]:
        if self.batches == 0:
            return ["no batches were compared"]
        applicable = [o for o in self.outputs if o.metrics is not None and o.metrics.top1 is not None]
        t = self.thresholds
        if t.min_top1 is not None and t.require_top1 and not applicable and not any(o.error for o in self.outputs):
            return ["min_top1 is set but no output is a score vector (float, rank ≥ 2 with more than one class)"]
        return []

    def to_dict(self) -> dict[str, object]:
        """JSON-safe mapping: ``passed``, ``batches``, ``thresholds``, ``failures``, ``outputs``."""
        return {
            "passed": self.passed,
            "batches": self.batches,
            "thresholds": self.thresholds.to_dict(),
            "failures": self.failures(),
            "outputs": [out.to_dict() for out in self.outputs],
        }


class _P99Sketch:
    """p99 of non-negative values: exact up to a size limit, then a log-spaced histogram."""

    def __init__(self, exact_limit: int) -> None:
        self._exact_limit = exact_limit
        self._kept: list[np.ndarray] | None = []
        self._size = 0
        self._zeros = 0
        self._bins: dict[int, int] = {}
        self._max = 0.0

    def add(self, values: np.ndarray) -> None:
        """Add finite, non-negative float64 values (kept by reference: callers pass fresh arrays)."""
        if values.size == 0:
            return
        self._size += values.size
        self._max = max(self._max, float(values.max()))
        if self._kept is not None:
            self._kept.append(values)
            if self._size > self._exact_limit:
                self._spill()
        else:
            self._histogram(values)

    @property
    def exact(self) -> bool:
        """Whether :meth:`p99` is exact (all values are still kept)."""
        return self._kept is not None

    def p99(self) -> float:
        """Nearest-rank 99th percentile; 0.0 for no values."""
        if self._size == 0:
            return 0.0
        rank = (99 * self._size + 99) // 100  # ceil(0.99 n) in integers: 1-based rank
        if self._kept is not None:
            values = np.concatenate(self._kept)
            return float(np.partition(values, rank - 1)[rank - 1])
        return min(self._histogram_rank(rank), self._max)

    def _spill(self) -> None:
        assert self._kept is not None
        kept, self._kept = self._kept, None
        for values in kept:
            self._histogram(values)

    def _histogram(self, values: np.ndarray) -> None:
        positive = values[values > 0]
        self._zeros += values.size - positive.size
        mantissa, exponent = np.frexp(positive)  # mantissa in [0.5, 1)
        sub = np.minimum(
            ((mantissa - 0.5) * 2 * HISTOGRAM_BINS_PER_OCTAVE).astype(np.int64), HISTOGRAM_BINS_PER_OCTAVE - 1
        )
        keys, counts = np.unique(
            exponent.astype(np.int64) * HISTOGRAM_BINS_PER_OCTAVE + sub, return_counts=True
        )
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            self._bins[key] = self._bins.get(key, 0) + count

    def _histogram_rank(self, rank: int) -> float:
        seen = self._zeros
        if rank <= seen:
            return 0.0
        for key in sorted(self._bins):
            seen += self._bins[key]
            if seen >= rank:
                exponent, sub = divmod(key, HISTOGRAM_BINS_PER_OCTAVE)
                return math.ldexp(0.5 + (sub + 1) / (2 * HISTOGRAM_BINS_PER_OCTAVE), exponent)
        return self._max


@dataclass
class _Sums:
    """Running sums over the finite positions of one output."""

    count: int = 0
    compared: int = 0
    sum_abs: float = 0.0
    max_abs: float = 0.0
    sum_rel: float = 0.0
    max_rel: float = 0.0
    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    diff_sq: float = 0.0
    max_excess: float = -math.inf
    violations: int = 0
    top1_rows: int = 0
    top1_agree: int = 0
    top1_applicable: bool = False
    nan_reference: int = 0
    inf_reference: int = 0
    nan_candidate: int = 0
    inf_candidate: int = 0
    nonfinite_mismatches: int = 0


@dataclass
class _OutputAccumulator:
    """Streaming state of one output."""

    name: str
    thresholds: ParityThresholds
    exact_limit: int
    reference: TensorInfo | None = None
    candidate: TensorInfo | None = None
    batches: int = 0
    error: str | None = None
    sums: _Sums = field(default_factory=_Sums)
    sketch: _P99Sketch = field(init=False)

    def __post_init__(self) -> None:
        self.sketch = _P99Sketch(self.exact_limit)

    def update(self, ref: object, cand: object | None) -> None:
        """Add one batch; record the first structural problem instead of raising."""
        self.batches += 1
        if self.error is not None:
            return
        if cand is None:
            self.error = "missing from the candidate's outputs"
            return
        ref_arr, cand_arr = _as_numeric(ref), _as_numeric(cand)
        if self.reference is None and ref_arr is not None and cand_arr is not None:
            self.reference = TensorInfo(str(ref_arr.dtype), tuple(ref_arr.shape))
            self.candidate = TensorInfo(str(cand_arr.dtype), tuple(cand_arr.shape))
        self.error = _structural_problem(ref_arr, cand_arr, self.batches - 1)
        if self.error is None:
            assert ref_arr is not None and cand_arr is not None
            self._add(ref_arr, cand_arr)

    def _add(self, ref: np.ndarray, cand: np.ndarray) -> None:
        s = self.sums
        r = ref.astype(np.float64, copy=False).ravel()
        c = cand.astype(np.float64, copy=False).ravel()
        s.count += r.size
        finite = self._count_nonfinite(r, c)
        if finite is not None:
            r, c = r[finite], c[finite]
        self._add_errors(r, c)
        self._add_top1(ref, cand)

    def _count_nonfinite(self, r: np.ndarray, c: np.ndarray) -> np.ndarray | None:
        """Count NaN/Inf and mismatches; return the mask of finite pairs, or None if all are."""
        finite_r, finite_c = np.isfinite(r), np.isfinite(c)
        both = finite_r & finite_c
        if both.all():
            return None
        s = self.sums
        nan_r, nan_c = np.isnan(r), np.isnan(c)
        s.nan_reference += int(nan_r.sum())
        s.nan_candidate += int(nan_c.sum())
        s.inf_reference += int((~finite_r & ~nan_r).sum())
        s.inf_candidate += int((~finite_c & ~nan_c).sum())
        with np.errstate(invalid="ignore"):
            same = (nan_r & nan_c) | (r == c)
        s.nonfinite_mismatches += int((~both & ~same).sum())
        return both

    def _add_errors(self, r: np.ndarray, c: np.ndarray) -> None:
        s = self.sums
        if r.size == 0:
            return
        diff = c - r
        abs_err = np.abs(diff)
        abs_ref = np.abs(r)
        rel_err = abs_err / np.maximum(abs_ref, RELATIVE_ERROR_FLOOR)
        s.compared += r.size
        s.sum_abs += float(abs_err.sum())
        s.max_abs = max(s.max_abs, float(abs_err.max()))
        s.sum_rel += float(rel_err.sum())
        s.max_rel = max(s.max_rel, float(rel_err.max()))
        s.dot += float(r @ c)
        s.ref_sq += float(r @ r)
        s.cand_sq += float(c @ c)
        s.diff_sq += float(diff @ diff)
        self._add_tolerance(abs_err, abs_ref, rel_err)
        self.sketch.add(abs_err)

    def _add_tolerance(self, abs_err: np.ndarray, abs_ref: np.ndarray, rel_err: np.ndarray) -> None:
        """Track the element-wise atol/rtol check: violations and the combined-mode excess."""
        s, t = self.sums, self.thresholds
        if t.rtol is not None:
            excess = abs_err - t.rtol * abs_ref
            s.max_excess = max(s.max_excess, float(excess.max()))
            if t.atol is not None:
                s.violations += int((excess > t.atol).sum())
            else:
                s.violations += int((rel_err > t.rtol).sum())
        elif t.atol is not None:
            s.violations += int((abs_err > t.atol).sum())

    def _add_top1(self, ref: np.ndarray, cand: np.ndarray) -> None:
        classes = _score_axis_size(ref)
        if classes is None:
            return
        s = self.sums
        s.top1_applicable = True
        ref_top = ref.reshape(-1, classes).argmax(axis=1)
        cand_top = cand.reshape(-1, classes).argmax(axis=1)
        s.top1_rows += ref_top.size
        s.top1_agree += int((ref_top == cand_top).sum())

    def result(self) -> OutputParity:
        """Freeze into an :class:`OutputParity` with its failures under the thresholds."""
        if self.error is not None:
            return OutputParity(
                self.name,
                self.reference,
                self.candidate,
                self.batches,
                None,
                self.error,
                (f"{self.name}: {self.error}",),
            )
        metrics = self._metrics()
        floating = self.reference is not None and np.dtype(self.reference.dtype).kind == "f"
        failures = tuple(_metric_failures(self.name, metrics, self.thresholds, similarity=floating))
        return OutputParity(self.name, self.reference, self.candidate, self.batches, metrics, None, failures)

    def _metrics(self) -> ParityMetrics:
        s, t = self.sums, self.thresholds
        compared = max(s.compared, 1)
        top1 = s.top1_agree / s.top1_rows if s.top1_applicable and s.top1_rows else None
        needed_at_rtol = max(s.max_excess, 0.0) if t.rtol is not None else None
        return ParityMetrics(
            count=s.count,
            compared=s.compared,
            max_abs=s.max_abs,
            mean_abs=s.sum_abs / compared,
            p99_abs=self.sketch.p99(),
            p99_exact=self.sketch.exact,
            max_rel=s.max_rel,
            mean_rel=s.sum_rel / compared,
            cosine=_cosine(s.dot, s.ref_sq, s.cand_sq, s.diff_sq),
            snr_db=_snr_db(s.ref_sq, s.diff_sq),
            top1=top1,
            top1_rows=s.top1_rows,
            top1_agree=s.top1_agree,
            nan_reference=s.nan_reference,
            inf_reference=s.inf_reference,
            nan_candidate=s.nan_candidate,
            inf_candidate=s.inf_candidate,
            nonfinite_mismatches=s.nonfinite_mismatches,
            violations=s.violations if (t.atol is not None or t.rtol is not None) else None,
            needed_atol_at_rtol=needed_at_rtol,
        )


class ParityAccumulator:
    """Compare reference and candidate outputs batch by batch with memory independent of data size.

    The thresholds are given up front, not at :meth:`result`, because the combined
    ``atol + rtol·|ref|`` check is element-wise: it cannot be recovered from per-output maxima
    afterwards, so it has to be evaluated while the elements stream past.

    Example::

        acc = ParityAccumulator(ParityThresholds(atol=1e-4, min_cosine=0.999))
        for feed in feeds:
            acc.update(run_named(ref_session, feed), run_named(cand_session, feed))
        report = acc.result()
    """

    def __init__(
        self, thresholds: ParityThresholds | None = None, *, exact_quantile_limit: int = EXACT_QUANTILE_LIMIT
    ) -> None:
        """Start empty.

        Args:
            thresholds: Gates applied by :meth:`result`; None checks nothing (report only).
            exact_quantile_limit: Elements per output up to which p99 is exact.
        """
        self.thresholds = thresholds if thresholds is not None else ParityThresholds()
        self._exact_limit = exact_quantile_limit
        self._outputs: dict[str, _OutputAccumulator] = {}
        self._batches = 0

    def update(self, reference: Mapping[str, object], candidate: Mapping[str, object]) -> None:
        """Add one batch: the outputs of both models, by name, for the same feed.

        Outputs are matched by name; every reference output is compared, extra candidate outputs
        are ignored. Problems with one output (missing, shape or dtype mismatch) are recorded on
        that output as a failure, never raised.
        """
        self._batches += 1
        for name, ref in reference.items():
            acc = self._outputs.get(name)
            if acc is None:
                acc = _OutputAccumulator(name, self.thresholds, self._exact_limit, batches=self._batches - 1)
                self._outputs[name] = acc
            acc.update(ref, candidate.get(name))

    def result(self) -> ParityReport:
        """The report over every batch so far (the accumulator can keep going afterwards)."""
        outputs = tuple(acc.result() for acc in self._outputs.values())
        return ParityReport(outputs, self.thresholds, self._batches)


def compare(
    reference_runs: Iterable[Mapping[str, object]],
    candidate_runs: Iterable[Mapping[str, object]],
    thresholds: ParityThresholds | None = None,
) -> ParityReport:
    """Compare paired runs (one dict of outputs per batch from each model) in one call.

    Raises:
        ValueError: The two iterables have different lengths.
    """
    acc = ParityAccumulator(thresholds)
    candidates = iter(candidate_runs)
    for ref in reference_runs:
        cand = next(candidates, None)
        if cand is None:
            raise ValueError("reference and candidate runs differ in number of batches")
        acc.update(ref, cand)
    if next(candidates, None) is not None:
        raise ValueError("reference and candidate runs differ in number of batches")
    return acc.result()


def _as_numeric(value: object) -> np.ndarray | None:
    """The output as a numeric/bool array, or None for sequences, maps and strings."""
    if not isinstance(value, np.ndarray | np.generic):
        return None
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        return None
    return array


def _structural_problem(ref: np.ndarray | None, cand: np.ndarray | None, batch: int) -> str | None:
    if ref is None or cand is None:
        which = "reference" if ref is None else "candidate"
        return f"{which} output is not a numeric tensor; it cannot be compared"
    if ref.dtype != cand.dtype:
        return f"dtype mismatch: reference {ref.dtype} vs candidate {cand.dtype}"
    if ref.shape != cand.shape:
        return (
            f"shape mismatch in batch #{batch}: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}"
        )
    return None


def _score_axis_size(array: np.ndarray) -> int | None:
    """The number of classes when ``array`` holds score vectors, else None.

    Trailing axes of size 1 are ignored: classifiers converted from NCHW frameworks often output
    ``[N, 1000, 1, 1]``, whose scores are the 1000-wide axis.
    """
    shape = list(array.shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    if array.dtype.kind != "f" or len(shape) < 2 or shape[-1] <= 1 or array.size == 0:
        return None
    return shape[-1]


def _cosine(dot: float, ref_sq: float, cand_sq: float, diff_sq: float) -> float:
    """Cosine from the running sums; exactly 1.0 for identical outputs (no rounding surprise)."""
    if diff_sq == 0.0:
        return 1.0
    if ref_sq == 0.0 or cand_sq == 0.0:
        return 0.0
    norms = math.sqrt(ref_sq * cand_sq)
    if not math.isfinite(norms) or norms == 0.0:  # the product over/underflowed
        norms = math.sqrt(ref_sq) * math.sqrt(cand_sq)
    return min(1.0, max(-1.0, dot / norms))


def _snr_db(ref_sq: float, diff_sq: float) -> float:
    if diff_sq == 0.0:
        return math.inf
    if ref_sq == 0.0:
        return -math.inf
    return 10.0 * math.log10(ref_sq / diff_sq)


def _metric_failures(name: str, m: ParityMetrics, t: ParityThresholds, *, similarity: bool) -> list[str]:
    """Failing lines of one output; ``similarity`` applies the cosine and SNR gates (float outputs)."""
    lines = []
    if m.nonfinite_mismatches:
        lines.append(
            f"{name}: {m.nonfinite_mismatches} element(s) are NaN/Inf in one model only "
            f"(candidate: {m.nan_candidate} NaN, {m.inf_candidate} Inf; "
            f"reference: {m.nan_reference} NaN, {m.inf_reference} Inf)"
        )
    lines.extend(_tolerance_failures(name, m, t))
    if similarity and t.min_cosine is not None and m.cosine < t.min_cosine:
        lines.append(f"{name}: cosine {_pair(m.cosine, t.min_cosine)}")
    if similarity and t.min_snr_db is not None and m.snr_db < t.min_snr_db:
        value, limit = _fmt_pair(m.snr_db, t.min_snr_db)
        lines.append(f"{name}: SNR {value} dB < min {limit} dB")
    if t.min_top1 is not None and m.top1 is not None and m.top1 < t.min_top1:
        lines.append(
            f"{name}: top-1 agreement {_pair(m.top1, t.min_top1)} "
            f"({m.top1_agree} of {m.top1_rows} rows agree)"
        )
    return lines


def _tolerance_failures(name: str, m: ParityMetrics, t: ParityThresholds) -> list[str]:
    outside = f"{m.violations} of {m.compared} elements"
    if t.atol is not None and t.rtol is not None:
        assert m.needed_atol_at_rtol is not None
        if m.needed_atol_at_rtol > t.atol:
            return [
                f"{name}: {outside} outside atol {t.atol:g} + rtol {t.rtol:g}·|ref| "
                f"(passes with atol ≥ {_fmt(m.needed_atol_at_rtol)} at this rtol)"
            ]
    elif t.atol is not None and m.max_abs > t.atol:
        value, limit = _fmt_pair(m.max_abs, t.atol)
        return [f"{name}: max abs error {value} > atol {limit} ({outside})"]
    elif t.rtol is not None and m.max_rel > t.rtol:
        value, limit = _fmt_pair(m.max_rel, t.rtol)
        return [f"{name}: max rel error {value} > rtol {limit} ({outside})"]
    return []


def _pair(value: float, limit: float) -> str:
    shown, min_shown = _fmt_pair(value, limit)
    return f"{shown} < min {min_shown}"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _fmt_pair(value: float, limit: float) -> tuple[str, str]:
    """Format two different numbers with just enough digits that they print differently.

    A cosine of 0.99999994 against a minimum of 0.9999999 would otherwise read "1 < min 1".
    """
    for digits in range(4, 18):
        shown, limit_shown = f"{value:.{digits}g}", f"{limit:.{digits}g}"
        if shown != limit_shown:
            return shown, limit_shown
    return repr(value), repr(limit)


def _json_value(value: object) -> object:
    if isinstance(value, float):
        return json_float(value)
    return value

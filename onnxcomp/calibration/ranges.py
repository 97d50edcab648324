"""Choosing a quantization range from a tensor's statistics, and the scale/zero point that follow.

Every method works on the streamed histogram (never on kept samples), so they cost the same whatever
the number of calibration samples:

* ``minmax``: the observed extremes. Safe, but one outlier spends the whole grid on itself.
* ``percentile``: cut the given share of mass off each tail (default 99.99 %).
* ``entropy``: the clip range whose quantized distribution is closest, in KL divergence, to the
  observed one (outliers folded into the edge bins), searched over shrinking ranges.
* ``mse``: the clip range with the smallest expected squared quantize-dequantize error over the
  histogram (rounding error inside, clipping error outside).

A range always contains 0, so that zero (padding, ReLU's floor) is exactly representable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxcomp.calibration.stats import TensorStats

#: Shrink factors of the min/max range that entropy and mse try (1.0 = min/max itself).
_SEARCH_FACTORS = np.linspace(0.02, 1.0, 99)


class Method(enum.Enum):
    """How a tensor's range is chosen from its statistics."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"


@dataclass(frozen=True)
class QuantRange:
    """A clip range ``[low, high]`` (``low <= 0 <= high``) for a tensor."""

    low: float
    high: float


@dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of a tensor on an integer grid ``[qmin, qmax]``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int


def quant_params(rng: QuantRange, qmin: int, qmax: int, *, symmetric: bool = False) -> QuantParams:
    """Scale and zero point mapping ``rng`` onto ``[qmin, qmax]`` (0 maps exactly to an integer).

    Symmetric ranges put zero in the middle of the grid (what int8 weights and GPU int8 kernels want).
    """
    low, high = min(rng.low, 0.0), max(rng.high, 0.0)
    if symmetric:
        bound = max(abs(low), abs(high))
        low, high = -bound, bound
    span = high - low
    scale = span / (qmax - qmin) if span > 0 else 1.0
    scale = max(float(np.float32(scale)), float(np.finfo(np.float32).tiny))
    if symmetric:
        zero_point = (qmin + qmax + 1) // 2 if qmin >= 0 else 0
    else:
        zero_point = int(np.clip(round(qmin - low / scale), qmin, qmax))
    return QuantParams(scale, zero_point, qmin, qmax)


def _centers(stats: TensorStats) -> tuple[np.ndarray, np.ndarray]:
    """Centers and counts of the non-empty bins (the only ones any method needs)."""
    edges = stats.bin_edges()
    occupied = np.nonzero(stats.histogram)[0]
    centers = (edges[occupied] + edges[occupied + 1]) / 2
    return centers, stats.histogram[occupied].astype(np.float64)


def _minmax(stats: TensorStats, levels: int, option: float) -> QuantRange:
    del levels, option
    return QuantRange(min(stats.minimum or 0.0, 0.0), max(stats.maximum or 0.0, 0.0))


def _percentile(stats: TensorStats, levels: int, option: float) -> QuantRange:
    del levels
    edges = stats.bin_edges()
    cumulative = np.cumsum(stats.histogram)
    total = cumulative[-1]
    tail = total * (100.0 - option) / 100.0
    low_bin = int(np.searchsorted(cumulative, tail, side="right"))
    high_bin = int(np.searchsorted(cumulative, total - tail, side="left"))
    low = max(float(edges[low_bin]), stats.minimum or 0.0)
    high = min(float(edges[min(high_bin + 1, stats.bins)]), stats.maximum or 0.0)
    return QuantRange(min(low, 0.0), max(high, 0.0))


def _candidates(stats: TensorStats) -> list[QuantRange]:
    """Ranges clipped at a shrinking magnitude ``t``: ``[max(min, -t), min(max, t)]``.

    Clipping by magnitude rather than shrinking both ends in proportion means an outlier on one side
    does not drag the other side's range down with it.
    """
    full = _minmax(stats, 0, 0.0)
    bound = max(-full.low, full.high)
    return [QuantRange(max(full.low, -bound * f), min(full.high, bound * f)) for f in _SEARCH_FACTORS]


def _fake_quantize(values: np.ndarray, rng: QuantRange, levels: int) -> np.ndarray:
    params = quant_params(rng, 0, levels - 1)
    q = np.clip(np.round(values / params.scale) + params.zero_point, 0, levels - 1)
    return (q - params.zero_point) * params.scale


def _mse(stats: TensorStats, levels: int, option: float) -> QuantRange:
    del option
    centers, counts = _centers(stats)
    errors = [float(np.dot(counts, (centers - _fake_quantize(centers, rng, levels)) ** 2))
              for rng in _candidates(stats)]
    return _candidates(stats)[int(np.argmin(errors))]


def _kl_divergence(centers: np.ndarray, counts: np.ndarray, rng: QuantRange, levels: int) -> float:
    """KL(P || Q) of one candidate range, over every bin (empty ones too) of the histogram.

    P is the histogram inside the range with the clipped mass added to its two edge bins; Q is the
    in-range histogram alone, quantized to ``levels`` and spread evenly over each level's non-empty bins.
    Q does not get the clipped mass, so clipping a heavy tail costs divergence (an edge bin that is empty
    inside the range but holds clipped mass costs the most) and clipping nothing costs resolution.
    """
    inside = np.nonzero((centers >= rng.low) & (centers <= rng.high))[0]
    if inside.size == 0:
        return float("inf")
    first, last = inside[0], inside[-1]
    q_source = counts[first : last + 1]
    p = q_source.copy()
    p[0] += counts[:first].sum()
    p[-1] += counts[last + 1 :].sum()
    params = quant_params(rng, 0, levels - 1)
    level = np.clip(np.round(centers[first : last + 1] / params.scale) + params.zero_point, 0, levels - 1)
    level = level.astype(np.int64)
    mass = np.bincount(level, weights=q_source, minlength=levels)
    members = np.bincount(level, weights=(q_source > 0).astype(np.float64), minlength=levels)
    q = np.where(q_source > 0, mass[level] / np.maximum(members[level], 1), 0.0)
    p = p / p.sum()
    q = np.maximum(q / max(q.sum(), 1e-300), 1e-12)
    positive = p > 0
    return float(np.sum(p[positive] * np.log(p[positive] / q[positive])))


def _entropy(stats: TensorStats, levels: int, option: float) -> QuantRange:
    del option
    edges = stats.bin_edges()
    centers = (edges[:-1] + edges[1:]) / 2
    counts = stats.histogram.astype(np.float64)
    candidates = _candidates(stats)
    divergences = [_kl_divergence(centers, counts, rng, levels) for rng in candidates]
    return candidates[int(np.argmin(divergences))]


_SELECTORS: dict[Method, Callable[[TensorStats, int, float], QuantRange]] = {
    Method.MINMAX: _minmax,
    Method.PERCENTILE: _percentile,
    Method.ENTROPY: _entropy,
    Method.MSE: _mse,
}


def select_range(stats: TensorStats, method: Method | str, *, levels: int = 256,
                 percentile: float = 99.99) -> QuantRange:
    """The range ``method`` picks for a tensor with these statistics.

    Args:
        stats: Streamed statistics of the tensor (must have seen finite data).
        method: One of :class:`Method` (or its value).
        levels: Size of the integer grid (256 for 8 bits).
        percentile: For ``percentile``: the share of mass kept, in percent.

    Raises:
        ValueError: The statistics saw no finite data.
    """
    if stats.count == 0:
        raise ValueError(f"{stats.name}: {stats.problem}")
    chosen = _SELECTORS[Method(method)](stats, levels, percentile)
    if chosen.high - chosen.low <= 0:
        return _minmax(stats, levels, percentile)
    return chosen

"""Streaming statistics of one tensor: exact min/max and a histogram that merges without loss.

Why this shape:

* **Memory does not grow with the data.** Each tensor keeps a fixed-size integer histogram, a few
  scalars and (optionally) one float64 sum per channel; a batch is folded in and dropped.
* **The result does not depend on how the data is chunked.** The histogram lives on the symmetric
  range ``[-R, R)`` where ``R`` is the smallest power of two *strictly* greater than every ``|x|`` seen
  so far. A bin index is ``floor(x * bins / (2R)) + bins / 2``: multiplying by a power of two is exact
  in floating point, so the index is exact. When a later batch needs a larger ``R``, the range doubles
  and every pair of adjacent bins merges into one -- which is exactly where those values would have
  landed had ``R`` been large from the start. So the histogram equals the histogram of all the data
  on the final range, whatever the batch sizes were; min, max and counts are exact too.
* **Enough bins.** With ``bins`` = 4096 the occupied half of the range always spans at least 1024 bins,
  so entropy (KL) and percentile have something to choose between (with a coarse histogram they
  degenerate to min/max).

NaN and infinities are counted and kept out of the histogram; a tensor that saw no data, or only one
value, says so through :attr:`TensorStats.problem`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Default number of histogram bins (even; a power of two keeps every bin edge exact).
DEFAULT_BINS = 4096


@dataclass
class TensorStats:
    """Accumulated statistics of one tensor over every batch it was seen in.

    Attributes:
        name: The tensor's name in the model.
        bins: Number of histogram bins over ``[-range_limit, range_limit)``.
        count: Finite elements seen.
        nonfinite: NaN and +-inf elements seen (kept out of everything else).
        minimum, maximum: Exact extremes of the finite elements (None before any).
        exponent: ``R = 2**exponent`` is the histogram's half-range; None while only zeros were seen.
        histogram: Counts per bin (int64, fixed size).
        channel_axis: Axis whose per-channel means are accumulated (for bias correction), or None.
        channel_sums: float64 sums per channel along ``channel_axis``.
        channel_counts: Elements per channel summed.
    """

    name: str
    bins: int = DEFAULT_BINS
    count: int = 0
    nonfinite: int = 0
    minimum: float | None = None
    maximum: float | None = None
    exponent: int | None = None
    histogram: np.ndarray = field(default=None)  # type: ignore[assignment]
    channel_axis: int | None = None
    channel_sums: np.ndarray | None = None
    channel_counts: int = 0

    def __post_init__(self) -> None:
        if self.bins < 4 or self.bins % 4:
            raise ValueError(f"bins must be a multiple of 4 and at least 4, got {self.bins}")
        if self.histogram is None:
            self.histogram = np.zeros(self.bins, dtype=np.int64)

    # -- accumulation -----------------------------------------------------------------------------------

    def update(self, array: np.ndarray) -> None:
        """Fold one batch of values in (any shape; the array is not kept)."""
        values = np.asarray(array, dtype=np.float64).reshape(-1)
        finite = values[np.isfinite(values)]
        self.nonfinite += values.size - finite.size
        if finite.size == 0:
            return
        self.count += finite.size
        low, high = float(finite.min()), float(finite.max())
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)
        self._grow(max(abs(low), abs(high)))
        self._add_to_histogram(finite)
        if self.channel_axis is not None:
            self._add_channels(np.asarray(array, dtype=np.float64))

    def _grow(self, magnitude: float) -> None:
        """Double the range until ``|x| < R`` holds for ``magnitude``, merging bin pairs each time."""
        if magnitude == 0.0:
            return
        _, needed = math.frexp(magnitude)  # magnitude < 2**needed, the smallest such power
        if self.exponent is None:
            self.exponent = needed
            return
        while self.exponent < needed:
            merged = self.histogram.reshape(-1, 2).sum(axis=1)
            quarter = self.bins // 4
            self.histogram = np.zeros(self.bins, dtype=np.int64)
            self.histogram[quarter : quarter + merged.size] = merged
            self.exponent += 1

    def _add_to_histogram(self, finite: np.ndarray) -> None:
        exponent = self.exponent if self.exponent is not None else 0  # only zeros: any range puts them mid
        scale = math.ldexp(self.bins / 2, -exponent)  # bins / (2R), a power of two times bins/2
        index = np.floor(finite * scale).astype(np.int64) + self.bins // 2
        np.clip(index, 0, self.bins - 1, out=index)
        self.histogram += np.bincount(index, minlength=self.bins)

    def _add_channels(self, array: np.ndarray) -> None:
        axis = self.channel_axis if self.channel_axis >= 0 else array.ndim + self.channel_axis  # type: ignore[operator]
        if array.ndim <= axis or not np.isfinite(array).all():
            return
        sums = array.sum(axis=tuple(a for a in range(array.ndim) if a != axis))
        if self.channel_sums is None:
            self.channel_sums = np.zeros_like(sums)
        if self.channel_sums.shape != sums.shape:
            return  # channel count changed between batches: means are undefined, bias correction skips it
        self.channel_sums += sums
        self.channel_counts += array.size // max(array.shape[axis], 1)

    # -- reading --------------------------------------------------------------------------------------

    @property
    def range_limit(self) -> float:
        """``R``: the histogram covers ``[-R, R)``."""
        return math.ldexp(1.0, self.exponent if self.exponent is not None else 0)

    def bin_edges(self) -> np.ndarray:
        """The ``bins + 1`` edges of the histogram."""
        limit = self.range_limit
        return np.linspace(-limit, limit, self.bins + 1)

    @property
    def problem(self) -> str | None:
        """Why these statistics cannot give a quantization range, or None when they can."""
        if self.count == 0 and self.nonfinite == 0:
            return "no data reached this tensor during calibration"
        if self.count == 0:
            return f"only NaN/inf values ({self.nonfinite}) during calibration"
        if self.nonfinite:
            return f"{self.nonfinite} NaN/inf values during calibration"
        if self.minimum == self.maximum:
            return f"constant tensor (always {self.minimum:g}) during calibration"
        return None

    def channel_means(self) -> np.ndarray | None:
        """Mean per channel along ``channel_axis``; None when it was not tracked or saw nothing."""
        if self.channel_sums is None or self.channel_counts == 0:
            return None
        return self.channel_sums / self.channel_counts

    @property
    def state_nbytes(self) -> int:
        """Bytes of accumulated state: constant in the number of samples (the streaming guarantee)."""
        extra = 0 if self.channel_sums is None else self.channel_sums.nbytes
        return int(self.histogram.nbytes) + extra

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe summary (the histogram itself is left out)."""
        return {
            "name": self.name,
            "count": self.count,
            "nonfinite": self.nonfinite,
            "min": self.minimum,
            "max": self.maximum,
            "histogram_range": self.range_limit,
            "problem": self.problem,
        }

"""Weight clustering (weight sharing): at most 2^bits distinct values per tensor or per output channel.

The second step of Deep Compression (Han, Mao and Dally, ICLR 2016): replace each weight by the centroid of
its 1-D k-means cluster, so a tensor holds a small codebook plus indices that packing stores in ``bits``
bits each. The model stays an ordinary float ONNX file (same dtypes and shapes); only the values change.

Decisions:

* **Zeros stay exact zeros** and are never a centroid a non-zero weight can fall into: pruning's work is
  kept, and a pruned tensor stays exactly as sparse.
* **Zero counts against the budget.** A group (tensor or channel) that contains zeros gets 2^bits - 1
  non-zero centroids, so zero plus the centroids is at most 2^bits symbols: the index really fits in
  ``bits`` bits when packed. A group without zeros gets 2^bits centroids.
* **Initialisation per sign half.** Negative and positive weights are clustered separately, with
  centroids shared out in proportion to their counts and spaced linearly between each half's min and max.
  Linear initialisation keeps centroids on the rare large weights (the ones that matter most; Han et al.
  found it beats random and density-based init), and splitting by sign means no centroid is wasted in the
  empty gap that pruning leaves around zero, and no centroid can land on zero.
* **Deterministic** without a seed: the initialisation has no randomness and Lloyd iterations run to a
  fixed point (or ``max_iter``), so two runs give byte-identical models.
* **Vectorised**: every group's halves are one flat sorted array; a cluster is a contiguous run of it, so
  an iteration is one ``searchsorted`` over the centroid midpoints and one prefix-sum lookup, O(n log k),
  with no Python loop over weights, groups or centroids.

Limits of the value set, the binary networks the literature arrives at:

* ``bits=1``: binarization, ``sign(w) * a`` with ``a`` the mean ``|w|`` of each output channel's non-zero
  weights (the scale that minimises the L2 error, as in XNOR-Net, Rastegari et al. 2016). Pruned zeros
  stay zero, so a pruned channel has {-a, 0, +a}.
* ``bits=2, ternary=True``: {-a, 0, +a} per output channel with threshold ``0.7 * mean|w|`` and ``a`` the
  mean ``|w|`` above it (the rule of Ternary Weight Networks, Li and Liu 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxcomp.errors import InputError
from onnxcomp.pass_base import CompressionPass, PassContext, PassOutcome, Skipped
from onnxcomp.weight_roles import Candidate, MatrixView, compile_patterns, select_weights
from onnxcomp.weights import WeightRef, iter_weights

__all__ = ["ClusterConfig", "ClusterPass", "cluster_rows", "method_for"]

MAX_BITS = 16
_CONV_OPS = frozenset({"Conv", "ConvTranspose"})


@dataclass
class ClusterConfig:
    """Options of the clustering pass.

    Attributes:
        bits: At most 2^bits distinct values per group, zero included when the group has zeros (1..16).
            ``1`` is binarization.
        per_channel: One codebook per output channel instead of per tensor (binarization and ternary are
            always per channel).
        ternary: With ``bits=2``: {-a, 0, +a} per channel instead of k-means.
        conv_bits: Budget for Conv/ConvTranspose weights when it should differ from ``bits`` (Deep
            Compression used 8 bits for conv layers and 5 for fully connected ones); ``None``: ``bits``.
        exclude: Regexes; an eligible weight whose name or consumer node name matches one is left alone.
        min_size: Tensors with fewer elements are left alone.
        max_iter: Upper bound on Lloyd iterations (they usually stop earlier, at a fixed point).
        bias_bits: Also cluster the biases of Gemm/Conv/ConvTranspose (input 2) per tensor to this many bits
            (``None``: biases are left alone). Biases are few but stored as floats they cost ~4 bytes each,
            which on a pruned, clustered small network is a large share of the packed file (LeNet-300-100:
            1.4 KB of 4.3 KB); a distillation afterwards (centroids trained) wins back what this costs.
    """

    bits: int = 5
    per_channel: bool = False
    ternary: bool = False
    conv_bits: int | None = None
    exclude: tuple[str, ...] = ()
    min_size: int = 128
    max_iter: int = 100
    bias_bits: int | None = None

    def __post_init__(self) -> None:
        self.exclude = tuple(self.exclude)
        if self.bias_bits is not None and not 1 < self.bias_bits <= MAX_BITS:
            raise InputError(f"bias bits must be between 2 and {MAX_BITS}, got {self.bias_bits}")
        if not 1 <= self.bits <= MAX_BITS:
            raise InputError(f"bits must be between 1 and {MAX_BITS}, got {self.bits}")
        if self.conv_bits is not None and not 1 <= self.conv_bits <= MAX_BITS:
            raise InputError(f"conv bits must be between 1 and {MAX_BITS}, got {self.conv_bits}")
        if self.ternary and 2 not in (self.bits, self.conv_bits):
            raise InputError(f"ternary needs bits=2 (three values: -a, 0, +a), got bits={self.bits}")
        if self.min_size < 0:
            raise InputError(f"min_size must be >= 0, got {self.min_size}")
        if self.max_iter < 1:
            raise InputError(f"max_iter must be >= 1, got {self.max_iter}")
        compile_patterns(self.exclude)

    @property
    def method(self) -> str:
        return method_for(self.bits, self.ternary)


def method_for(bits: int, ternary: bool) -> str:
    """``'binary'`` for 1 bit, ``'ternary'`` for 2 bits when asked, else ``'kmeans'``."""
    if bits == 1:
        return "binary"
    return "ternary" if ternary and bits == 2 else "kmeans"


# -- 1-D k-means over many groups at once ----------------------------------------------------------------------


@dataclass
class _Segments:
    """Non-zero values of all groups, split by sign: one sorted, contiguous run per (group, sign) segment."""

    values: np.ndarray  # float64, sorted within each segment, segments in order
    origin: np.ndarray  # flat index of each value in the [groups, length] matrix
    starts: np.ndarray  # [S] first position of each segment
    counts: np.ndarray  # [S] values per segment


def _segments(rows: np.ndarray) -> _Segments:
    """Sort each row; its negatives then its positives become two segments (zeros are dropped)."""
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    keep = ordered != 0
    origin = (order + np.arange(rows.shape[0])[:, None] * rows.shape[1])[keep]
    values = ordered[keep]
    segment = 2 * np.repeat(np.arange(rows.shape[0]), keep.sum(axis=1)) + (values > 0)
    counts = np.bincount(segment, minlength=2 * rows.shape[0])
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return _Segments(values, origin, starts, counts)


def _distinct(seg: _Segments) -> np.ndarray:
    """Distinct values per segment (values are sorted within a segment)."""
    first = np.ones(seg.values.size, dtype=np.int64)
    first[1:] = seg.values[1:] != seg.values[:-1]
    first[seg.starts[seg.counts > 0]] = 1
    totals = np.concatenate(([0], np.cumsum(first)))
    return totals[seg.starts + seg.counts] - totals[seg.starts]


def _budgets(seg: _Segments, has_zero: np.ndarray, bits: int) -> np.ndarray:
    """Centroids per segment: the group's budget shared between its halves in proportion to their counts."""
    total = (1 << bits) - has_zero.astype(np.int64)  # zero is one of the 2^bits symbols when present
    neg, pos = seg.counts[0::2], seg.counts[1::2]
    both = (neg > 0) & (pos > 0)
    share = np.rint(total * neg / np.maximum(neg + pos, 1)).astype(np.int64)
    k_neg = np.where(both, np.clip(share, 1, total - 1), np.where(neg > 0, total, 0))
    k_pos = np.where(pos > 0, total - k_neg, 0)
    budgets = np.empty(seg.counts.size, dtype=np.int64)
    budgets[0::2], budgets[1::2] = k_neg, k_pos
    return np.minimum(budgets, _distinct(seg))


def _linear_init(seg: _Segments, budgets: np.ndarray) -> np.ndarray:
    """``[S, K]`` centroids spaced linearly from each segment's min to max; unused slots are +inf."""
    width = max(int(budgets.max(initial=0)), 1)
    nonempty = seg.counts > 0
    lo = np.where(nonempty, seg.values[np.minimum(seg.starts, seg.values.size - 1)], 0.0)
    hi = np.where(nonempty, seg.values[np.minimum(seg.starts + seg.counts - 1, seg.values.size - 1)], 0.0)
    slot = np.arange(width)[None, :]
    step = (hi - lo)[:, None] / np.maximum(budgets - 1, 1)[:, None]
    centroids = lo[:, None] + step * slot
    single = budgets == 1
    centroids[single, 0] = (lo[single] + hi[single]) / 2
    return np.where(slot < budgets[:, None], centroids, np.inf)


def _segment_keys(seg: _Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values mapped into disjoint bands ``[4s, 4s+1]`` so one ``searchsorted`` serves every segment."""
    owner = np.repeat(np.arange(seg.counts.size), seg.counts)
    lo = np.zeros(seg.counts.size)
    span = np.ones(seg.counts.size)
    nonempty = seg.counts > 0
    lo[nonempty] = seg.values[seg.starts[nonempty]]
    span[nonempty] = np.maximum(seg.values[seg.starts[nonempty] + seg.counts[nonempty] - 1] - lo[nonempty], 1e-300)
    keys = 4.0 * owner + (seg.values - lo[owner]) / span[owner]
    return keys, lo, span


def _lloyd(seg: _Segments, centroids: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations on sorted 1-D data; returns centroids ``[S, K]`` and cluster sizes ``[S, K]``."""
    keys, lo, span = _segment_keys(seg)
    prefix = np.concatenate(([0.0], np.cumsum(seg.values)))
    band = 4.0 * np.arange(seg.counts.size)[:, None]
    ends = (seg.starts + seg.counts)[:, None]
    previous = None
    sizes = np.zeros(centroids.shape, dtype=np.int64)
    for _ in range(max_iter):
        centroids = np.sort(centroids, axis=1)
        middle = (centroids[:, :-1] + centroids[:, 1:]) / 2
        relative = np.clip((middle - lo[:, None]) / span[:, None], -0.5, 1.5)
        cuts = np.searchsorted(keys, band + np.nan_to_num(relative, nan=1.5, posinf=1.5)).reshape(middle.shape)
        bounds = np.concatenate((seg.starts[:, None], cuts, ends), axis=1)
        sizes = np.diff(bounds, axis=1)
        sums = prefix[bounds[:, 1:]] - prefix[bounds[:, :-1]]
        centroids = np.where(sizes > 0, sums / np.maximum(sizes, 1), centroids)
        if previous is not None and np.array_equal(bounds, previous):
            break
        previous = bounds
    return centroids, sizes


def _kmeans_rows(rows: np.ndarray, bits: int, max_iter: int) -> np.ndarray:
    """Cluster each row's non-zeros to its budget; rows already within budget are returned unchanged."""
    seg = _segments(rows)
    if seg.values.size == 0:
        return rows.copy()
    has_zero = (rows == 0).any(axis=1)
    budgets = _budgets(seg, has_zero, bits)
    centroids, sizes = _lloyd(seg, _linear_init(seg, budgets), max_iter)
    quantized = rows.reshape(-1).copy()
    quantized[seg.origin] = np.repeat(centroids.reshape(-1), sizes.reshape(-1))
    quantized = quantized.reshape(rows.shape)
    distinct = _distinct(seg)
    within = distinct[0::2] + distinct[1::2] <= (1 << bits) - has_zero
    quantized[within] = rows[within]
    return quantized


def _mean_abs_nonzero(rows: np.ndarray) -> np.ndarray:
    magnitude = np.abs(rows)
    count = np.count_nonzero(rows, axis=1)
    return magnitude.sum(axis=1) / np.maximum(count, 1)


def _binary_rows(rows: np.ndarray) -> np.ndarray:
    return np.sign(rows) * _mean_abs_nonzero(rows)[:, None]


def _ternary_rows(rows: np.ndarray) -> np.ndarray:
    magnitude = np.abs(rows)
    keep = magnitude > 0.7 * _mean_abs_nonzero(rows)[:, None]
    alpha = (magnitude * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
    return np.sign(rows) * keep * alpha[:, None]


def cluster_rows(rows: np.ndarray, bits: int, *, ternary: bool = False, max_iter: int = 100) -> np.ndarray:
    """Quantize each row of a 2-D float array to its own small value set (the pass's core, exposed for reuse).

    Args:
        rows: ``[groups, length]`` values; each row is one codebook's group.
        bits: Budget as in :class:`ClusterConfig` (``1`` binarizes).
        ternary: With ``bits=2``, ternary {-a, 0, +a} per row (ignored for other budgets).
        max_iter: Upper bound on Lloyd iterations.

    Returns:
        float64 array of the same shape; zeros of ``rows`` are exact zeros in it.
    """
    rows = np.asarray(rows, dtype=np.float64)
    method = method_for(bits, ternary)
    if method == "binary":
        return _binary_rows(rows)
    if method == "ternary":
        return _ternary_rows(rows)
    return _kmeans_rows(rows, bits, max_iter)


# -- the pass --------------------------------------------------------------------------------------------------


def _to_dtype(quantized: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Cast back to the stored dtype, never letting a non-zero centroid round to zero (float16 underflow)."""
    cast = quantized.astype(original.dtype)
    underflow = (cast == 0) & (quantized != 0)
    if underflow.any():
        tiny = np.array(np.finfo(original.dtype).smallest_subnormal, dtype=original.dtype)
        cast[underflow] = np.copysign(tiny, quantized[underflow]).astype(original.dtype)
    return cast


_BIAS_OPS = frozenset({"Gemm", "Conv", "ConvTranspose"})


def _biases(model: ir.Model, exclude: tuple[str, ...]) -> list[WeightRef]:
    """Float initializers read only as input 2 (the bias) of Gemm/Conv/ConvTranspose, minus excluded names."""
    patterns = compile_patterns(exclude)
    found = []
    for ref in iter_weights(model):
        uses = ref.consumers(through_identity=True)
        is_bias = bool(uses) and all(node.op_type in _BIAS_OPS and index == 2 for node, index in uses)
        if is_bias and ref.numpy().dtype.kind == "f" and not any(p.search(ref.name) for p in patterns):
            found.append(ref)
    return found


def _distinct_per_group(rows: np.ndarray) -> int:
    """The largest count of distinct non-zero values in any row."""
    ordered = np.sort(rows, axis=1)
    change = np.ones(ordered.shape, dtype=bool)
    change[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    return int(((change & (ordered != 0)).sum(axis=1)).max(initial=0))


class ClusterPass(CompressionPass):
    """Share weights: k-means per tensor or output channel, binarization, or ternary (see the module docs)."""

    name = "cluster"
    Config = ClusterConfig

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        del context
        config: ClusterConfig = self.config
        selection = select_weights(model, min_size=config.min_size, exclude=config.exclude)
        results = [self._cluster(candidate) for candidate in selection.candidates]
        if config.bias_bits is not None:
            results += [self._cluster_bias(ref, config.bias_bits) for ref in _biases(model, config.exclude)]
        changed = [entry for entry, _, _ in results]
        squared_error = sum(error for _, error, _ in results)
        squared_norm = sum(norm for _, _, norm in results)
        skipped = [Skipped(ref.name, reason) for ref, reason in selection.left_alone]
        total = sum(entry["size"] for entry in changed)
        return PassOutcome(
            modified=any(entry["modified"] for entry in changed),
            changed=changed,
            skipped=skipped,
            summary={
                "method": config.method,
                "bits": config.bits,
                "conv_bits": config.conv_bits if config.conv_bits is not None else config.bits,
                "tensors_clustered": len(changed),
                "tensors_left_alone": len(skipped),
                "clustered_params": total,
                "max_distinct_per_group": max((entry["distinct_per_group"] for entry in changed), default=0),
                "relative_error": float(np.sqrt(squared_error / squared_norm)) if squared_norm > 0 else 0.0,
                "warnings": list(selection.warnings),
            },
        )

    def _bits(self, candidate: Candidate) -> int:
        config: ClusterConfig = self.config
        is_conv = any(op in _CONV_OPS for op in candidate.eligibility.ops)
        return config.conv_bits if is_conv and config.conv_bits is not None else config.bits

    def _view(self, candidate: Candidate, bits: int) -> tuple[MatrixView | None, str]:
        config: ClusterConfig = self.config
        view = candidate.eligibility.view
        wants_channels = config.per_channel or method_for(bits, config.ternary) != "kmeans"
        if not wants_channels:
            return None, "tensor"
        if view is None:
            return None, "tensor (consumers disagree on the layout, so there are no channels)"
        return view, "channel"

    def _cluster_bias(self, ref: WeightRef, bits: int) -> tuple[dict[str, Any], float, float]:
        """Cluster one bias per tensor (k-means; zeros stay zeros), reported like a weight."""
        original = ref.numpy()
        wide = original.astype(np.float64)
        stored = _to_dtype(cluster_rows(wide.reshape(1, -1), bits, max_iter=self.config.max_iter).reshape(
            ref.shape), original)
        modified = not np.array_equal(stored, original)
        if modified:
            ref.replace(stored)
        error = stored.astype(np.float64) - wide
        entry = {"name": ref.name, "location": "bias", "ops": "", "shape": list(ref.shape), "size": ref.size,
                 "granularity": "tensor", "groups": 1, "bits": bits, "method": "kmeans",
                 "distinct_values": int(np.unique(stored).size),
                 "distinct_per_group": _distinct_per_group(stored.astype(np.float64).reshape(1, -1)),
                 "has_zeros": bool((stored == 0).any()), "mse": float(np.mean(error**2)),
                 "relative_error": float(np.linalg.norm(error) / max(np.linalg.norm(wide), 1e-300)),
                 "modified": modified}
        return entry, float(np.sum(error**2)), float(np.sum(wide**2))

    def _cluster(self, candidate: Candidate) -> tuple[dict[str, Any], float, float]:
        """Cluster one tensor; returns its report entry, squared error and squared norm."""
        config: ClusterConfig = self.config
        ref = candidate.ref
        original = ref.numpy()
        bits = self._bits(candidate)
        view, granularity = self._view(candidate, bits)
        wide = original.astype(np.float64)
        rows = view.to_rows(wide) if view is not None else wide.reshape(1, -1)
        quantized_rows = cluster_rows(rows, bits, ternary=config.ternary, max_iter=config.max_iter)
        quantized = view.from_rows(quantized_rows, ref.shape) if view is not None else quantized_rows.reshape(
            ref.shape)
        stored = _to_dtype(quantized, original)
        modified = not np.array_equal(stored, original)
        if modified:
            ref.replace(stored)
        final = stored.astype(np.float64)
        final_rows = view.to_rows(final) if view is not None else final.reshape(1, -1)
        error = final - wide
        entry = {
            "name": ref.name,
            "location": candidate.location,
            "ops": ",".join(dict.fromkeys(candidate.eligibility.ops)),
            "shape": list(ref.shape),
            "size": ref.size,
            "granularity": granularity,
            "groups": int(final_rows.shape[0]),
            "bits": bits,
            "method": method_for(bits, config.ternary),
            "distinct_values": int(np.unique(stored).size),
            "distinct_per_group": _distinct_per_group(final_rows),
            "has_zeros": bool((stored == 0).any()),
            "mse": float(np.mean(error**2)),
            "relative_error": float(np.linalg.norm(error) / max(np.linalg.norm(wide), 1e-300)),
            "modified": modified,
        }
        return entry, float(np.sum(error**2)), float(np.sum(wide**2))


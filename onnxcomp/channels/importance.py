"""How much each removable channel (union-find class) matters, by one of four criteria.

* ``l1`` / ``l2``: the norm of every filter that produces the channel, summed across the group (a residual
  channel is produced by several convolutions; all of them count). Under a BatchNorm the norm is taken on the
  *effective* filter ``W * |gamma| / sigma`` (a BN rescales every channel, so raw norms rank channels by an
  arbitrary pre-BN scale), and each layer's norms are divided by their mean before summing, so that in a
  residual group a large layer does not outvote the others;
* ``bn``: BatchNorm ``|gamma|`` at every BN the channel passes (network slimming): the output's standard
  deviation. Channels that meet no BN fall back to their (effective, normalised) L2 norm;
* ``activation``: mean ``|x - E[x]|`` where the next layers read the channel, measured with onnxruntime on
  calibration data. With data the removed channel's mean is folded into the next layer's bias
  (:mod:`onnxcomp.channels.compensate`), so what is lost is the deviation from the mean, not the magnitude.

Scores are compared only within a group (each group loses its own share of channels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.channels.graph import UNTRACKED, Analysis
from onnxcomp.channels.shapes import forget_shapes
from onnxcomp.data import DataSource

CRITERIA = ("l1", "l2", "bn", "activation")


@dataclass
class ChannelStats:
    """Per-position statistics of one sink input over the calibration data (positions along its track)."""

    mean: np.ndarray
    mean_abs_deviation: np.ndarray


def _add(scores: dict[int, float], analysis: Analysis, slots: np.ndarray, values: np.ndarray) -> None:
    for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
        if slot != UNTRACKED:
            root = analysis.root(slot)
            scores[root] = scores.get(root, 0.0) + float(value)


def _normalised(values: np.ndarray) -> np.ndarray:
    mean = float(values.mean()) if values.size else 0.0
    return values / mean if mean > 0 else values


def filter_norms(analysis: Analysis, order: int) -> dict[int, float]:
    """Per class: sum over its sources of the effective filter's L1/L2 norm, normalised per layer."""
    scores: dict[int, float] = {}
    for source in analysis.sources:
        flat = np.abs(source.filters.reshape(len(source.filters), -1).astype(np.float64))
        norms = flat.sum(axis=1) if order == 1 else np.sqrt((flat**2).sum(axis=1))
        factor = analysis.filter_scales.get(source.node)
        if factor is not None and factor.shape == norms.shape:
            norms = norms * factor
        _add(scores, analysis, source.elements, _normalised(norms))
    return scores


def bn_scales(analysis: Analysis) -> dict[int, float]:
    """Per class: sum of ``|gamma|`` (each BN normalised by its mean) over the BNs it passes."""
    scores: dict[int, float] = {}
    for slots, gamma in analysis.bn_scales:
        _add(scores, analysis, slots, _normalised(gamma))
    fallback = filter_norms(analysis, 2)
    return {root: scores.get(root, fallback[root]) for root in fallback}


def channel_stats(model: ir.Model, analysis: Analysis, data: DataSource,
                  session_factory: Callable[[ir.Model], object]) -> dict[str, ChannelStats]:
    """Mean and mean absolute deviation per position of every sink input, by name, over the calibration data.

    The sink inputs (what Conv/Gemm/MatMul read) become extra outputs of a copy of the model; two sweeps
    over the data (means first, then deviations from them) keep memory at one batch.
    """
    read = list(dict.fromkeys(value for _, value in analysis.sinks if value.name))
    probe = ir.serde.deserialize_model(onnx.load_from_string(io.serialize(model)))
    forget_shapes(probe)  # observed shapes hold for the probes they were seen on, not for the calibration data
    names = {value.name for value in read}
    by_name = {v.name: v for node in probe.graph for v in node.outputs if v.name in names}
    by_name.update({v.name: v for v in probe.graph.inputs if v.name in names})
    existing = {v.name for v in probe.graph.outputs}
    probe.graph.outputs.extend(v for name, v in by_name.items() if name not in existing)
    axes = {v.name: analysis.tracks[v].axis for v in read if v.name in by_name}
    if not axes:  # every layer sits in a subgraph (If/Loop bodies): no main-graph tensor to observe
        return {}
    session = session_factory(probe)
    wanted = list(axes)
    means = _sweep(session, data, wanted, axes, None)
    deviations = _sweep(session, data, wanted, axes, means)
    return {name: ChannelStats(means[name], deviations[name]) for name in wanted}


def _sweep(session, data: DataSource, wanted: list[str], axes: dict[str, int],
           centre: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feed in data.feeds():
        for name, array in zip(wanted, session.run(wanted, feed), strict=True):
            moved = np.moveaxis(np.asarray(array, dtype=np.float64), axes[name], 0)
            flat = moved.reshape(moved.shape[0], -1)
            if centre is not None:
                flat = np.abs(flat - centre[name][:, None])
            sums[name] = sums.get(name, 0.0) + flat.sum(axis=1)
            counts[name] = counts.get(name, 0) + flat.shape[1]
    return {name: sums[name] / max(counts[name], 1) for name in sums}


def activation_scores(analysis: Analysis, stats: dict[str, ChannelStats]) -> dict[int, float]:
    """Per class: mean ``|x - E[x]|`` at every place a layer reads it (what bias folding cannot restore)."""
    scores: dict[int, float] = {}
    seen: set[str] = set()
    for _, value in analysis.sinks:
        if value.name in stats and value.name not in seen:
            seen.add(value.name)
            _add(scores, analysis, analysis.tracks[value].slots, _normalised(stats[value.name].mean_abs_deviation))
    fallback = filter_norms(analysis, 2)
    return {root: scores.get(root, 0.0) if scores else fallback[root] for root in fallback}


def scores_for(criterion: str, analysis: Analysis, stats: dict[str, ChannelStats] | None = None) -> dict[int, float]:
    """Importance per union-find root; higher means keep. ``activation`` needs ``stats``."""
    if criterion == "l1":
        return filter_norms(analysis, 1)
    if criterion == "l2":
        return filter_norms(analysis, 2)
    if criterion == "bn":
        return bn_scales(analysis)
    if criterion == "activation":
        assert stats is not None, "the activation criterion needs calibration statistics"
        return activation_scores(analysis, stats)
    raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")

"""How much each removable channel (union-find class) matters, by one of four criteria.

* ``l1`` / ``l2``: the norm of every filter that produces the channel, summed across the group (a residual
  channel is produced by several convolutions; all of them count);
* ``bn``: BatchNorm ``|gamma|`` at every BN the channel passes (network slimming); channels that meet no
  BN fall back to their L2 norm;
* ``activation``: mean ``|activation|`` where the next layers read the channel, measured with onnxruntime
  on calibration data (the sink inputs become extra outputs of a copy of the model).

Scores are compared only within a group (each group loses its own share of channels), so no
normalisation across layers is needed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.channels.graph import UNTRACKED, Analysis
from onnxcomp.data import DataSource

CRITERIA = ("l1", "l2", "bn", "activation")


def _add(scores: dict[int, float], analysis: Analysis, slots: np.ndarray, values: np.ndarray) -> None:
    for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
        if slot != UNTRACKED:
            root = analysis.root(slot)
            scores[root] = scores.get(root, 0.0) + float(value)


def filter_norms(analysis: Analysis, order: int) -> dict[int, float]:
    """Sum over the group's sources of each channel's filter norm (L1 or L2)."""
    scores: dict[int, float] = {}
    for source in analysis.sources:
        flat = np.abs(source.filters.reshape(len(source.filters), -1).astype(np.float64))
        norms = flat.sum(axis=1) if order == 1 else np.sqrt((flat**2).sum(axis=1))
        _add(scores, analysis, source.elements, norms)
    return scores


def bn_scales(analysis: Analysis) -> dict[int, float]:
    scores: dict[int, float] = {}
    for slots, gamma in analysis.bn_scales:
        _add(scores, analysis, slots, gamma)
    fallback = filter_norms(analysis, 2)
    return {root: scores.get(root, fallback[root]) for root in fallback}


def mean_activations(model: ir.Model, analysis: Analysis, data: DataSource, session_factory) -> dict[int, float]:
    """Mean |activation| per channel at the tensors the next layers read, over the calibration data."""
    read = list(dict.fromkeys(value for _, value in analysis.sinks if value.name))
    probe = ir.serde.deserialize_model(onnx.load_from_string(io.serialize(model)))
    names = {value.name for value in read}
    by_name = {v.name: v for node in probe.graph for v in node.outputs if v.name in names}
    by_name.update({v.name: v for v in probe.graph.inputs if v.name in names})
    existing = {v.name for v in probe.graph.outputs}
    probe.graph.outputs.extend(v for name, v in by_name.items() if name not in existing)
    session = session_factory(probe)
    wanted = [v.name for v in read if v.name in by_name]
    sums: dict[str, np.ndarray] = {}
    count = 0
    for feed in data.feeds():
        outputs = session.run(wanted, feed)
        count += 1
        for name, array in zip(wanted, outputs, strict=True):
            per_channel = _channel_means(np.abs(array), analysis.tracks[_value(read, name)].axis)
            sums[name] = sums.get(name, 0.0) + per_channel
    scores: dict[int, float] = {}
    for value in read:
        if value.name in sums:
            _add(scores, analysis, analysis.tracks[value].slots, sums[value.name] / max(count, 1))
    fallback = filter_norms(analysis, 2)
    return {root: scores.get(root, 0.0) if scores else fallback[root] for root in fallback}


def _value(values: Iterable[ir.Value], name: str) -> ir.Value:
    return next(v for v in values if v.name == name)


def _channel_means(array: np.ndarray, axis: int) -> np.ndarray:
    moved = np.moveaxis(array.astype(np.float64), axis, 0)
    return moved.reshape(moved.shape[0], -1).mean(axis=1)


def scores_for(criterion: str, analysis: Analysis, model: ir.Model | None = None, data: DataSource | None = None,
               session_factory=None) -> dict[int, float]:
    """Importance per union-find root; higher means keep."""
    if criterion == "l1":
        return filter_norms(analysis, 1)
    if criterion == "l2":
        return filter_norms(analysis, 2)
    if criterion == "bn":
        return bn_scales(analysis)
    if criterion == "activation":
        assert model is not None and data is not None and session_factory is not None
        return mean_activations(model, analysis, data, session_factory)
    raise ValueError(f"unknown criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")


def zero_defaults(scores: dict[int, float]) -> defaultdict[int, float]:
    return defaultdict(float, scores)

"""Run the model over calibration data and stream the statistics of chosen intermediate tensors.

A copy of the model gets the wanted tensors as extra graph outputs and runs in onnxruntime one batch
at a time; each batch's values are folded into :class:`TensorStats` and dropped. Peak memory is one
batch's activations plus fixed-size statistics, however many samples there are, and batches may have
different shapes (text lengths, image sizes): every statistic is shape-agnostic.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import onnx
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.calibration.stats import DEFAULT_BINS, TensorStats
from onnxcomp.data import DataSource
from onnxcomp.errors import InputError
from onnxcomp.session import create_session, one_line, run_named


@dataclass
class CalibrationResult:
    """Statistics per tensor, and how much data produced them."""

    stats: dict[str, TensorStats]
    batches: int = 0
    samples: int = 0
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"batches": self.batches, "samples": self.samples, "problems": dict(self.problems),
                "tensors": len(self.stats)}


class _Progress:
    """A one-line progress display on stderr, only when stderr is a terminal (never in pipes or logs)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\rcalibrating: {done}{of} samples")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _with_outputs(model: ir.Model, names: Iterable[str]) -> bytes:
    """The model serialized with ``names`` added as graph outputs (the original is not touched)."""
    proto = onnx.load_from_string(io.serialize(model))
    existing = {out.name for out in proto.graph.output}
    inferred = _inferred_types(proto)
    for name in names:
        if name not in existing:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(
                name, inferred.get(name, onnx.TensorProto.FLOAT), None))
    return proto.SerializeToString()


def _inferred_types(proto: onnx.ModelProto) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # inference is a convenience here; unknown types default to float
        return {}
    return {info.name: info.type.tensor_type.elem_type for info in inferred.graph.value_info
            if info.type.HasField("tensor_type")}


def _batch_samples(feed: Mapping[str, object]) -> int:
    first = next(iter(feed.values()), None)
    shape = getattr(first, "shape", ())
    return int(shape[0]) if shape else 1


def calibrate(model: ir.Model, names: Iterable[str], data: DataSource, *, provider: str = "cpu",
              bins: int = DEFAULT_BINS, channel_axes: Mapping[str, int] | None = None,
              progress: bool = True) -> CalibrationResult:
    """Stream ``data`` through ``model`` and return statistics of the tensors ``names``.

    Args:
        model: The float model (not modified).
        names: Tensors of the main graph to observe.
        data: Calibration batches (iterated once).
        provider: Where the observing session runs.
        bins: Histogram bins per tensor.
        channel_axes: Tensors whose per-channel means are also wanted (bias correction), by axis.
        progress: Show a progress line on stderr when it is a terminal.

    Raises:
        InputError: A batch does not run through the model (wrong shapes or values for it).
    """
    wanted = list(dict.fromkeys(names))
    axes = dict(channel_axes or {})
    stats = {name: TensorStats(name, bins=bins, channel_axis=axes.get(name)) for name in wanted}
    result = CalibrationResult(stats)
    if not wanted:
        return result
    session = create_session(_with_outputs(model, wanted), provider, graph_optimization="basic")
    bar = _Progress(data.num_samples, progress)
    try:
        for batch in data:
            try:
                outputs = run_named(session, batch.feed)
            except Exception as exc:
                raise InputError(f"calibration batch {result.batches} does not run: {one_line(exc)}") from None
            for name in wanted:
                stats[name].update(outputs[name])
            result.batches += 1
            result.samples += _batch_samples(batch.feed)
            bar.update(result.samples)
    finally:
        bar.close()
    result.problems = {name: s.problem for name, s in stats.items() if s.problem is not None}
    return result

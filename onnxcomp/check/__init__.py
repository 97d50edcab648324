"""Checking a candidate model against a reference with onnxruntime: parity per output, and latency."""

from onnxcomp.check.latency import LatencyReport, measure_latency
from onnxcomp.check.parity import ParityAccumulator, ParityReport, ParityThresholds, compare
from onnxcomp.check.report import CheckReport, ProviderCheck, run_check

__all__ = [
    "CheckReport",
    "LatencyReport",
    "ParityAccumulator",
    "ParityReport",
    "ParityThresholds",
    "ProviderCheck",
    "compare",
    "measure_latency",
    "run_check",
]

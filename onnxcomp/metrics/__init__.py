"""Task metrics: does a candidate model still do the original's job, judged through the task's own post-processing.

A metric is a function of (reference outputs, candidate outputs) -- one ``{output name: array}`` dict per sample,
in the same order -- that returns a :class:`MetricResult`. Parity numbers (cosine, error norms) say how far the
numbers moved; a metric says whether the boxes, the decoded text, the mask or the nearest neighbours are still the
same. The first value of a result is its primary one, and the bar applies to it.
"""

from __future__ import annotations

from onnxcomp.metrics.base import Metric, MetricResult, Outputs, load_metric

__all__ = ["Metric", "MetricResult", "Outputs", "load_metric"]

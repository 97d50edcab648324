"""Differentiable execution of an ONNX graph in torch, with every trainable tensor named after its ONNX weight.

Why an interpreter and not a converter: distillation must write each trained tensor back into the student's
ONNX file, wherever the exporter stored it (initializers, ``Constant`` nodes, ``If`` bodies). A converter that
builds ``nn.Module`` trees renames and re-lays-out parameters (fused constants, transposed Gemm weights), so
mapping them back is guesswork; onnx2torch 1.5.15, evaluated on the digits fixtures, also has no ``If`` support
with weights in its branches. Here the graph is walked as it is, one small torch function per op
(:mod:`onnxcomp.torch_exec.ops`), and each parameter *is* an :class:`onnxcomp.weights.WeightRef`'s data, so
write-back is ``ref.replace(parameter)``. An op without a handler fails up front, naming the op.

torch is an optional extra: nothing here imports it at module import time; :func:`require_torch` turns its
absence into a one-line error that names the extra to install.
"""

from __future__ import annotations

from typing import Any

from onnxcomp.errors import MissingRequirementError

__all__ = ["TORCH_EXTRA_HINT", "require_torch"]

TORCH_EXTRA_HINT = "pip install 'onnxcomp[torch]'"


def require_torch(feature: str = "this command") -> Any:
    """Import torch, or raise a one-line error (exit 2) that says which extra to install."""
    try:
        import torch
    except ImportError as exc:
        raise MissingRequirementError(f"{feature} needs torch, which is not installed: {TORCH_EXTRA_HINT}") from exc
    return torch

"""Fold what a removed channel contributed on average into the next layer's bias.

A layer that reads channel ``c`` computes ``W[:, c] * x_c + ...``. After ``c`` is removed it computes the rest
only; adding ``W[:, c] * E[x_c]`` to its bias makes it see the channel's mean instead of zero, which is the
best constant replacement (least squares) and costs nothing at run time. ``E[x_c]`` comes from calibration
data (onnxruntime), per position of the tensor the layer reads, so a Flatten in between (one channel spread
over ``H*W`` positions) is handled exactly. For a Conv the fold sums the kernel: exact away from padded
borders, where a zero-padded input would have contributed less.

Without data nothing is folded here: the mean of a channel after ``BN -> ReLU`` is not knowable from the
weights. Provably *constant* channels are the exception (see :mod:`onnxcomp.channels.constants`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import UNTRACKED, Analysis, constant_array
from onnxcomp.channels.rewrite import Rewriter, int_attr

#: A folder adds ``delta`` (length = the node's output channels) to ``node``'s bias; returns why not, or None.
Folder = Callable[[ir.Node, np.ndarray, np.ndarray, Rewriter], str | None]


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if index < len(node.inputs) else None


def _conv_fold(node: ir.Node, positions: np.ndarray, values: np.ndarray, rw: Rewriter) -> str | None:
    weight = constant_array(_input(node, 1))
    if weight is None or int_attr(node, "group", 1) != 1:
        return f"Conv {node.name}: weight not constant or grouped"
    delta = np.einsum("opk,p->o", weight[:, positions].reshape(len(weight), len(positions), -1), values)
    _add_bias(node, 2, delta, rw)
    return None


def _gemm_fold(node: ir.Node, positions: np.ndarray, values: np.ndarray, rw: Rewriter) -> str | None:
    weight = constant_array(_input(node, 1))
    if weight is None or int_attr(node, "transA", 0):
        return f"Gemm {node.name}: transA or non-constant B"
    rows = weight[:, positions] if int_attr(node, "transB", 0) else weight[positions, :].T
    alpha = float(node.attributes["alpha"].value) if "alpha" in node.attributes else 1.0
    beta = float(node.attributes["beta"].value) if "beta" in node.attributes else 1.0
    c = constant_array(_input(node, 2))
    n = rows.shape[0]
    if (c is not None and c.size not in (1, n)) or beta == 0.0:
        return f"Gemm {node.name}: C is not a per-column bias"
    delta = alpha * (rows @ values) / beta
    _add_bias(node, 2, delta, rw)
    return None


def _matmul_fold(node: ir.Node, positions: np.ndarray, values: np.ndarray, rw: Rewriter) -> str | None:
    """MatMul has no bias of its own: fold into the constant of the single Add that reads it (exporters' bias)."""
    weight = constant_array(_input(node, 1))
    uses = list(node.outputs[0].uses())
    if weight is None or len(uses) != 1 or uses[0].node.op_type != "Add":
        return f"MatMul {node.name}: no bias Add to fold into"
    add = uses[0].node
    index = 1 - uses[0].idx
    bias = constant_array(_input(add, index))
    delta = values @ weight[positions, :]
    if bias is None or bias.shape[-1:] != delta.shape or bias.size != delta.size:
        return f"MatMul {node.name}: the Add after it is not a per-column bias"
    rw.set_input(add, index, (bias + delta.reshape(bias.shape)).astype(bias.dtype))
    return None


def _add_bias(node: ir.Node, index: int, delta: np.ndarray, rw: Rewriter) -> None:
    old = constant_array(_input(node, index))
    dtype = old.dtype if old is not None else np.float32
    base = np.zeros(len(delta)) if old is None else np.broadcast_to(old.reshape(-1), delta.shape)
    rw.set_input(node, index, (base + delta).astype(dtype))


FOLDERS: dict[str, Folder] = {"Conv": _conv_fold, "Gemm": _gemm_fold, "MatMul": _matmul_fold}


def removed_positions(analysis: Analysis, value: ir.Value, removed: set[int]) -> np.ndarray:
    """Positions of ``value``'s channel axis that carry a removed class."""
    slots = analysis.tracks[value].slots.tolist()
    return np.array([i for i, s in enumerate(slots) if s != UNTRACKED and analysis.root(s) in removed],
                    dtype=np.int64)


def fold_means(analysis: Analysis, removed: set[int], means: dict[str, np.ndarray],
               rw: Rewriter) -> tuple[int, list[str]]:
    """Fold the removed positions' means into every sink that reads them; returns (folded count, reasons)."""
    folded, reasons = 0, []
    for node, value in analysis.sinks:
        positions = removed_positions(analysis, value, removed)
        if positions.size == 0:
            continue
        mean = means.get(value.name)
        folder = FOLDERS.get(node.op_type)
        reason = (f"{node.name}: no calibration mean for {value.name}" if mean is None
                  else f"{node.op_type} {node.name}: no bias folder" if folder is None
                  else folder(node, positions, mean[positions].astype(np.float64), rw))
        if reason is None:
            folded += 1
        else:
            reasons.append(reason)
    return folded, reasons

"""Attention heads: a Reshape that splits the channel axis into ``(heads, head_dim)``, the batched MatMuls
between activations that follow (``Q @ K^T``, ``softmax @ V``), and the Reshape that merges heads back.

Splitting ``[B, S, H*D] -> [B, S, H, D]`` means a channel can only go together with the ``D - 1`` others of
its head: the handler *unites* each head's ``D`` elements into one and tracks the head axis from then on.
A batched MatMul between two activations with channels on the same batch axis (heads) couples them
position by position, like an Add, so a head's Q, K and V columns become one removable class; the merging
Reshape expands each head back into ``D`` positions (:func:`onnxcomp.channels.ops_shape._expand`), so the
output projection drops whole runs of rows. Exporters compute these shapes at run time
(``Shape -> Gather -> Concat``), and such a target stays computed at run time: the rewrite builds it from the
input's own run-time shape (``Shape -> Gather``) around the new channel dims, so nothing an input size decides
(batch, sequence length, a width) is ever baked into a literal. A literal target keeps its literal form with
only the channel dim changed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import Analysis, ShapeEdit, Track, constant_array, rank_of, static_shape

if TYPE_CHECKING:
    from onnxcomp.channels.rewrite import Rewriter


def _same_dims(a: list[int | str], b: list[int | str]) -> bool:
    """Leading dims the rewritten target may copy from the input: equal ints, and at most one symbolic pair.

    One symbolic pair (``batch`` vs an observed ``observed_3``) is equal by element count once the caller has
    checked that the channel and trailing dims account exactly for the rest of the tensor.
    """
    if len(a) != len(b):
        return False
    symbolic = [(x, y) for x, y in zip(a, b, strict=True) if isinstance(x, str) or isinstance(y, str)]
    exact = all(x == y for x, y in zip(a, b, strict=True) if isinstance(x, int) and isinstance(y, int))
    return exact and len(symbolic) <= 1 and all(isinstance(x, str) and isinstance(y, str) for x, y in symbolic)


def reshape_by_shapes(node: ir.Node, a: Analysis, x: ir.Value, track: Track) -> bool:
    """Follow a Reshape that only splits or merges the channel axis, from the inferred shapes.

    Returns False (and touches nothing) when the shapes do not prove one of the two forms; the caller
    then freezes. ``allowzero`` Reshapes are left to the caller.
    """
    shape_in, shape_out = static_shape(x), static_shape(node.outputs[0])
    if shape_in is None or shape_out is None or not _same_dims(shape_in[:track.axis], shape_out[:track.axis]):
        return False
    axis = track.axis
    tail_in, tail_out = shape_in[axis + 1:], shape_out[axis + 1:]
    if not all(isinstance(d, int) for d in [*tail_in, *tail_out, shape_out[axis]]):
        return False
    if len(tail_out) == len(tail_in) + 1 and list(tail_out[1:]) == list(tail_in):
        return _split(node, a, track, int(shape_out[axis]), int(tail_out[0]))  # type: ignore[arg-type]
    inner = _merge_factor(tail_in, tail_out)  # type: ignore[arg-type]
    if inner is not None and shape_out[axis] == len(track) * inner:
        a.set_track(node.outputs[0], Track(axis, np.repeat(track.slots, inner)), np.repeat(a.zeros_of(x), inner))
        a.literal_shapes[node] = ShapeEdit(axis, (), len(shape_in) - len(tail_out))
        return True
    return False


def _merge_factor(tail_in: list[int], tail_out: list[int]) -> int | None:
    """``[.., C, d1, d2] -> [.., C*d1, d2]``: how many positions each channel spans (``d1``), else None."""
    kept = len(tail_out)
    if kept >= len(tail_in) or list(tail_out) != list(tail_in[len(tail_in) - kept:]):
        return None
    return math.prod(tail_in[:len(tail_in) - kept])


def _split(node: ir.Node, a: Analysis, track: Track, heads: int, head_dim: int) -> bool:
    """``[.., H*D, ..] -> [.., H, D, ..]``: unite each head's D elements; the head axis carries channels."""
    if heads * head_dim != len(track):
        return False
    blocks = track.slots.reshape(heads, head_dim)
    for row in blocks:
        for element in row[1:].tolist():
            a.unite(np.array([row[0]]), np.array([element]), f"Reshape {node.name} splits a partly untracked head")
    zero = a.zeros_of(node.inputs[0]).reshape(heads, head_dim).all(axis=1)
    a.set_track(node.outputs[0], Track(track.axis, blocks[:, 0].copy()), zero)
    a.literal_shapes[node] = ShapeEdit(track.axis, (head_dim,), track.axis + 1)
    return True


def rewrite_literal_shape(node: ir.Node, kept: int, rw: Rewriter) -> None:
    """Give the Reshape ``kept`` positions on its channel axis: in its literal, or in its run-time target."""
    edit = rw.analysis.literal_shapes[node]
    target = constant_array(node.inputs[1])
    if target is not None:
        new = target.copy()
        if int(new[edit.axis]) not in (0, -1):  # 0 copies the (already pruned) input dim, -1 infers it
            new[edit.axis] = kept
        rw.set_input(node, 1, new)
        return
    rank = rank_of(node.inputs[0])
    assert rank is not None, f"Reshape {node.name}: input rank vanished before the rewrite"
    shape = rw.insert_before(node, "Shape", [node.inputs[0]])
    pieces = [_gather(node, shape, range(edit.axis), rw),
              rw.constant(node, f"{node.name or 'Reshape'}_channels", np.array([kept, *edit.extra], np.int64)),
              _gather(node, shape, range(edit.tail_from, rank), rw)]
    target_value = rw.insert_before(node, "Concat", [p for p in pieces if p is not None], [ir.AttrInt64("axis", 0)])
    node.replace_input_with(1, target_value)


def _gather(node: ir.Node, shape: ir.Value, dims: range, rw: Rewriter) -> ir.Value | None:
    """``shape[dims]`` at run time (``None`` for no dims)."""
    if not dims:
        return None
    indices = rw.constant(node, f"{node.name or 'Reshape'}_dims", np.array(list(dims), np.int64))
    return rw.insert_before(node, "Gather", [shape, indices], [ir.AttrInt64("axis", 0)])


def batched_matmul_propagate(node: ir.Node, a: Analysis) -> None:
    """``A @ B`` between two activations: channels on the same batch axis (heads) couple; anything else freezes."""
    x, y = node.inputs[0], node.inputs[1]
    tx, ty = a.track(x), a.track(y)
    rx, ry, ro = rank_of(x), rank_of(y), rank_of(node.outputs[0])
    reason = f"MatMul {node.name} multiplies two activations with channels off a shared batch (head) axis"
    if rx is None or ry is None or ro is None or tx is None or ty is None:
        a.freeze_value(x, reason)
        a.freeze_value(y, reason)
        return
    ax, ay = tx.axis + ro - rx, ty.axis + ro - ry
    if ax != ay or ax >= ro - 2 or len(tx) != len(ty):
        a.freeze(tx.slots, reason)
        a.freeze(ty.slots, reason)
        return
    slots = a.unite(tx.slots, ty.slots, reason)
    a.set_track(node.outputs[0], Track(ax, slots), a.zeros_of(x) | a.zeros_of(y))


def is_weightless(node: ir.Node) -> bool:
    return len(node.inputs) > 1 and constant_array(node.inputs[1]) is None

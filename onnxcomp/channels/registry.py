"""The table of per-op handlers: one entry per ONNX op type, nothing else decides how channels flow.

A handler has two small functions:

* ``propagate(node, analysis)``: read the tracks of the node's inputs and set its outputs' tracks (pass
  elements through, concatenate, cut, repeat, unite them), or freeze what it cannot follow;
* ``rewrite(node, rewriter)``: once the removed channels are chosen, slice the node's constant inputs and
  fix its attributes (Split sizes, Reshape literals, Conv ``group``...).

``source`` handlers run even when no input carries channels (a Conv on the graph input still creates
channels). An op type missing from the table freezes every channel it reads, with the op named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import onnx_ir as ir

if TYPE_CHECKING:
    from onnxcomp.channels.graph import Analysis
    from onnxcomp.channels.rewrite import Rewriter


def _no_rewrite(node: ir.Node, rewriter: Rewriter) -> None:
    del node, rewriter


@dataclass(frozen=True)
class Handler:
    """How one op type moves channels (``propagate``) and adapts when they go (``rewrite``)."""

    propagate: Callable[[ir.Node, Analysis], None]
    rewrite: Callable[[ir.Node, Rewriter], None] = _no_rewrite
    source: bool = False


def handlers() -> dict[str, Handler]:
    """The full table (standard ONNX domain), merged from the op-family modules."""
    from onnxcomp.channels import ops_elementwise, ops_layers, ops_shape

    table: dict[str, Handler] = {}
    for module in (ops_layers, ops_elementwise, ops_shape):
        overlap = table.keys() & module.HANDLERS.keys()
        assert not overlap, f"op types registered twice: {sorted(overlap)}"
        table.update(module.HANDLERS)
    return table


def handler_for(node: ir.Node, table: dict[str, Handler]) -> Handler | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    return table.get(node.op_type)

"""Carry out a plan on the graph: every handler rewrites its node, then shapes are re-inferred.

Stale shapes are cleared from every intermediate value first (a value_info saying 64 channels where 48
remain would make onnxruntime or the next pass trust a wrong shape); graph inputs and outputs keep theirs,
which the analysis guaranteed are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onnxcomp import io
from onnxcomp.channels.analyze import infer_shapes
from onnxcomp.channels.graph import Analysis
from onnxcomp.channels.registry import handler_for, handlers
from onnxcomp.channels.rewrite import Rewriter


def main_opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 17)))


def rewrite_model(model: ir.Model, analysis: Analysis, removed: set[int],
                  feed: Mapping[str, np.ndarray] | None = None) -> None:
    """Remove the channels of every class in ``removed`` (union-find roots) from ``model``, in place.

    ``feed`` (a real input, when there is one) seeds the shape observation afterwards.
    """
    rewriter = Rewriter(analysis, frozenset(removed), main_opset(model))
    table = handlers()
    for node in list(model.graph):
        handler = handler_for(node, table)
        if handler is not None:
            handler.rewrite(node, rewriter)
    refresh_shapes(model, feed)


def refresh_shapes(model: ir.Model, feed: Mapping[str, np.ndarray] | None = None) -> None:
    """Clear intermediate shapes, drop what became unused, and infer shapes again."""
    graph = model.graph
    boundary = set(graph.inputs) | set(graph.outputs)
    for node in graph:
        for value in node.outputs:
            if value not in boundary:
                value.shape = None
    RemoveUnusedNodesPass()(model)
    infer_shapes(model, feed)


def copy_model(model: ir.Model) -> ir.Model:
    """An independent deep copy (through the protobuf), for trial prunings and probes."""
    return ir.serde.deserialize_model(onnx.load_from_string(io.serialize(model)))

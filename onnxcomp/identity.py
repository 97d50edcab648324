"""Identity elimination that leaves alone the Identity nodes a graph needs.

onnx-ir's own pass rewires ``y = Identity(x)`` to ``x`` everywhere and renames ``x`` when ``y`` is a graph
output. That is wrong in two places real exporters produce: an ``If``/``Loop`` branch returning an outer-scope
value (onnxruntime refuses a subgraph output that is an outer-scope value returned directly, and onnx-ir
raises because the value would belong to two graphs), and an Identity between two outputs or from an input
or initializer to an output (the names of both must survive). Those Identity nodes are kept; every other one
is removed exactly as before.
"""

from __future__ import annotations

import onnx_ir as ir


def _needed(node: ir.Node) -> bool:
    source, target = node.inputs[0], node.outputs[0]
    if not target.is_graph_output():
        return False
    if source is None or source.is_graph_input() or source.is_initializer() or source.is_graph_output():
        return True
    producer = source.producer()
    return producer is None or producer.graph is not node.graph  # an outer-scope (or constant-less) value


class IdentityEliminationPass(ir.passes.InPlacePass):
    """Remove ``Identity`` nodes in every graph, subgraph and function, except those described above."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        graphs: list[ir.Graph | ir.Function] = [model.graph, *model.functions.values()]
        for graph in graphs:
            for node in list(ir.traversal.RecursiveGraphIterator(graph)):
                modified |= self._eliminate(node)
        return ir.passes.PassResult(model, modified=modified)

    @staticmethod
    def _eliminate(node: ir.Node) -> bool:
        if node.op_type != "Identity" or node.domain != "" or len(node.inputs) != 1 or len(node.outputs) != 1:
            return False
        if node.inputs[0] is None or _needed(node):
            return False
        source, target = node.inputs[0], node.outputs[0]
        if source.type is None:
            source.type = target.type
        if source.shape is None:
            source.shape = target.shape
        is_output = target.is_graph_output()
        ir.convenience.replace_all_uses_with(target, source, replace_graph_outputs=True)
        if is_output:
            source.name = target.name
        node.graph.remove(node, safe=True)
        return True

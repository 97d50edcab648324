"""Walk the main graph once, in topological order, and build the :class:`Analysis` of coupled channels.

Channel *groups* (what the report speaks of) are sets of sources whose channels got coupled: a residual
stage's convolutions form one group, a lone Gemm its own. Inside a group each union-find class is one
removable channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

from onnxcomp.channels.constants import propagate_constants
from onnxcomp.channels.graph import UNTRACKED, Analysis, UnionFind
from onnxcomp.channels.registry import handler_for, handlers


@dataclass
class ChannelGroup:
    """Coupled sources and their channels (union-find roots); ``frozen`` maps a root to why it must stay."""

    index: int
    sources: list[str]
    roots: list[int]
    frozen: dict[int, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        head = ", ".join(self.sources[:3])
        return head + (f" (+{len(self.sources) - 3})" if len(self.sources) > 3 else "")

    @property
    def removable(self) -> list[int]:
        return [r for r in self.roots if r not in self.frozen]


def infer_shapes(model: ir.Model) -> None:
    """Fill in value shapes (the analysis needs channel counts and spatial sizes).

    ONNX shape inference loses ranks after a Reshape whose shape is computed at run time (older exports
    build it from Shape/Gather/Concat). Values it leaves unknown are observed with onnxruntime instead, at
    two batch sizes: a dim that differs between the runs is dynamic, the others are facts of the model.
    """
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    unknown = [v for node in model.graph for v in node.outputs if v.shape is None and v.name]
    if unknown:
        _observe_shapes(model, unknown)


def _observe_shapes(model: ir.Model, values: list[ir.Value]) -> None:
    import numpy as np
    import onnx

    from onnxcomp import io
    from onnxcomp.session import create_session

    probe = ir.serde.deserialize_model(onnx.load_from_string(io.serialize(model)))
    by_name = {v.name: v for node in probe.graph for v in node.outputs}
    probe.graph.outputs.extend(by_name[v.name] for v in values if not by_name[v.name].is_graph_output())
    observed = []
    try:
        session = create_session(io.serialize(probe), "cpu", graph_optimization="disable")
        for batch in (1, 2):
            feed = {}
            for arg in session.get_inputs():
                dims = [d if isinstance(d, int) else batch for d in arg.shape]
                feed[arg.name] = np.zeros(dims, np.float32 if "float" in arg.type else np.int64)
            outputs = session.run([v.name for v in values], feed)
            observed.append([np.shape(o) for o in outputs])
    except Exception:  # an unrunnable probe only means fewer known shapes: the analysis then freezes more
        return
    for value, one, two in zip(values, observed[0], observed[1], strict=True):
        if len(one) == len(two):
            value.shape = ir.Shape([a if a == b else "dynamic" for a, b in zip(one, two, strict=True)])


def analyze(model: ir.Model) -> Analysis:
    """The channel dependency analysis of ``model``'s main graph (shapes must be inferred first)."""
    graph = model.graph
    analysis = Analysis(graph)
    table = handlers()
    for node in graph:
        handler = handler_for(node, table)
        tracked = any(v is not None and v in analysis.tracks for v in node.inputs)
        if handler is None:
            if tracked:
                analysis.freeze_inputs(node, f"no handler for {node.op_type} ({node.name})")
            continue
        if tracked or handler.source:
            handler.propagate(node, analysis)
            propagate_constants(node, analysis)
    _freeze_boundaries(analysis, graph)
    return analysis


def _freeze_boundaries(analysis: Analysis, graph: ir.Graph) -> None:
    """Graph outputs keep their shapes; values read from inside subgraphs cannot be followed."""
    for value, track in list(analysis.tracks.items()):
        if value.is_graph_output():
            analysis.freeze(track.slots, f"reaches graph output {value.name}")
        if any(use.node.graph is not graph for use in value.uses()):
            analysis.freeze(track.slots, f"{value.name} is read inside a subgraph")


def channel_groups(analysis: Analysis) -> list[ChannelGroup]:
    """Sources coupled through shared classes form one group; each group lists its classes."""
    sources = analysis.sources
    links = UnionFind()
    links.make(len(sources))
    owner: dict[int, int] = {}
    for i, source in enumerate(sources):
        for element in source.elements.tolist():
            root = analysis.root(element)
            if root in owner:
                links.union(owner[root], i)
            else:
                owner[root] = i
    frozen = analysis.frozen_roots()
    by_group: dict[int, ChannelGroup] = {}
    for i, source in enumerate(sources):
        g = links.find(i)
        group = by_group.setdefault(g, ChannelGroup(len(by_group), [], []))
        group.sources.append(source.node.name or source.node.op_type)
        for element in source.elements.tolist():
            root = analysis.root(element)
            if root not in group.roots:
                group.roots.append(root)
                if root in frozen:
                    group.frozen[root] = frozen[root]
    return list(by_group.values())


def untracked(slot: int) -> bool:
    return slot == UNTRACKED

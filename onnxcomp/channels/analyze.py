"""Walk the main graph once, in topological order, and build the :class:`Analysis` of coupled channels.

Channel *groups* (what the report speaks of) are sets of sources whose channels got coupled: a residual
stage's convolutions form one group, a lone Gemm its own. Inside a group each union-find class is one
removable channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir

from onnxcomp.channels.constants import propagate_constants
from onnxcomp.channels.graph import UNTRACKED, Analysis, UnionFind
from onnxcomp.channels.registry import handler_for, handlers
from onnxcomp.channels.shapes import infer_shapes

__all__ = ["ChannelGroup", "analyze", "channel_groups", "infer_shapes", "untracked"]


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

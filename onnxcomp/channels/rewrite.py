"""Applying a removal: which positions each tensor keeps, and the small edits handlers make with that.

The handlers never mutate a weight in place: a sliced weight becomes a new initializer wired into the
one node that reads it, so a tensor shared by two nodes (exporters deduplicate) stays right for the
other reader. Initializers left unused are dropped by the pass's cleanup step afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.graph import UNTRACKED, Analysis


@dataclass
class Rewriter:
    """What a handler's rewrite sees: kept positions per tensor, and helpers to replace constants."""

    analysis: Analysis
    removed: frozenset[int]
    opset: int
    _keep: dict[ir.Value, np.ndarray | None] = field(default_factory=dict)
    _counter: int = 0
    _names: set[str] = field(default_factory=set)

    def keep(self, value: ir.Value | None) -> np.ndarray | None:
        """Indices (along the tensor's channel axis) that survive, or ``None`` when nothing goes."""
        if value is None:
            return None
        if value not in self._keep:
            self._keep[value] = self._compute_keep(value)
        return self._keep[value]

    def _compute_keep(self, value: ir.Value) -> np.ndarray | None:
        track = self.analysis.track(value)
        if track is None:
            return None
        roots = [UNTRACKED if s == UNTRACKED else self.analysis.root(s) for s in track.slots.tolist()]
        kept = np.array([i for i, r in enumerate(roots) if r == UNTRACKED or r not in self.removed], dtype=np.int64)
        return None if len(kept) == len(roots) else kept

    def set_input(self, node: ir.Node, index: int, array: np.ndarray) -> None:
        """Wire a new initializer holding ``array`` into ``node``'s input ``index`` (appending if absent)."""
        old = node.inputs[index] if index < len(node.inputs) else None
        base = old.name if old is not None and old.name else f"{node.name or node.op_type}_input{index}"
        value = self.constant(node, f"{base}_pruned", array)
        if index >= len(node.inputs):
            node.resize_inputs(index + 1)
        node.replace_input_with(index, value)

    def constant(self, node: ir.Node, base: str, array: np.ndarray) -> ir.Value:
        """A new initializer holding ``array`` in ``node``'s graph, named after ``base``."""
        graph = node.graph
        assert graph is not None, "handlers only rewrite nodes of a graph"
        name = self._fresh_name(graph, base)
        value = ir.Value(name=name, const_value=ir.tensor(np.ascontiguousarray(array), name=name))
        value.shape = ir.Shape(array.shape)
        value.dtype = ir.DataType.from_numpy(array.dtype)
        graph.register_initializer(value)
        return value

    def insert_before(self, node: ir.Node, op_type: str, inputs: list[ir.Value],
                      attributes: list[ir.Attr] | None = None) -> ir.Value:
        """Insert a one-output standard-domain node before ``node``; returns its output."""
        graph = node.graph
        assert graph is not None, "handlers only rewrite nodes of a graph"
        name = self._fresh_name(graph, f"{node.name or node.op_type}_{op_type.lower()}")
        new = ir.Node("", op_type, inputs, attributes or [], num_outputs=1, name=name)
        new.outputs[0].name = name
        graph.insert_before(node, new)
        return new.outputs[0]

    def slice_input(self, node: ir.Node, index: int, axis: int, keep: np.ndarray | None,
                    array: np.ndarray | None = None) -> np.ndarray | None:
        """Keep ``keep`` along ``axis`` of a constant input; returns the new array (or ``None`` if untouched)."""
        from onnxcomp.channels.graph import constant_array

        if keep is None:
            return None
        source = array if array is not None else constant_array(node.inputs[index])
        assert source is not None, f"{node.name}: input {index} is not a constant"
        sliced = np.take(source, keep, axis=axis)
        self.set_input(node, index, sliced)
        return sliced

    def _fresh_name(self, graph: ir.Graph, base: str) -> str:
        """A name no initializer, node output or graph input of ``graph`` has, nor one handed out before."""
        if not self._names:
            self._names.update(v.name for n in graph for v in n.outputs if v.name)
            self._names.update(v.name for v in graph.inputs if v.name)
        taken = set(graph.initializers) | self._names
        name = base
        while name in taken:
            self._counter += 1
            name = f"{base}{self._counter}"
        self._names.add(name)
        return name


def int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else int(attr.value)


def ints_attr(node: ir.Node, name: str) -> list[int] | None:
    attr = node.attributes.get(name)
    return None if attr is None else [int(v) for v in attr.value]


def set_ints_attr(node: ir.Node, name: str, values: list[int]) -> None:
    node.attributes[name] = ir.AttrInt64s(name, values)


def set_int_attr(node: ir.Node, name: str, value: int) -> None:
    node.attributes[name] = ir.AttrInt64(name, value)

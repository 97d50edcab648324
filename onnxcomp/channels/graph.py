"""The dependency graph of coupled channels, built from onnx-ir use-def chains.

Every channel a layer produces gets an *element* id. A tensor on a channel path carries a :class:`Track`:
which axis holds channels and, for each position along that axis, the element it carries (``-1`` for a
position nothing may remove, such as a slice of a graph input). Ops move elements around: a Concat
concatenates the position lists, a Split cuts them, a Flatten repeats each element ``H*W`` times, an Add
between two activations *unites* the elements at equal positions (union-find). After one walk over the
nodes in topological order, each union-find class is one removable channel: removing it drops every
position that carries it, in every tensor.

Freezing is by element: a class is frozen when any of its members was frozen (it reaches a graph output,
an op without a handler, a subgraph, a LayerNorm's normalised axis, ...), with the first reason recorded.
Nothing is guessed: an op type without a handler freezes every channel it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxcomp.weights import constant_tensor

UNTRACKED = -1


class UnionFind:
    """Union-find over dense integer ids, grown on demand."""

    def __init__(self) -> None:
        self.parent: list[int] = []

    def make(self, count: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count, dtype=np.int64)

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Track:
    """Where channels live in one tensor: ``axis`` (non-negative) and the element id at each position."""

    axis: int
    slots: np.ndarray

    def __len__(self) -> int:
        return len(self.slots)


@dataclass
class Source:
    """A node whose output channels are free to choose (Conv filters, Gemm/MatMul columns).

    ``filters`` holds one weight slice per output channel, used by the L1/L2 criteria and to spot
    all-zero channels (together with ``bias``).
    """

    node: ir.Node
    elements: np.ndarray
    filters: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class ShapeEdit:
    """A Reshape followed from its shapes alone (:mod:`onnxcomp.channels.heads`), for its rewrite.

    The output carries channels on ``axis``; ``extra`` are the channel-derived dims right after it (the head
    size of a head split); the output's remaining dims are the input's dims from ``tail_from`` on.
    """

    axis: int
    extra: tuple[int, ...]
    tail_from: int


@dataclass
class Analysis:
    """The state of the dependency walk, and after it the answer: classes, sources, frozen reasons."""

    graph: ir.Graph
    uf: UnionFind = field(default_factory=UnionFind)
    tracks: dict[ir.Value, Track] = field(default_factory=dict)
    zero: dict[ir.Value, np.ndarray] = field(default_factory=dict)
    frozen: dict[int, str] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    sinks: list[tuple[ir.Node, ir.Value]] = field(default_factory=list)
    bn_scales: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    filter_scales: dict[ir.Node, np.ndarray] = field(default_factory=dict)
    literal_shapes: dict[ir.Node, ShapeEdit] = field(default_factory=dict)
    constants: dict[ir.Value, np.ndarray] = field(default_factory=dict)

    # ------------------------------------------------------------------ building blocks for handlers

    def track(self, value: ir.Value | None) -> Track | None:
        return None if value is None else self.tracks.get(value)

    def set_track(self, value: ir.Value, track: Track, zero: np.ndarray | None = None) -> None:
        self.tracks[value] = track
        self.zero[value] = zero if zero is not None else np.zeros(len(track), dtype=bool)

    def zeros_of(self, value: ir.Value) -> np.ndarray:
        track = self.tracks[value]
        return self.zero.get(value, np.zeros(len(track), dtype=bool))

    def add_source(self, node: ir.Node, output: ir.Value, axis: int, filters: np.ndarray,
                   bias: np.ndarray | None) -> None:
        """Give ``output`` fresh elements, one per filter; a channel is zero when filter and bias are."""
        elements = self.uf.make(len(filters))
        zero = ~np.any(filters.reshape(len(filters), -1) != 0, axis=1)
        if bias is not None:
            zero &= bias == 0
        self.sources.append(Source(node, elements, filters, bias))
        self.set_track(output, Track(axis, elements), zero)

    def freeze(self, slots: Iterable[int] | np.ndarray, reason: str) -> None:
        for element in np.asarray(list(slots) if not isinstance(slots, np.ndarray) else slots).tolist():
            if element != UNTRACKED:
                self.frozen.setdefault(int(element), reason)

    def freeze_value(self, value: ir.Value | None, reason: str) -> None:
        track = self.track(value)
        if track is not None:
            self.freeze(track.slots, reason)

    def freeze_inputs(self, node: ir.Node, reason: str) -> None:
        for value in node.inputs:
            self.freeze_value(value, reason)

    def unite(self, a: np.ndarray, b: np.ndarray, reason: str) -> np.ndarray:
        """Couple two equal-length position lists; a position tracked on one side only freezes the other."""
        merged = a.copy()
        for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            if x != UNTRACKED and y != UNTRACKED:
                self.uf.union(x, y)
            elif x != UNTRACKED or y != UNTRACKED:
                self.freeze([x, y], reason)
                merged[i] = x if x != UNTRACKED else y
        return merged

    # ------------------------------------------------------------------ answers

    def root(self, element: int) -> int:
        return self.uf.find(element)

    def frozen_roots(self) -> dict[int, str]:
        """Each frozen class (by its root) with the first reason any member was frozen for."""
        result: dict[int, str] = {}
        for element, reason in sorted(self.frozen.items()):
            result.setdefault(self.root(element), reason)
        return result

    def zero_roots(self) -> set[int]:
        """Classes that are provably all-zero wherever a layer reads them.

        Only layers that sum over channels (Conv, Gemm, MatMul: the *sinks*) can carry a channel's value
        into other channels; everything between is per-channel. So a class is removable exactly when it
        is proven zero (zero filter and bias, then zero-preserving ops) at every sink input carrying it.
        A BatchNorm shift or a Sigmoid on the way makes it a constant channel: low-importance, not exact.
        """
        zero: dict[int, bool] = {}
        for _, value in self.sinks:
            track = self.tracks[value]
            for element, is_zero in zip(track.slots.tolist(), self.zeros_of(value).tolist(), strict=True):
                if element != UNTRACKED:
                    root = self.root(element)
                    zero[root] = zero.get(root, True) and bool(is_zero)
        return {root for root, is_zero in zero.items() if is_zero}


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The numpy value of a constant input (initializer or Constant node), else ``None``."""
    while value is not None and value.const_value is None:
        producer = value.producer()
        if producer is None or producer.op_type != "Identity" or producer.domain not in ("", "ai.onnx"):
            break
        value = producer.inputs[0]  # exporters alias deduplicated weights through Identity
    tensor = constant_tensor(value)
    return None if tensor is None else tensor.numpy()


def static_shape(value: ir.Value | None) -> list[int | str] | None:
    """Dims of ``value`` (ints, or the symbol's name / ``'?'`` for dynamic ones), ``None`` if unknown."""
    if value is None or value.shape is None:
        return None
    dims: list[int | str] = []
    for dim in value.shape:
        dims.append(dim if isinstance(dim, int) else (str(dim.value) if getattr(dim, "value", None) else "?"))
    return dims


def rank_of(value: ir.Value | None) -> int | None:
    shape = static_shape(value)
    if shape is not None:
        return len(shape)
    array = constant_array(value)
    return None if array is None else array.ndim

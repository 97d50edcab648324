"""Which weights a lossy weight pass may change, how to see them as a matrix, and why the others are left alone.

Pruning, clustering and quantization should touch the weight matrices of linear layers (Conv, ConvTranspose,
Gemm, MatMul with a constant operand) and nothing else: a zeroed bias shifts every activation, a clustered
BatchNorm variance rescales a channel, and a rounded Reshape shape breaks the graph. The role of a tensor is
not in its name (exporters write ``onnx::MatMul_221``); it is in how its consumers use it. So each consumer
op has a small handler in :data:`USE_HANDLERS` that says what a given input index is; a tensor is eligible
only when *every* use of it is a linear-layer weight use, and otherwise carries the reason of the first use
that is not.

An eligible weight also gets a :class:`MatrixView`: the permutation and reshape that turns it into
``[output channels, reduction]`` rows. N:M sparsity groups consecutive elements of a row (the reduction axis,
which is what sparse kernels need), and per-channel clustering/binarization uses one row per output channel.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxcomp.errors import InputError
from onnxcomp.weights import WeightRef, iter_weights

__all__ = [
    "FLOAT_TYPES",
    "USE_HANDLERS",
    "Candidate",
    "Eligibility",
    "MatrixView",
    "Role",
    "Selection",
    "Use",
    "classify",
    "first_and_last",
    "select_weights",
    "use_of",
]

#: Float storage types a weight pass can rewrite while keeping the file a float model.
FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE})

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})


class Role(enum.Enum):
    """What a tensor is to the op that reads it."""

    WEIGHT = "linear-layer weight"
    BIAS = "bias"
    NORM = "normalization parameter"
    SHAPE = "shape/axes/index constant"
    OTHER = "other operand"


@dataclass(frozen=True)
class MatrixView:
    """How to see an N-d weight as a 2-D ``[rows, reduction]`` matrix, one row per output channel.

    The array is transposed by ``perm`` and reshaped to ``(prod(first row_axes dims), -1)``; :meth:`from_rows`
    undoes it. Rows are contiguous along the reduction, so consecutive elements of a row are the ones a
    sparse kernel multiplies into the same output.
    """

    perm: tuple[int, ...]
    row_axes: int = 1

    def to_rows(self, array: np.ndarray) -> np.ndarray:
        moved = np.transpose(array, self.perm)
        rows = math.prod(moved.shape[: self.row_axes])
        return np.ascontiguousarray(moved).reshape(rows, -1)

    def from_rows(self, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        moved_shape = tuple(shape[axis] for axis in self.perm)
        return np.transpose(rows.reshape(moved_shape), np.argsort(self.perm))

    def reduction_length(self, shape: tuple[int, ...]) -> int:
        moved = [shape[axis] for axis in self.perm]
        return math.prod(moved[self.row_axes:])


@dataclass(frozen=True)
class Use:
    """One consumer's view of a tensor: its role, and for weights the matrix view (``None`` if it has none)."""

    role: Role
    view: MatrixView | None = None
    detail: str = ""


@dataclass(frozen=True)
class Eligibility:
    """The verdict on one weight: eligible (with its view), or not, with the reason."""

    eligible: bool
    reason: str | None = None
    view: MatrixView | None = None
    ops: tuple[str, ...] = ()
    consumers: tuple[str, ...] = ()

    @property
    def has_view(self) -> bool:
        return self.view is not None


UseHandler = Callable[[ir.Node, int, int], Use]
"""``(node, input_index, rank) -> Use``: what a given input of an op is."""


# -- views -----------------------------------------------------------------------------------------------------


def _identity_view(rank: int) -> MatrixView:
    return MatrixView(tuple(range(rank)))


def _out_axis_view(rank: int, out_axis: int) -> MatrixView:
    """Rows along ``out_axis``; everything else (in stored order) is the reduction."""
    out_axis %= rank
    return MatrixView((out_axis, *(a for a in range(rank) if a != out_axis)))


def _matmul_view(rank: int, reduction_axis: int) -> MatrixView:
    """MatMul operands: batch axes and the non-reduced matrix axis are rows; the reduced axis is last."""
    if rank == 1:
        return MatrixView((0,), row_axes=0)
    reduction_axis %= rank
    other = rank - 1 if reduction_axis == rank - 2 else rank - 2
    perm = (*range(rank - 2), other, reduction_axis)
    return MatrixView(perm, row_axes=rank - 1)


# -- handlers per op -------------------------------------------------------------------------------------------


def _conv(node: ir.Node, index: int, rank: int) -> Use:
    if index == 1 and rank >= 3:
        return Use(Role.WEIGHT, _identity_view(rank), "Conv weight [out, in/group, *kernel]")
    if index == 2:
        return Use(Role.BIAS)
    return Use(Role.OTHER, detail="Conv data input")


def _conv_transpose(node: ir.Node, index: int, rank: int) -> Use:
    if index == 1 and rank >= 3:
        return Use(Role.WEIGHT, _out_axis_view(rank, 1), "ConvTranspose weight [in, out/group, *kernel]")
    if index == 2:
        return Use(Role.BIAS)
    return Use(Role.OTHER, detail="ConvTranspose data input")


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return attr.as_int() if isinstance(attr, ir.Attr) else default


def _gemm(node: ir.Node, index: int, rank: int) -> Use:
    if index == 2:
        return Use(Role.BIAS)
    if rank != 2:
        return Use(Role.OTHER, detail="Gemm operand that is not a matrix")
    transposed = int(bool(_int_attr(node, "transB" if index == 1 else "transA", 0)))
    # B is [K, N] ([N, K] with transB): it reduces over K; A is [M, K] ([K, M] with transA)
    reduction = transposed if index == 1 else 1 - transposed
    return Use(Role.WEIGHT, _out_axis_view(2, 1 - reduction), f"Gemm input {index}")


def _matmul(node: ir.Node, index: int, rank: int) -> Use:
    if index not in (0, 1) or rank == 0:
        return Use(Role.OTHER, detail="MatMul operand that is not a matrix")
    if rank == 1:
        return Use(Role.WEIGHT, _matmul_view(1, 0), "MatMul vector operand")
    reduction = -2 if index == 1 else -1  # A @ B reduces over A's last and B's second-to-last axis
    return Use(Role.WEIGHT, _matmul_view(rank, reduction), f"MatMul input {index}")


def _fused_attention(node: ir.Node, index: int, rank: int) -> Use:
    """onnxruntime's com.microsoft.Attention packs the Q/K/V projection as input 1, ``[hidden, 3*hidden]``."""
    if index == 1 and rank == 2:
        return Use(Role.WEIGHT, _out_axis_view(2, 1), "Attention QKV weight")
    if index == 2:
        return Use(Role.BIAS)
    return Use(Role.OTHER, detail=f"Attention input {index}")


def _norm(first_param: int) -> UseHandler:
    def handler(node: ir.Node, index: int, rank: int) -> Use:
        if index >= first_param:
            return Use(Role.NORM, detail=f"{node.op_type} input {index}")
        return Use(Role.OTHER, detail=f"{node.op_type} data input")

    return handler


def _shape_inputs(*indices: int) -> UseHandler:
    def handler(node: ir.Node, index: int, rank: int) -> Use:
        if index in indices:
            return Use(Role.SHAPE, detail=f"{node.op_type} input {index}")
        return Use(Role.OTHER, detail=f"{node.op_type} input {index}")

    return handler


#: ``(domain, op_type) -> handler``. An op without a handler makes its operands ineligible, with that said.
USE_HANDLERS: dict[tuple[str, str], UseHandler] = {
    ("", "Conv"): _conv,
    ("", "ConvTranspose"): _conv_transpose,
    ("", "Gemm"): _gemm,
    ("", "MatMul"): _matmul,
    ("com.microsoft", "Attention"): _fused_attention,
    ("", "BatchNormalization"): _norm(1),
    ("", "InstanceNormalization"): _norm(1),
    ("", "LayerNormalization"): _norm(1),
    ("", "GroupNormalization"): _norm(1),
    ("", "RMSNormalization"): _norm(1),
    ("com.microsoft", "SkipLayerNormalization"): _norm(2),
    ("com.microsoft", "SimplifiedLayerNormalization"): _norm(1),
    ("", "Reshape"): _shape_inputs(1),
    ("", "Expand"): _shape_inputs(1),
    ("", "Tile"): _shape_inputs(1),
    ("", "Slice"): _shape_inputs(1, 2, 3, 4),
    ("", "Pad"): _shape_inputs(1, 2, 3),
    ("", "Resize"): _shape_inputs(1, 2, 3),
    ("", "Gather"): _shape_inputs(1),
    ("", "Unsqueeze"): _shape_inputs(1),
    ("", "Squeeze"): _shape_inputs(1),
    ("", "Split"): _shape_inputs(1),
    ("", "ReduceMean"): _shape_inputs(1),
    ("", "ReduceSum"): _shape_inputs(1),
    ("", "ConstantOfShape"): _shape_inputs(0),
}


def _handler(node: ir.Node) -> UseHandler | None:
    domain = "" if node.domain in _DEFAULT_DOMAINS else node.domain
    return USE_HANDLERS.get((domain, node.op_type))


def use_of(node: ir.Node, index: int, rank: int) -> Use:
    """What input ``index`` of ``node`` is, for a constant of the given rank."""
    handler = _handler(node)
    if handler is None:
        return Use(Role.OTHER, detail=f"input {index} of {node.op_type}")
    return handler(node, index, rank)


def _reason_for(use: Use, node: ir.Node) -> str:
    label = node.name or node.op_type
    if use.role is Role.WEIGHT:
        return f"weight of {label}"
    if use.role is Role.OTHER:
        return f"not a linear-layer weight ({use.detail or node.op_type} of {label})"
    return f"{use.role.value} ({use.detail or node.op_type} of {label})"


def classify(ref: WeightRef, *, min_size: int = 0) -> Eligibility:
    """Decide whether a lossy weight pass may rewrite ``ref``, and how to view it as rows.

    Every use is considered (through Identity aliases and into subgraphs): a tensor that is a Conv weight
    for one node and an Add operand for another is left alone, because changing it would change the Add too.

    Args:
        ref: The weight to judge.
        min_size: Tensors with fewer elements are left alone (tiny tensors save nothing and are often
            sensitive: a 1x1 projection, a 3-tap filter).
    """
    if ref.skip_reason:
        return Eligibility(False, ref.skip_reason)
    if ref.dtype not in FLOAT_TYPES:
        return Eligibility(False, f"not a float tensor ({ref.dtype.name.lower()}): shape/index data, not a weight")
    uses = ref.consumers(through_identity=True)
    if not uses:
        return Eligibility(False, "no consumer reads it")
    rank = len(ref.shape)
    verdicts = [(node, use_of(node, index, rank)) for node, index in uses]
    ops = tuple(node.op_type for node, _ in verdicts)
    labels = tuple(node.name or node.op_type for node, _ in verdicts)
    for node, use in verdicts:
        if use.role is not Role.WEIGHT:
            return Eligibility(False, _reason_for(use, node), ops=ops, consumers=labels)
    if ref.size < min_size:
        return Eligibility(False, f"{ref.size} elements, below the minimum size {min_size}", ops=ops,
                           consumers=labels)
    views = {use.view for _, use in verdicts}
    view = views.pop() if len(views) == 1 else None  # shared by ops that disagree on the layout: no rows
    return Eligibility(True, view=view, ops=ops, consumers=labels)


# -- selection shared by the weight passes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An eligible weight, with the verdict that made it so (its view, its consumers)."""

    ref: WeightRef
    eligibility: Eligibility

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def location(self) -> str:
        """Where the tensor is stored, for reports: ``initializer``, ``constant``, ``If_3/then_branch:initializer``."""
        return f"{self.ref.subgraph_path}:{self.ref.storage}" if self.ref.subgraph_path else self.ref.storage


@dataclass
class Selection:
    """Every weight of a model sorted into what a pass may change and what it must leave alone (with why).

    ``marks`` names the first and last weight layer of each graph (``id(ref.value) -> 'first' | 'last'``),
    decided over all weight layers before size and exclude filters, so a tiny first conv that is left
    alone does not promote the second layer to "first".
    """

    candidates: list[Candidate]
    left_alone: list[tuple[WeightRef, str]]
    warnings: list[str]
    marks: dict[int, str]

    def mark(self, candidate: Candidate) -> str | None:
        return self.marks.get(id(candidate.ref.value))


def compile_patterns(patterns: tuple[str, ...] | list[str]) -> list[re.Pattern[str]]:
    """Compile ``--exclude`` regexes, turning a bad one into a one-line input error."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise InputError(f"--exclude {pattern!r} is not a valid regular expression: {exc}") from None
    return compiled


def select_weights(model: ir.Model, *, min_size: int, exclude: tuple[str, ...] | list[str] = ()) -> Selection:
    """Classify every weight of ``model``; apply the minimum size and ``exclude`` regexes to the eligible ones.

    An exclude pattern is searched (``re.search``) in the weight's name and in the names of the nodes that
    read it, so both ``fc1`` and ``/layers.0/attn`` work. A pattern that matches no eligible weight is
    reported as a warning: it is almost always a typo, and silently pruning what the user meant to keep is
    the worst outcome.
    """
    patterns = compile_patterns(exclude)
    matched: set[str] = set()
    layers: list[WeightRef] = []
    candidates: list[Candidate] = []
    left_alone: list[tuple[WeightRef, str]] = []
    for ref in iter_weights(model):
        verdict = classify(ref)
        if not verdict.eligible:
            left_alone.append((ref, verdict.reason or "not eligible"))
            continue
        layers.append(ref)
        if ref.size < min_size:
            left_alone.append((ref, f"{ref.size} elements, below the minimum size {min_size}"))
            continue
        hit = next((p for p in patterns if any(p.search(s) for s in (ref.name, *verdict.consumers))), None)
        if hit is not None:
            matched.add(hit.pattern)
            left_alone.append((ref, f"matches --exclude {hit.pattern!r}"))
            continue
        candidates.append(Candidate(ref, verdict))
    warnings = [f"--exclude {p.pattern!r} matched no eligible weight" for p in patterns if p.pattern not in matched]
    return Selection(candidates, left_alone, warnings, first_and_last(layers))


def _first_consumer(ref: WeightRef, positions: dict[int, dict[int, int]]) -> tuple[int, int] | None:
    """``(graph id, position)`` of the earliest node reading ``ref``, counted within that node's graph."""
    best: tuple[int, int] | None = None
    for node, _ in ref.consumers(through_identity=True):
        graph = node.graph
        if graph is None:
            continue
        index = positions.setdefault(id(graph), {id(n): i for i, n in enumerate(graph)})
        here = (id(graph), index.get(id(node), 0))
        best = here if best is None or here[1] < best[1] else best
    return best


def first_and_last(layers: list[WeightRef]) -> dict[int, str]:
    """``id(ref.value) -> 'first' | 'last'`` for the first and last weight layer of every graph.

    Positions are counted within the graph holding the consumer, so each If branch or Loop body has its
    own first and last layer: a model wrapped in an If is treated exactly like the bare model.
    """
    positions: dict[int, dict[int, int]] = {}
    by_graph: dict[int, list[tuple[int, int]]] = {}
    for ref in layers:
        where = _first_consumer(ref, positions)
        if where is not None:
            by_graph.setdefault(where[0], []).append((where[1], id(ref.value)))
    marks: dict[int, str] = {}
    for entries in by_graph.values():
        entries.sort()
        marks[entries[-1][1]] = "last"
        marks[entries[0][1]] = "first"
    return marks

"""MACs of Conv, ConvTranspose, Gemm and MatMul (and their integer forms) for given input shapes.

Every number is exact or explicitly unknown with a reason: shapes come from ONNX shape inference on a copy of
the model whose inputs are fixed to the given shapes (symbolic batch-like dims default to 1). ``If`` counts its
most expensive branch, ``Loop`` its body times a constant trip count (an upper bound when the condition exits
early), ``Scan`` its body times the scanned length; when that multiplier is unknown the body's MACs are listed
but left out of the total, with a note. Passes use :func:`count_macs` to report MACs before and after.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import onnx
import onnx_ir as ir

from onnxcomp.errors import InputError
from onnxcomp.weights import constant_tensor, node_label, subgraphs_of

__all__ = ["MacCount", "MacEntry", "count_macs", "declared_dims", "model_inputs", "op_label"]

Dim = int | str | None
Dims = tuple[Dim, ...]
# Where a graph sits: (node index, attribute label) per nesting level; () is the main graph.
ScopeKey = tuple[tuple[int, str], ...]

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})
_BATCH_DIM = re.compile(r"batch|^(n|b|bs|bsz)$", re.IGNORECASE)
# Initializers up to this many elements keep their data in the shape-inference copy, so that
# data propagation still sees Reshape shapes; bigger ones travel as typed inputs only.
_SHAPE_DATA_LIMIT = 1024


@dataclass(frozen=True)
class MacEntry:
    """MACs of one node per execution; ``macs`` is ``None`` with a ``reason`` when unknown."""

    name: str
    op: str
    subgraph_path: str
    macs: int | None
    reason: str | None = None


@dataclass
class MacCount:
    """MACs of one inference: the total, each MAC node, and why anything is unknown."""

    total: int
    known: float
    entries: list[MacEntry]
    input_shapes: dict[str, list[Dim] | None]
    notes: list[str] = field(default_factory=list)


def op_label(node: ir.Node) -> str:
    """``op_type`` for the default domain, ``domain::op_type`` otherwise."""
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def declared_dims(shape: ir.Shape | None) -> Dims | None:
    if shape is None:
        return None
    return tuple(d if isinstance(d, int) else d.value for d in shape.dims)


def model_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Graph inputs a user must feed (initializer-backed IR<4 inputs have defaults)."""
    return [v for v in graph.inputs if not v.is_initializer()]


# --------------------------------------------------------------------------- input shapes


def _check_given_shape(name: str, declared: Dims | None, given: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(given)
    if not all(isinstance(d, int | np.integer) and d > 0 for d in dims):
        raise InputError(f"input_shapes[{name!r}] must be positive integers, got {list(given)}")
    if declared is None:
        return tuple(int(d) for d in dims)
    if len(declared) != len(dims):
        raise InputError(f"input {name!r} has rank {len(declared)} but input_shapes gives {list(dims)}")
    for axis, (have, want) in enumerate(zip(declared, dims, strict=True)):
        if isinstance(have, int) and have != want:
            raise InputError(f"input {name!r} dim {axis} is fixed at {have} but input_shapes gives {want}")
    return tuple(int(d) for d in dims)


def _default_dims(name: str, declared: Dims | None, notes: list[str]) -> Dims | None:
    """Fill batch-like symbolic dims with 1; leave others unknown and say so."""
    if declared is None:
        notes.append(f"input {name!r} has no declared shape; pass input_shapes to compute its MACs")
        return None
    filled = tuple(1 if isinstance(d, str) and _BATCH_DIM.search(d) else d for d in declared)
    unresolved = [f"{axis} ({d!r})" for axis, d in enumerate(filled) if not isinstance(d, int)]
    if unresolved:
        notes.append(
            f"input {name!r} dims {', '.join(unresolved)} are unknown; pass input_shapes to resolve them"
        )
    return filled


def _resolve_inputs(
    graph: ir.Graph, input_shapes: Mapping[str, Sequence[int]] | None, notes: list[str]
) -> dict[str, Dims | None]:
    """The dims each model input gets for shape inference, validating ``input_shapes``."""
    given = dict(input_shapes or {})
    inputs = model_inputs(graph)
    unknown = sorted(set(given) - {v.name for v in inputs})
    if unknown:
        names = [v.name for v in inputs]
        raise InputError(f"input_shapes names unknown input(s) {unknown}; the model's inputs are {names}")
    resolved: dict[str, Dims | None] = {}
    for value in inputs:
        name, declared = value.name or "", declared_dims(value.shape)
        if name in given:
            resolved[name] = _check_given_shape(name, declared, given[name])
        else:
            resolved[name] = _default_dims(name, declared, notes)
    return resolved


# --------------------------------------------------------------------------- shape inference


def _value_info(name: str, tensor: ir.TensorProtocol) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, tensor.dtype.value, list(tensor.shape.numpy()))


def _main_graph_proto(graph: ir.Graph) -> onnx.GraphProto:
    """The main graph without its big initializer data, which shape inference does not need."""
    proto = onnx.GraphProto(name=graph.name or "main")
    proto.input.extend(ir.to_proto(v) for v in graph.inputs)
    proto.output.extend(ir.to_proto(v) for v in graph.outputs)
    input_names = {v.name for v in graph.inputs}
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if tensor is None:
            continue
        if tensor.size <= _SHAPE_DATA_LIMIT:
            tensor_proto = ir.to_proto(tensor)
            tensor_proto.name = name
            proto.initializer.append(tensor_proto)
        elif name not in input_names:
            proto.input.append(_value_info(name, tensor))
    proto.node.extend(ir.to_proto(node) for node in graph)
    return proto


def _shape_inference_proto(model: ir.Model, dims: Mapping[str, Dims | None]) -> onnx.ModelProto:
    proto = onnx.ModelProto(ir_version=model.ir_version, graph=_main_graph_proto(model.graph))
    for domain, version in model.opset_imports.items():
        proto.opset_import.append(onnx.helper.make_opsetid(domain, version))
    proto.functions.extend(ir.to_proto(f) for f in model.functions.values())
    for info in proto.graph.input:
        if dims.get(info.name) is not None and info.type.HasField("tensor_type"):
            _set_dims(info.type.tensor_type.shape, dims[info.name])  # type: ignore[arg-type]
    return proto


def _set_dims(shape: onnx.TensorShapeProto, dims: Dims) -> None:
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        elif isinstance(d, str):
            dim.dim_param = d


def _proto_dims(type_proto: onnx.TypeProto) -> Dims | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    return tuple(_proto_dim(d) for d in type_proto.tensor_type.shape.dim)


def _proto_dim(dim: onnx.TensorShapeProto.Dimension) -> Dim:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    return dim.dim_param or None


def _proto_scopes(graph: onnx.GraphProto, key: ScopeKey = ()) -> Iterator[tuple[ScopeKey, onnx.GraphProto]]:
    yield key, graph
    for index, node in enumerate(graph.node):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _proto_scopes(attr.g, (*key, (index, attr.name)))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for k, sub in enumerate(attr.graphs):
                    yield from _proto_scopes(sub, (*key, (index, f"{attr.name}[{k}]")))


def _scope_dims(graph: onnx.GraphProto) -> dict[str, Dims | None]:
    found: dict[str, Dims | None] = {t.name: tuple(int(d) for d in t.dims) for t in graph.initializer}
    for info in (*graph.input, *graph.value_info, *graph.output):
        found[info.name] = _proto_dims(info.type)
    return found


class _ShapeTable:
    """Inferred dims of every value, looked up by name through nested graph scopes."""

    def __init__(self, proto: onnx.ModelProto | None) -> None:
        self._scopes: dict[ScopeKey, dict[str, Dims | None]] = {}
        if proto is not None:
            self._scopes = {key: _scope_dims(g) for key, g in _proto_scopes(proto.graph)}

    def dims(self, name: str, key: ScopeKey) -> Dims | None:
        """Dims of ``name`` as seen from scope ``key`` (inner scopes shadow outer ones)."""
        for depth in range(len(key), -1, -1):
            scope = self._scopes.get(key[:depth], {})
            if name in scope:
                return scope[name]
        return None


def _infer_shapes(
    model: ir.Model, dims: Mapping[str, Dims | None], notes: list[str]
) -> onnx.ModelProto | None:
    try:
        proto = _shape_inference_proto(model, dims)
        return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # any inference failure only makes MACs unknown
        notes.append(f"shape inference failed ({type(exc).__name__}: {exc}); MACs are unknown")
        return None


# --------------------------------------------------------------------------- per-op MACs


class _UnknownMacs(Exception):
    """A node's MACs cannot be computed; the message says why."""


@dataclass(frozen=True)
class _NodeShapes:
    """Static shapes of one node's inputs/outputs, raising :class:`_UnknownMacs` when not static."""

    node: ir.Node
    table: _ShapeTable
    key: ScopeKey

    def input(self, index: int) -> tuple[int, ...]:
        value = self.node.inputs[index] if index < len(self.node.inputs) else None
        return self._static(value, f"input {index}")

    def output(self, index: int) -> tuple[int, ...]:
        return self._static(self.node.outputs[index], f"output {index}")

    def _static(self, value: ir.Value | None, what: str) -> tuple[int, ...]:
        if value is None:
            raise _UnknownMacs(f"{what} is missing")
        dims = self.table.dims(value.name or "", self.key)
        if dims is None:
            raise _UnknownMacs(f"shape of {what} ({value.name!r}) is unknown")
        if not all(isinstance(d, int) for d in dims):
            unknown = [d for d in dims if not isinstance(d, int)]
            raise _UnknownMacs(
                f"{what} ({value.name!r}) has unresolved dims {unknown}; pass input_shapes to fix them"
            )
        return tuple(dims)  # type: ignore[arg-type]


def _conv_macs(node: ir.Node, shapes: _NodeShapes, *, weight: int) -> int:
    """N·Cout·prod(out spatial) · (Cin/group)·prod(kernel) = |Y| · prod(W.shape[1:])."""
    return math.prod(shapes.output(0)) * math.prod(shapes.input(weight)[1:])


def _conv_transpose_macs(node: ir.Node, shapes: _NodeShapes) -> int:
    """N·Cin·prod(in spatial) · (Cout/group)·prod(kernel) = |X| · prod(W.shape[1:])."""
    return math.prod(shapes.input(0)) * math.prod(shapes.input(1)[1:])


def _gemm_macs(node: ir.Node, shapes: _NodeShapes) -> int:
    """M·N·K, reading M/K from A and N from B with their transpose flags."""
    a, b = shapes.input(0), shapes.input(1)
    if len(a) != 2 or len(b) != 2:
        raise _UnknownMacs(f"Gemm needs 2-D inputs, got {list(a)} and {list(b)}")
    m, k = reversed(a) if node.attributes.get_int("transA", 0) else a
    n = b[0] if node.attributes.get_int("transB", 0) else b[1]
    return m * n * k


def _matmul_macs(node: ir.Node, shapes: _NodeShapes, *, a: int = 0, b: int = 1) -> int:
    """prod(broadcast batch dims)·M·N·K with numpy matmul rules for 1-D operands."""
    a_shape, b_shape = shapes.input(a), shapes.input(b)
    if not a_shape or not b_shape:
        raise _UnknownMacs("MatMul operands must not be scalars")
    a_shape = (1, *a_shape) if len(a_shape) == 1 else a_shape
    b_shape = (*b_shape, 1) if len(b_shape) == 1 else b_shape
    try:
        batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
    except ValueError as exc:
        raise _UnknownMacs(f"batch dims {list(a_shape)} and {list(b_shape)} do not broadcast") from exc
    return math.prod(batch) * a_shape[-2] * a_shape[-1] * b_shape[-1]


_MacFn = Callable[[ir.Node, _NodeShapes], int]
_MAC_FUNCS: dict[str, _MacFn] = {
    "Conv": partial(_conv_macs, weight=1),
    "ConvInteger": partial(_conv_macs, weight=1),
    "QLinearConv": partial(_conv_macs, weight=3),
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
    "MatMulInteger": _matmul_macs,
    "QLinearMatMul": partial(_matmul_macs, a=0, b=3),
}


# --------------------------------------------------------------------------- control flow


def _const_int(value: ir.Value | None) -> int | None:
    tensor = constant_tensor(value)
    if tensor is None or tensor.size != 1:
        return None
    return int(np.asarray(tensor.numpy()).reshape(-1)[0])


def _loop_trips(node: ir.Node, shapes: _NodeShapes) -> int:
    trips = _const_int(node.inputs[0] if node.inputs else None)
    if trips is None:
        raise _UnknownMacs("trip count M is not a constant")
    return trips


def _scan_trips(node: ir.Node, shapes: _NodeShapes) -> int:
    """Iterations of an opset>=9 Scan: the first scan input's length along its scan axis."""
    count = node.attributes.get_int("num_scan_inputs", 0)
    if count <= 0:
        raise _UnknownMacs("Scan has no scan inputs")
    first = len(node.inputs) - count
    axes = node.attributes.get_ints("scan_input_axes", [0])
    dims = shapes.input(first)
    if not dims:
        raise _UnknownMacs("the scanned input is a scalar")
    return dims[axes[0] % len(dims)]


# Control-flow ops whose subgraphs run repeatedly: op_type -> how many times per node run.
_TRIP_FUNCS: dict[str, _MacFn] = {"Loop": _loop_trips, "Scan": _scan_trips}


@dataclass
class _MacWalk:
    """Collects per-node MAC entries while totalling one inference's MACs."""

    table: _ShapeTable
    entries: list[MacEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def graph_macs(self, graph: ir.Graph, key: ScopeKey = (), path: str = "") -> int:
        """MACs of one run of ``graph``; every MAC node met is recorded in :attr:`entries`."""
        total = 0
        for index, node in enumerate(graph):
            total += self._node_macs(node, index, key, path)
            total += self._subgraph_macs(node, index, key, path)
        return total

    def _node_macs(self, node: ir.Node, index: int, key: ScopeKey, path: str) -> int:
        fn = _MAC_FUNCS.get(node.op_type) if node.domain in _DEFAULT_DOMAINS else None
        if fn is None:
            return 0
        label = node_label(node, index)
        try:
            macs = fn(node, _NodeShapes(node, self.table, key))
        except _UnknownMacs as exc:
            self.entries.append(MacEntry(label, op_label(node), path, None, str(exc)))
            return 0
        self.entries.append(MacEntry(label, op_label(node), path, macs))
        return macs

    def _subgraph_macs(self, node: ir.Node, index: int, key: ScopeKey, path: str) -> int:
        """MACs a control-flow node adds: the costliest If branch, or body MACs times its trips."""
        subgraphs = subgraphs_of(node)
        if not subgraphs:
            return 0
        label = node_label(node, index)
        totals = [
            self.graph_macs(g, (*key, (index, attr)), f"{path}/{label}/{attr}" if path else f"{label}/{attr}")
            for attr, g in subgraphs
        ]
        if node.op_type == "If" or not any(totals):
            return max(totals)
        return self._repeated(node, key, label, sum(totals))

    def _repeated(self, node: ir.Node, key: ScopeKey, label: str, body: int) -> int:
        trips_fn = _TRIP_FUNCS.get(node.op_type)
        try:
            if trips_fn is None:
                raise _UnknownMacs(f"how often a {op_label(node)} runs its subgraphs is not known")
            return body * trips_fn(node, _NodeShapes(node, self.table, key))
        except _UnknownMacs as exc:
            self.notes.append(f"{label}: {exc}; its subgraphs' {body} MACs per run are not in macs_total")
            return 0


def count_macs(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> MacCount:
    """MACs of one inference of ``model`` at ``input_shapes``; the model is not modified.

    Raises:
        InputError: ``input_shapes`` names an unknown input or contradicts a declared shape.
    """
    notes: list[str] = []
    dims = _resolve_inputs(model.graph, input_shapes, notes)
    walk = _MacWalk(_ShapeTable(_infer_shapes(model, dims, notes)))
    total = walk.graph_macs(model.graph)
    known = sum(e.macs is not None for e in walk.entries)
    return MacCount(
        total=total,
        known=known / len(walk.entries) if walk.entries else 1.0,
        entries=walk.entries,
        input_shapes={k: None if v is None else list(v) for k, v in dims.items()},
        notes=notes + walk.notes,
    )

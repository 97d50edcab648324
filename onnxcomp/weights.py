"""Find every constant tensor of a model, wherever the exporter put it, and replace its data.

Exporters store weights in three places: graph initializers, ``Constant`` nodes (attribute
``value`` or the shorthand ``value_float(s)`` / ``value_int(s)``), and the initializers and
``Constant`` nodes of subgraphs (``If`` branches, ``Loop``/``Scan`` bodies). Passes that prune,
cluster or quantize must treat all of them alike, so they go through :func:`iter_weights`
instead of looking at ``graph.initializers`` only and silently missing the rest.

Limits, by design or inherited from onnx_ir 1.1.0:

* ``sparse_initializer`` entries and ``Constant(sparse_value=...)`` are not seen: onnx_ir drops
  the former and refuses to load the latter, so such models never reach this module intact.
  A ``Constant`` whose only attribute is of a kind we cannot read as a dense tensor (for
  example ``sparse_value`` built in memory) is skipped, never guessed at.
* ``value_string(s)`` constants are not weights (no numeric data) and are skipped.
* Nodes inside model-local functions (``model.functions``) are not walked: a function body
  is shared by every call site, so rewriting its constants is a different operation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx_ir as ir

__all__ = [
    "CONSTANT_TENSOR_ATTRIBUTES",
    "WeightRef",
    "WeightStorage",
    "constant_tensor",
    "dtype_name",
    "iter_graphs",
    "iter_weights",
    "node_label",
    "subgraphs_of",
]

WeightStorage = Literal["initializer", "constant"]

_DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})


def _float_scalar(attr: ir.Attr) -> np.ndarray:
    return np.array(attr.as_float(), dtype=np.float32)


def _float_list(attr: ir.Attr) -> np.ndarray:
    return np.array(attr.as_floats(), dtype=np.float32).reshape(-1)


def _int_scalar(attr: ir.Attr) -> np.ndarray:
    return np.array(attr.as_int(), dtype=np.int64)


def _int_list(attr: ir.Attr) -> np.ndarray:
    return np.array(attr.as_ints(), dtype=np.int64).reshape(-1)


# Shorthand Constant attributes: how to read each as an array, and how to write an array back
# in the same form so that a replaced model keeps the exporter's layout.
_SHORTHAND_READERS: dict[str, Callable[[ir.Attr], np.ndarray]] = {
    "value_float": _float_scalar,
    "value_floats": _float_list,
    "value_int": _int_scalar,
    "value_ints": _int_list,
}
_SHORTHAND_WRITERS: dict[str, Callable[[str, np.ndarray], ir.Attr]] = {
    "value_float": lambda name, a: ir.AttrFloat32(name, float(a)),
    "value_floats": lambda name, a: ir.AttrFloat32s(name, [float(x) for x in a]),
    "value_int": lambda name, a: ir.AttrInt64(name, int(a)),
    "value_ints": lambda name, a: ir.AttrInt64s(name, [int(x) for x in a]),
}

#: ``Constant`` attributes this module reads as a weight tensor.
CONSTANT_TENSOR_ATTRIBUTES: tuple[str, ...] = ("value", *_SHORTHAND_READERS)


def dtype_name(dtype: ir.DataType | None) -> str | None:
    """Name a data type the way numpy users spell it ('float32', 'int8', 'bfloat16').

    ONNX enum names ('FLOAT') are unfamiliar to most users of the report; numpy names are
    what they type elsewhere. Types numpy cannot name fall back to the lower-case ONNX name.
    """
    if dtype is None:
        return None
    if dtype.is_string():
        return "string"
    try:
        return str(dtype.numpy().name)
    except (TypeError, ValueError, NotImplementedError):
        return dtype.name.lower()


def _tensor_nbytes(tensor: ir.TensorProtocol) -> int:
    """Bytes of a tensor's data; string tensors have no fixed item size, so sum their lengths."""
    try:
        return int(tensor.nbytes)
    except TypeError:
        return int(sum(len(s) for s in np.asarray(tensor.numpy()).reshape(-1)))


def node_label(node: ir.Node, index: int) -> str:
    """A readable, stable label for a node: its name, or ``OpType[index]`` when unnamed.

    Unnamed nodes are common in hand-written and older models; the position in the owning
    graph keeps labels distinct without inventing names that might collide with real ones.
    """
    return node.name or f"{node.op_type}[{index}]"


def subgraphs_of(node: ir.Node) -> list[tuple[str, ir.Graph]]:
    """The subgraphs held in a node's attributes, each with its attribute label.

    ``GRAPHS`` attributes get an index suffix (``branches[1]``) so every label is unique.
    Reference attributes (inside functions) carry no graph and are skipped.
    """
    found: list[tuple[str, ir.Graph]] = []
    for attr in node.attributes.values():
        if not isinstance(attr, ir.Attr):
            continue
        if attr.type == ir.AttributeType.GRAPH:
            found.append((attr.name, attr.as_graph()))
        elif attr.type == ir.AttributeType.GRAPHS:
            found.extend((f"{attr.name}[{k}]", g) for k, g in enumerate(attr.as_graphs()))
    return found


def _join_path(parent: str, child: str) -> str:
    return f"{parent}/{child}" if parent else child


def iter_graphs(graph: ir.Graph, path: str = "") -> Iterator[tuple[ir.Graph, str]]:
    """Yield ``graph`` and all its nested subgraphs depth-first, each with its path.

    ``RecursiveGraphIterator`` yields nodes but not where they live; passes and reports need
    the location (``'If_3/then_branch'``) to explain what they touched, so we walk ourselves.

    Args:
        graph: The graph to start from (usually ``model.graph``).
        path: The path of ``graph`` itself; ``''`` for the main graph.
    """
    yield graph, path
    for index, node in enumerate(graph):
        for label, subgraph in subgraphs_of(node):
            yield from iter_graphs(subgraph, _join_path(path, f"{node_label(node, index)}/{label}"))


@dataclass(eq=False)
class WeightRef:
    """One constant tensor of the model, wherever it is stored.

    A ref points into the live ``ir.Model``; reading is lazy (external or proto-backed data is
    not loaded until :attr:`tensor`'s data is used) and :meth:`replace` writes through.

    Attributes:
        name: Name of the ``ir.Value`` consumers read.
        value: The value consumers read (initializer value, or the Constant node's output).
        storage: ``'initializer'`` or ``'constant'`` (a ``Constant`` node).
        graph: The graph (main or subgraph) that holds the weight.
        node: The ``Constant`` node when ``storage == 'constant'``, else ``None``.
        subgraph_path: ``''`` in the main graph, else e.g. ``'If_3/then_branch'``.
        overridable: The initializer is also a graph input (IR < 4 style), so a user may feed
            a different tensor at run time; passes should skip it and say so.
        attribute: For constants, which attribute holds the data (``'value'``,
            ``'value_floats'``, ...); ``None`` for initializers.
    """

    name: str
    value: ir.Value
    storage: WeightStorage
    graph: ir.Graph
    node: ir.Node | None = None
    subgraph_path: str = ""
    overridable: bool = False
    attribute: str | None = None

    @property
    def in_subgraph(self) -> bool:
        """Whether the weight lives in a subgraph rather than the main graph."""
        return bool(self.subgraph_path)

    @property
    def skip_reason(self) -> str | None:
        """Why a pass that rewrites weights should leave this one alone, or ``None``."""
        if self.overridable:
            return (
                f"weight {self.name!r} is also a graph input (IR<4 style), so its data is only "
                "a default the user may override at run time"
            )
        return None

    @property
    def tensor(self) -> ir.TensorProtocol:
        """The stored tensor. Cheap: metadata only until the data itself is read."""
        if self.storage == "initializer":
            tensor = self.value.const_value
            if tensor is None:  # iter_weights never yields these; guard against later edits
                raise ValueError(f"initializer {self.name!r} has no data")
            return tensor
        attr = self._constant_attr()
        if self.attribute == "value":
            return attr.as_tensor()
        return ir.tensor(_SHORTHAND_READERS[self.attribute](attr), name=self.name)  # type: ignore[index]

    @property
    def dtype(self) -> ir.DataType:
        """ONNX data type of the stored tensor."""
        return self.tensor.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """Static shape of the stored tensor (tensors always have concrete dims)."""
        return tuple(int(d) for d in self.tensor.shape.numpy())

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of data as stored (packed types such as int4 count half a byte per element)."""
        return _tensor_nbytes(self.tensor)

    def numpy(self) -> np.ndarray:
        """The data as a numpy array (loads it)."""
        return np.asarray(self.tensor.numpy())

    def consumers(self, *, through_identity: bool = False) -> list[tuple[ir.Node, int]]:
        """``(node, input_index)`` for every use, including subgraph nodes capturing it by name.

        onnx_ir binds an outer-scope name used inside a subgraph to the same ``ir.Value``,
        so the value's use list already covers captures at any depth.

        Args:
            through_identity: Report the users behind ``Identity`` nodes instead of the
                ``Identity`` itself. Exporters alias deduplicated weights this way (PyTorch
                writes ``Identity(layer3.bn2.bias) -> layer3.shortcut.1.bias``), so a pass asking
                "what reads this weight" usually wants the real consumers.
        """
        found: list[tuple[ir.Node, int]] = []
        pending = [self.value]
        while pending:
            for use in pending.pop().uses():
                if through_identity and _is_identity(use.node):
                    pending.append(use.node.outputs[0])
                else:
                    found.append((use.node, use.idx))
        return found

    def replace(self, array: np.ndarray) -> None:
        """Store new data in place, keeping the name, dtype, shape and storage kind.

        Passes change numbers, not structure: a different dtype or shape would invalidate the
        consumers, so it is refused here rather than discovered by onnxruntime later.

        Args:
            array: The new data, same dtype and shape as :attr:`tensor`. It is copied, so the
                caller may keep mutating its array.

        Raises:
            ValueError: The dtype or shape differs.
        """
        array = self._checked(array)
        if self.storage == "initializer":
            self.value.const_value = self._new_tensor(array)
            return
        self._replace_constant(array)

    def _checked(self, array: np.ndarray) -> np.ndarray:
        array = np.array(array, copy=True)
        old = self.tensor
        try:
            new_dtype = ir.DataType.from_numpy(array.dtype)
        except TypeError as exc:
            raise ValueError(f"weight {self.name!r}: unsupported numpy dtype {array.dtype}") from exc
        if new_dtype != old.dtype:
            raise ValueError(
                f"weight {self.name!r} is {dtype_name(old.dtype)}, replacement is {dtype_name(new_dtype)}"
            )
        if tuple(array.shape) != self.shape:
            raise ValueError(
                f"weight {self.name!r} has shape {list(self.shape)}, replacement has {list(array.shape)}"
            )
        return array

    def _new_tensor(self, array: np.ndarray) -> ir.Tensor:
        old = self.tensor
        tensor = ir.Tensor(array, name=self.name, doc_string=old.doc_string)
        tensor.metadata_props.update(old.metadata_props)
        return tensor

    def _replace_constant(self, array: np.ndarray) -> None:
        node = self.node
        assert node is not None and self.attribute is not None
        if self.attribute == "value":
            tensor = self._new_tensor(array)
            node.attributes["value"] = ir.AttrTensor("value", tensor)
            if self.value.const_value is not None:  # keep folding passes' cache consistent
                self.value.const_value = tensor
            return
        node.attributes[self.attribute] = _SHORTHAND_WRITERS[self.attribute](self.attribute, array)
        if self.value.const_value is not None:
            self.value.const_value = ir.tensor(array, name=self.name)

    def _constant_attr(self) -> ir.Attr:
        assert self.node is not None and self.attribute is not None
        return self.node.attributes[self.attribute]  # type: ignore[return-value]


def _initializer_refs(graph: ir.Graph, path: str) -> Iterator[WeightRef]:
    for name, value in graph.initializers.items():
        if value.const_value is None:  # declared but without data: nothing to read or replace
            continue
        yield WeightRef(
            name=name,
            value=value,
            storage="initializer",
            graph=graph,
            subgraph_path=path,
            overridable=value.is_graph_input(),
        )


def _constant_attribute(node: ir.Node) -> str | None:
    """The attribute of a ``Constant`` node that holds a dense numeric tensor, if any."""
    for name in CONSTANT_TENSOR_ATTRIBUTES:
        attr = node.attributes.get(name)
        if isinstance(attr, ir.Attr):
            return name
    return None


def _is_identity(node: ir.Node) -> bool:
    return node.op_type == "Identity" and node.domain in _DEFAULT_DOMAINS and len(node.outputs) == 1


def _is_constant_node(node: ir.Node) -> bool:
    return node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and len(node.outputs) == 1


def _constant_refs(graph: ir.Graph, path: str) -> Iterator[WeightRef]:
    for node in graph:
        if not _is_constant_node(node):
            continue
        attribute = _constant_attribute(node)
        if attribute is None:
            continue
        output = node.outputs[0]
        yield WeightRef(
            name=output.name or "",
            value=output,
            storage="constant",
            graph=graph,
            node=node,
            subgraph_path=path,
            attribute=attribute,
        )


def iter_weights(model: ir.Model, *, include_subgraphs: bool = True) -> Iterator[WeightRef]:
    """Yield every constant tensor of ``model`` exactly once.

    Order: for each graph (main first, then subgraphs depth-first), its initializers, then its
    ``Constant`` nodes in node order. A weight shared by several consumers is one ``ir.Value``
    and is yielded once; see :meth:`WeightRef.consumers` for its users.

    Args:
        model: The model to scan. It is not modified.
        include_subgraphs: Also scan ``If``/``Loop``/``Scan`` (and any other) subgraphs.

    Yields:
        One :class:`WeightRef` per stored tensor.
    """
    graphs = iter_graphs(model.graph) if include_subgraphs else iter([(model.graph, "")])
    seen: set[int] = set()
    for graph, path in graphs:
        for ref in itertools.chain(_initializer_refs(graph, path), _constant_refs(graph, path)):
            if id(ref.value) in seen:
                continue
            seen.add(id(ref.value))
            yield ref


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """The constant tensor behind ``value``: initializer data or its ``Constant`` node's tensor.

    Passes and reports need small constants (Loop trip counts, shapes, axes) whichever way the
    exporter stored them; this reads both without loading anything else.

    Returns:
        The tensor, or ``None`` when ``value`` is not a known constant.
    """
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value
    node = value.producer()
    if node is None or not _is_constant_node(node):
        return None
    attribute = _constant_attribute(node)
    if attribute is None:
        return None
    attr = node.attributes[attribute]
    assert isinstance(attr, ir.Attr)
    if attribute == "value":
        return attr.as_tensor()
    return ir.tensor(_SHORTHAND_READERS[attribute](attr), name=value.name)

"""What ``onnxcomp inspect`` reports: structure, weights, sparsity and MACs of a model.

The report is what a user compares before and after compression, so every number is either
exact or explicitly unknown (with a reason); nothing is estimated.

Decisions worth knowing:

* **Weights** are every stored constant tensor (see :mod:`onnxcomp.weights`): initializers,
  ``Constant`` nodes and both kinds inside subgraphs. All of them count in ``bytes`` and
  ``elements``.
* **Parameters** leave out *auxiliary* tensors: rank-0 scalars (epsilons, exponents) and int64
  tensors of rank ≤ 1 (Reshape shapes, axes, indices). Exporters differ in how many of those
  they emit, while architecture math (``in·out + out`` per layer) never counts them. The same
  auxiliary tensors are left out of the per-tensor list and of sparsity.
* **Sparsity** is the fraction of exact zeros among elements of floating-point parameter
  tensors; integer (quantized) tensors have no meaningful "zero" and are reported as ``None``.
* **MACs** are counted by :mod:`onnxcomp.macs` (exact, or unknown with a reason).
* Function bodies (``model.functions``) are not walked: their call nodes are counted as ops.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir

from onnxcomp.macs import Dim, MacEntry, count_macs, declared_dims, model_inputs, op_label
from onnxcomp.weights import WeightRef, dtype_name, iter_weights

__all__ = [
    "IOInfo",
    "MacEntry",
    "ModelSummary",
    "SparsityStats",
    "TensorEntry",
    "WeightStats",
    "op_label",
    "render_text",
    "summarize",
]


STORAGE_BUCKETS = ("initializer", "constant", "subgraph")


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class IOInfo:
    """A graph input or output: ``shape`` is ``None`` when even the rank is unknown."""

    name: str
    dtype: str | None
    shape: list[Dim] | None


@dataclass
class WeightStats:
    """Counts for a group of weight tensors (all, one dtype, or one storage bucket).

    ``elements`` counts every element, ``params`` only those of non-auxiliary tensors.
    """

    tensors: int = 0
    param_tensors: int = 0
    elements: int = 0
    params: int = 0
    bytes: int = 0

    def add(self, entry: TensorEntry) -> None:
        """Account for one tensor."""
        self.tensors += 1
        self.elements += entry.elements
        self.bytes += entry.bytes
        if not entry.auxiliary:
            self.param_tensors += 1
            self.params += entry.elements


@dataclass(frozen=True)
class TensorEntry:
    """One weight tensor as reported (``zeros`` is ``None`` for non-float tensors)."""

    name: str
    storage: str
    subgraph_path: str
    consumers: list[str]
    shape: list[int]
    dtype: str | None
    elements: int
    bytes: int
    zeros: int | None
    zeros_fraction: float | None
    overridable: bool
    auxiliary: bool


@dataclass(frozen=True)
class SparsityStats:
    """Exact zeros among floating-point parameter elements (``fraction`` ``None`` if none)."""

    float_params: int
    zeros: int
    fraction: float | None


@dataclass
class ModelSummary:
    """Everything ``onnxcomp inspect`` reports; :meth:`to_dict` is the JSON form."""

    ir_version: int
    producer_name: str
    producer_version: str
    opset_imports: dict[str, int]
    default_opset: int | None
    inputs: list[IOInfo]
    outputs: list[IOInfo]
    nodes_main: int
    nodes_total: int
    op_histogram: dict[str, int]
    weights: WeightStats
    weights_by_dtype: dict[str, WeightStats]
    weights_by_storage: dict[str, WeightStats]
    overridable_weights: list[str]
    sparsity: SparsityStats
    tensors: list[TensorEntry]
    macs_total: int
    macs_known: float
    macs: list[MacEntry]
    macs_input_shapes: dict[str, list[Dim] | None]
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        """Parameter count (auxiliary tensors excluded)."""
        return self.weights.params

    def to_dict(self) -> dict[str, Any]:
        """Plain ints, floats, strings, lists and dicts only, ready for ``json.dumps``."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


# --------------------------------------------------------------------------- structure


def _io_info(value: ir.Value) -> IOInfo:
    dims = declared_dims(value.shape)
    return IOInfo(value.name or "", dtype_name(value.dtype), None if dims is None else list(dims))


def _opsets(model: ir.Model) -> dict[str, int]:
    return {("ai.onnx" if d == "" else d): v for d, v in sorted(model.opset_imports.items())}


def _op_histogram(graph: ir.Graph) -> dict[str, int]:
    counts = Counter(op_label(node) for node in graph.all_nodes())
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --------------------------------------------------------------------------- weights


def _is_auxiliary(shape: tuple[int, ...], dtype: ir.DataType) -> bool:
    return len(shape) == 0 or (dtype == ir.DataType.INT64 and len(shape) <= 1)


def _count_zeros(ref: WeightRef) -> int | None:
    if not ref.dtype.is_floating_point():
        return None
    try:
        return int(np.count_nonzero(ref.numpy() == 0))
    except (TypeError, ValueError):  # exotic packed float types numpy cannot compare
        return None


def _tensor_entry(ref: WeightRef) -> TensorEntry:
    shape, dtype = ref.shape, ref.dtype
    elements = math.prod(shape)
    auxiliary = _is_auxiliary(shape, dtype)
    zeros = None if auxiliary else _count_zeros(ref)
    return TensorEntry(
        name=ref.name,
        storage=ref.storage,
        subgraph_path=ref.subgraph_path,
        consumers=sorted({op_label(node) for node, _ in ref.consumers(through_identity=True)}),
        shape=list(shape),
        dtype=dtype_name(dtype),
        elements=elements,
        bytes=ref.nbytes,
        zeros=zeros,
        zeros_fraction=None if zeros is None or elements == 0 else zeros / elements,
        overridable=ref.overridable,
        auxiliary=auxiliary,
    )


@dataclass
class _WeightReport:
    total: WeightStats
    by_dtype: dict[str, WeightStats]
    by_storage: dict[str, WeightStats]
    entries: list[TensorEntry]
    sparsity: SparsityStats


def _weight_report(model: ir.Model) -> _WeightReport:
    total = WeightStats()
    by_dtype: dict[str, WeightStats] = {}
    by_storage = {bucket: WeightStats() for bucket in STORAGE_BUCKETS}
    entries: list[TensorEntry] = []
    for ref in iter_weights(model):
        entry = _tensor_entry(ref)
        total.add(entry)
        by_dtype.setdefault(entry.dtype or "unknown", WeightStats()).add(entry)
        by_storage["subgraph" if ref.in_subgraph else ref.storage].add(entry)
        entries.append(entry)
    return _WeightReport(total, by_dtype, by_storage, entries, _sparsity(entries))


def _sparsity(entries: Sequence[TensorEntry]) -> SparsityStats:
    counted = [e for e in entries if e.zeros is not None]
    float_params = sum(e.elements for e in counted)
    zeros = sum(e.zeros or 0 for e in counted)
    return SparsityStats(float_params, zeros, zeros / float_params if float_params else None)


# --------------------------------------------------------------------------- entry points


def summarize(model: ir.Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> ModelSummary:
    """Describe ``model`` for ``onnxcomp inspect``; the model is not modified.

    Args:
        model: The model to describe.
        input_shapes: Concrete shape per model input, used for MACs. Inputs left out keep their
            declared dims, with batch-like symbolic dims set to 1.

    Returns:
        The summary; see the module docstring for what is counted how.

    Raises:
        InputError: ``input_shapes`` names an unknown input or contradicts a declared shape.
    """
    graph = model.graph
    macs = count_macs(model, input_shapes)
    weights = _weight_report(model)
    return ModelSummary(
        ir_version=model.ir_version,
        producer_name=model.producer_name or "",
        producer_version=model.producer_version or "",
        opset_imports=_opsets(model),
        default_opset=model.opset_imports.get("", model.opset_imports.get("ai.onnx")),
        inputs=[_io_info(v) for v in model_inputs(graph)],
        outputs=[_io_info(v) for v in graph.outputs],
        nodes_main=len(graph),
        nodes_total=sum(1 for _ in graph.all_nodes()),
        op_histogram=_op_histogram(graph),
        weights=weights.total,
        weights_by_dtype=weights.by_dtype,
        weights_by_storage=weights.by_storage,
        overridable_weights=[e.name for e in weights.entries if e.overridable],
        sparsity=weights.sparsity,
        tensors=[e for e in weights.entries if not e.auxiliary],
        macs_total=macs.total,
        macs_known=macs.known,
        macs=macs.entries,
        macs_input_shapes=macs.input_shapes,
        notes=macs.notes,
    )


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exponent = min(int(math.log(n, 1024)), 3)
    return f"{n / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB')[exponent - 1]}"


def _fmt_shape(shape: Sequence[Dim] | None) -> str:
    return "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _header_lines(s: ModelSummary) -> list[str]:
    opsets = ", ".join(f"{d} {v}" for d, v in s.opset_imports.items())
    producer = f"{s.producer_name} {s.producer_version}".strip() or "unknown"
    lines = [f"model: IR {s.ir_version}, opsets {opsets or 'none'}, producer {producer}"]
    lines += [f"input  {io.name}: {io.dtype} {_fmt_shape(io.shape)}" for io in s.inputs]
    lines += [f"output {io.name}: {io.dtype} {_fmt_shape(io.shape)}" for io in s.outputs]
    lines.append(f"nodes: {s.nodes_main} in main graph, {s.nodes_total} in total")
    ops = ", ".join(f"{op} {n}" for op, n in s.op_histogram.items())
    lines.append(f"ops: {ops or 'none'}")
    return lines


def _weight_lines(s: ModelSummary) -> list[str]:
    w = s.weights
    lines = [f"weights: {_fmt_int(w.params)} params, {_fmt_bytes(w.bytes)} in {w.tensors} tensors"]
    lines += [
        f"  {dtype:<10} {st.tensors:>5} tensors {_fmt_int(st.params):>14} params {_fmt_bytes(st.bytes):>11}"
        for dtype, st in sorted(s.weights_by_dtype.items(), key=lambda kv: -kv[1].bytes)
    ]
    storage = ", ".join(
        f"{k} {st.tensors} ({_fmt_bytes(st.bytes)})" for k, st in s.weights_by_storage.items()
    )
    lines.append(f"  stored as: {storage}")
    if s.overridable_weights:
        lines.append(f"  overridable (also graph inputs): {len(s.overridable_weights)}")
    frac = s.sparsity.fraction
    lines.append("sparsity: n/a" if frac is None else f"sparsity: {frac:.2%} zeros in float params")
    return lines


def _largest_lines(s: ModelSummary, top: int = 10) -> list[str]:
    largest = sorted(s.tensors, key=lambda e: (-e.bytes, e.name))[:top]
    if not largest:
        return []
    lines = [f"largest {len(largest)} weight tensors:"]
    for e in largest:
        zeros = "-" if e.zeros_fraction is None else f"{e.zeros_fraction:.1%}"
        used_by = ",".join(e.consumers) or "-"
        lines.append(
            f"  {e.name[:40]:<40} {_fmt_shape(e.shape):<18} {e.dtype or '?':<8} "
            f"{_fmt_bytes(e.bytes):>10} zeros {zeros:>6}  {used_by}"
        )
    return lines


def _macs_lines(s: ModelSummary) -> list[str]:
    shapes = ", ".join(f"{k}={_fmt_shape(v)}" for k, v in s.macs_input_shapes.items())
    known = sum(e.macs is not None for e in s.macs)
    lines = [f"MACs: {_fmt_int(s.macs_total)} ({known}/{len(s.macs)} nodes known) at {shapes or 'no inputs'}"]
    lines += [f"note: {n}" for n in s.notes]
    return lines


def render_text(summary: ModelSummary) -> str:
    """A compact human report of ``summary`` (the CLI prints it to stderr)."""
    parts = (_header_lines, _weight_lines, _largest_lines, _macs_lines)
    return "\n".join(line for part in parts for line in part(summary)) + "\n"

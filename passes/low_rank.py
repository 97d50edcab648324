"""Low-rank factorization: a linear layer's weight replaced by two thinner factors from a truncated SVD.

A weight W (K×N) of rank-r quality costs K·N multiply-adds per row; its factors U_r√S (K×r) and √S V_r (r×N)
cost r·(K+N), less whenever r < K·N / (K+N). Trained layers often hold most of their energy (the sum of squared
singular values) in few directions, so a small r keeps the output close, and distillation
(:mod:`onnxcomp.passes.distill`) can win back the rest.

Per op (a registry, one rewrite per op type):

* ``Gemm`` (constant B, either ``transB``): ``Gemm(A, W1, transA, alpha)`` then ``Gemm(H, W2, C, beta)``;
* ``MatMul`` (constant 2-D right operand, any batch rank on the left): ``MatMul(A, W1)`` then ``MatMul(H, W2)``;
* ``Conv`` (group 1): the weight O×C×k… is the matrix O×(C·k…); the first factor becomes a conv with r
  filters of the original kernel, strides, pads and dilations, the second a 1×1 conv O×r that carries the bias.

The rank is the smallest reaching ``energy`` (fraction of Σσ²) or a fixed ``rank``. A layer is factorized
only when it saves at least ``min_saving`` of its MACs; every layer left alone says why. The report gives per
layer the rank, MACs before/after (per inference at the model's declared shapes, batch 1 where dynamic) and
the relative weight error ‖W − W_r‖/‖W‖ = sqrt(1 − kept energy).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxcomp.passes.distill import DistillConfig

from onnxcomp import io
from onnxcomp.errors import InputError
from onnxcomp.macs import count_macs
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassOutcome, Skipped
from onnxcomp.weight_roles import compile_patterns
from onnxcomp.weights import WeightRef, iter_graphs, iter_weights

__all__ = ["LowRankConfig", "LowRankPass", "choose_rank"]

_FLOATS = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16})


@dataclass
class LowRankConfig:
    """Options of the low-rank pass.

    Attributes:
        energy: Keep the smallest rank whose singular values hold this fraction of Σσ² (ignored with ``rank``).
        rank: A fixed rank for every layer instead (capped at the layer's full rank).
        min_saving: Factorize a layer only when it saves at least this fraction of its MACs.
        min_size: Weights with fewer elements are left alone.
        ops: Op types to consider.
        exclude: Regexes; a weight or node whose name matches one is left alone.
        distill_epochs: Distil the factorized model from the original afterwards (needs data and torch).
        distill: Options of that distillation (its ``epochs`` is replaced by ``distill_epochs``).
    """

    energy: float = 0.9
    rank: int | None = None
    min_saving: float = 0.1
    min_size: int = 1024
    ops: tuple[str, ...] = ("Gemm", "MatMul", "Conv")
    exclude: tuple[str, ...] = ()
    distill_epochs: int = 0
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        self.ops, self.exclude = tuple(self.ops), tuple(self.exclude)
        if not 0.0 < self.energy <= 1.0:
            raise InputError(f"energy must be in (0, 1], got {self.energy}")
        if self.rank is not None and self.rank < 1:
            raise InputError(f"rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.min_saving < 1.0:
            raise InputError(f"min saving must be in [0, 1), got {self.min_saving}")
        if self.distill_epochs < 0:
            raise InputError(f"distill epochs must be >= 0, got {self.distill_epochs}")
        unknown = sorted(set(self.ops) - set(_REWRITES))
        if unknown:
            raise InputError(f"low rank supports {', '.join(_REWRITES)}, not {', '.join(unknown)}")
        compile_patterns(self.exclude)


def choose_rank(singular: np.ndarray, energy: float, rank: int | None) -> int:
    """The rank to keep: fixed, or the smallest whose Σσ² share reaches ``energy``."""
    if rank is not None:
        return min(rank, singular.size)
    squares = singular.astype(np.float64) ** 2
    total = float(squares.sum())
    if total == 0.0:
        return 1
    return int(min(np.searchsorted(np.cumsum(squares) / total, energy - 1e-12) + 1, singular.size))


@dataclass
class _Layer:
    """A candidate: its node, its weight, and the weight as the matrix the SVD sees (outputs × inputs)."""

    node: ir.Node
    ref: WeightRef
    matrix: np.ndarray  # rows: what the first factor's output width replaces (see each rewrite)


# -- per-op views and rewrites ------------------------------------------------------------------------------


def _gemm_matrix(node: ir.Node, weight: np.ndarray) -> np.ndarray | str:
    if weight.ndim != 2:
        return f"Gemm weight has rank {weight.ndim}"
    return weight.T if node.attributes.get_int("transB", 0) else weight  # K × N


def _matmul_matrix(node: ir.Node, weight: np.ndarray) -> np.ndarray | str:
    return weight if weight.ndim == 2 else f"MatMul weight has rank {weight.ndim} (only 2-D is factorized)"


def _conv_matrix(node: ir.Node, weight: np.ndarray) -> np.ndarray | str:
    if node.attributes.get_int("group", 1) != 1:
        return "grouped/depthwise conv (its filters are already thin)"
    return weight.reshape(weight.shape[0], -1).T  # (C·k) × O, so it reads like a Gemm's K × N


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def _gemm_nodes(layer: _Layer, a: ir.Value, first: ir.Value, second: ir.Value) -> list[ir.Node]:
    node = layer.node
    attrs: dict[str, Any] = {"transA": node.attributes.get_int("transA", 0),
                             "alpha": node.attributes.get_float("alpha", 1.0)}
    head = ir.node("Gemm", [a, first], attrs, name=f"{node.name}_lowrank_a")
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    tail_attrs = {"beta": node.attributes.get_float("beta", 1.0)} if bias is not None else {}
    tail = ir.node("Gemm", [head.outputs[0], second, *([bias] if bias is not None else [])], tail_attrs,
                   name=f"{node.name}_lowrank_b")
    return [head, tail]


def _matmul_nodes(layer: _Layer, a: ir.Value, first: ir.Value, second: ir.Value) -> list[ir.Node]:
    head = ir.node("MatMul", [a, first], name=f"{layer.node.name}_lowrank_a")
    return [head, ir.node("MatMul", [head.outputs[0], second], name=f"{layer.node.name}_lowrank_b")]


def _conv_nodes(layer: _Layer, a: ir.Value, first: ir.Value, second: ir.Value) -> list[ir.Node]:
    node = layer.node
    kept = {name: attr for name, attr in node.attributes.items() if name != "group"}
    head = ir.Node("", "Conv", [a, first], kept.values(), name=f"{node.name}_lowrank_a")
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    tail = ir.node("Conv", [head.outputs[0], second, *([bias] if bias is not None else [])],
                   name=f"{node.name}_lowrank_b")
    return [head, tail]


def _conv_factors(layer: _Layer, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C·k)×r and r×O matrices back to conv weights r×C×k… and O×r×1…."""
    shape = layer.ref.shape
    spatial = len(shape) - 2
    return first.T.reshape(-1, *shape[1:]), second.T.reshape(shape[0], -1, *([1] * spatial))


@dataclass(frozen=True)
class _Rewrite:
    matrix: Callable[[ir.Node, np.ndarray], np.ndarray | str]
    nodes: Callable[[_Layer, ir.Value, ir.Value, ir.Value], list[ir.Node]]
    factors: Callable[[_Layer, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


_REWRITES: dict[str, _Rewrite] = {
    "Gemm": _Rewrite(_gemm_matrix, _gemm_nodes, lambda layer, a, b: (a, b)),
    "MatMul": _Rewrite(_matmul_matrix, _matmul_nodes, lambda layer, a, b: (a, b)),
    "Conv": _Rewrite(_conv_matrix, _conv_nodes, _conv_factors),
}


# -- the pass ---------------------------------------------------------------------------------------------


class LowRankPass(CompressionPass):
    """Factorize Gemm/MatMul/Conv weights by truncated SVD where it saves MACs (see the module docstring)."""

    name = "lowrank"
    Config = LowRankConfig

    def __init__(self, config: LowRankConfig | None = None, context: PassContext | None = None) -> None:
        super().__init__(config, context)
        self.needs = frozenset({Need.DATA}) if self.config.distill_epochs else frozenset()

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        config: LowRankConfig = self.config
        teacher = io.serialize(model) if config.distill_epochs else None
        macs_before = _node_macs(model)
        layers, skipped = self._candidates(model)
        changed = []
        for layer in layers:
            entry = self._factorize(layer, macs_before.get(layer.node.name))
            if isinstance(entry, str):
                skipped.append(Skipped(layer.node.name, entry))
            else:
                changed.append(entry)
        summary = self._summary(model, changed, macs_before)
        if changed and teacher is not None:
            from onnxcomp.passes.distill import distill

            assert context.data is not None
            options = dataclasses.replace(config.distill, epochs=config.distill_epochs)
            summary["distill"] = distill(model, teacher, context.data, options).to_dict()
            summary["distill"].pop("trained")
        return PassOutcome(modified=bool(changed), changed=changed, skipped=skipped, summary=summary)

    def _candidates(self, model: ir.Model) -> tuple[list[_Layer], list[Skipped]]:
        config: LowRankConfig = self.config
        patterns = compile_patterns(config.exclude)
        refs = {id(ref.value): ref for ref in iter_weights(model)}
        layers, skipped = [], []
        for graph, _ in iter_graphs(model.graph):
            for node in graph:
                if node.op_type not in config.ops or node.domain not in ("", "ai.onnx"):
                    continue
                found = self._layer(node, refs, patterns)
                if isinstance(found, str):
                    skipped.append(Skipped(node.name or node.op_type, found))
                else:
                    layers.append(found)
        return layers, skipped

    def _layer(self, node: ir.Node, refs: dict[int, WeightRef], patterns: list[Any]) -> _Layer | str:
        config: LowRankConfig = self.config
        weight = node.inputs[1] if len(node.inputs) > 1 else None
        ref = refs.get(id(weight)) if weight is not None else None
        if ref is None:
            return "its weight is computed at run time, not a stored tensor"
        if any(p.search(ref.name) or p.search(node.name or "") for p in patterns):
            return "excluded by pattern"
        if ref.dtype not in _FLOATS:
            return f"weight is {ref.dtype.name.lower()}, not float"
        if ref.size < config.min_size:
            return f"weight has {ref.size} elements (< min size {config.min_size})"
        if len(ref.consumers()) != 1 or ref.overridable:
            return "weight is shared with other nodes or is a graph input"
        matrix = _REWRITES[node.op_type].matrix(node, ref.numpy())
        return matrix if isinstance(matrix, str) else _Layer(node, ref, matrix)

    def _factorize(self, layer: _Layer, node_macs: int | None) -> dict[str, Any] | str:
        config: LowRankConfig = self.config
        k, n = layer.matrix.shape
        u, s, vt = np.linalg.svd(layer.matrix.astype(np.float64), full_matrices=False)
        r = choose_rank(s, config.energy, config.rank)
        saving = 1.0 - r * (k + n) / (k * n)
        if saving < config.min_saving:
            return (f"rank {r} of {k}x{n} would save {max(saving, 0.0):.0%} of its MACs "
                    f"(< min saving {config.min_saving:.0%})")
        total = float(np.sum(s**2))
        error = math.sqrt(max(0.0, 1.0 - float(np.sum(s[:r] ** 2)) / total)) if total else 0.0
        root = np.sqrt(s[:r])
        dtype = layer.ref.numpy().dtype
        first, second = _REWRITES[layer.node.op_type].factors(layer, (u[:, :r] * root).astype(dtype),
                                                               (root[:, None] * vt[:r]).astype(dtype))
        self._rewrite(layer, first, second)
        return {"node": layer.node.name, "op": layer.node.op_type, "weight": layer.ref.name,
                "shape": list(layer.ref.shape), "rank": r, "full_rank": int(min(k, n)),
                "energy_kept": float(np.sum(s[:r] ** 2)) / total if total else 1.0, "relative_error": error,
                "macs_before": node_macs, "macs_after": round(node_macs * (1 - saving)) if node_macs else None,
                "mac_saving": saving}

    def _rewrite(self, layer: _Layer, first: np.ndarray, second: np.ndarray) -> None:
        node, graph = layer.node, layer.node.graph
        assert graph is not None
        base = layer.ref.name
        nodes = _REWRITES[node.op_type].nodes(layer, node.inputs[0], _initializer(graph, f"{base}_lowrank_a", first),
                                               _initializer(graph, f"{base}_lowrank_b", second))
        graph.insert_before(node, nodes)
        output = node.outputs[0]
        name = output.name
        ir.convenience.replace_all_uses_with(output, nodes[-1].outputs[0], replace_graph_outputs=True)
        graph.remove(node, safe=True)
        nodes[-1].outputs[0].name = name
        nodes[0].outputs[0].name = f"{name}_lowrank"
        _drop_unused(layer.ref)

    def _summary(self, model: ir.Model, changed: list[dict[str, Any]], before: dict[str, int]) -> dict[str, Any]:
        config: LowRankConfig = self.config
        after = count_macs(model).total
        total_before = sum(before.values())
        return {"mode": "rank" if config.rank is not None else "energy", "layers_factorized": len(changed),
                "macs_before": total_before, "macs_after": after,
                "mac_ratio": after / total_before if total_before else 1.0,
                "max_relative_error": max((e["relative_error"] for e in changed), default=0.0)}


def _node_macs(model: ir.Model) -> dict[str, int]:
    return {entry.name: entry.macs for entry in count_macs(model).entries if entry.macs is not None}


def _drop_unused(ref: WeightRef) -> None:
    """Remove the old weight once nothing reads it (initializer entry or Constant node)."""
    if ref.value.uses() or ref.value.is_graph_output():
        return
    if ref.storage == "constant" and ref.node is not None:
        ref.graph.remove(ref.node, safe=True)
    elif ref.name in ref.graph.initializers and not ref.overridable:
        ref.graph.initializers.pop(ref.name)

"""Static int8 quantization in QDQ form, calibrated by streaming, accuracy-aware and target-aware.

What the pass writes: ``QuantizeLinear -> DequantizeLinear`` pairs around the tensors of the ops where
integer kernels pay (Conv, ConvTranspose, Gemm, MatMul) and the ops that keep those QDQ chains unbroken
(pooling, Add, Concat, Reshape, Transpose, ...), int8 symmetric weights (per output channel where the op
and opset allow an ``axis``), int32 biases with ``scale = input_scale x weight_scale``. onnxruntime's
graph optimizer fuses these patterns into integer kernels (QLinearConv, QLinearMatMul, QGemm, ...).

Choices and why:

* **Activations uint8 on the CPU target, int8 symmetric on CUDA.** onnxruntime's x86 kernels multiply
  unsigned activations by signed weights (U8S8: VPMADDUBSW / VNNI); signed activations take a slower
  path there. GPU int8 kernels (TensorRT) want symmetric int8 with zero point 0. On the CPU target,
  ``auto`` *measures* both (interleaved runs on a calibration batch) when one fp32 run is quick enough
  to time (``auto_measure_max_ms``), and falls back to the rule above otherwise.
* **Speed-aware (opt-in, ``speed_aware``):** on tiny layers the Q/DQ conversions cost more than the
  integer kernel saves. The quantized kernels, cheapest (fewest MACs) first, go back to float in growing
  steps (1, 2, 4, ...); each variant is timed against fp32 and the fastest wins (ties: the one keeping
  more int8). When no variant beats fp32, every kernel stays float: asked for speed, the pass never hands
  back a model slower than the one it got. Weight-only int8 inside If/Loop bodies is skipped then too
  (its DequantizeLinear runs on every call and never fuses). Opt-in because timings differ between machines and runs,
  and a default that made the output depend on machine load would make it unreproducible.
* **Bias correction on by default:** it removes the mean output shift weight rounding causes, per
  channel, from calibration means (cheap); on the calibration split of the fixtures it raised the cosine
  to fp32 on 6 of 7 models and left the 7th within 1e-6.
* **Preparation is part of the pass:** Identity aliases are removed and BatchNormalization is folded into
  the Conv before it (otherwise BN sits between the Conv and its output Q and blocks fusion); a ReLU or a
  Clip(0, x) right after a quantized op is absorbed into the output quantization (a zero point at the grid's
  bottom does the clamping). An opset below 13 is upgraded (DequantizeLinear's ``axis`` needs 13) and the
  upgrade is verified by running both models on a calibration batch; when that fails weights fall back to
  per-tensor scales, so no node the model's opset does not allow is ever written.
* **Weights in subgraphs** (If/Loop bodies) are quantized weight-only: onnxruntime cannot expose a
  subgraph's intermediate tensors, so their activations cannot be calibrated; the report says so.
* **Accuracy budget:** the quantized model is measured against the float one on the data; when it misses
  the budget, each kernel's sensitivity (the error quantizing it *alone* causes, on the data) ranks them,
  and the fewest most-sensitive ones that meet the budget go back to float, found by a galloping then
  bisecting search over the ranking (:func:`onnxcomp.calibration.fewest_meeting`) rather than one at a time.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx_ir.passes import common

from onnxcomp import io
from onnxcomp.calibration import (
    CalibrationResult,
    Method,
    QuantParams,
    calibrate,
    fewest_meeting,
    quant_params,
    select_range,
)
from onnxcomp.check.latency import measure_latency
from onnxcomp.check.parity import ParityAccumulator, ParityReport, ParityThresholds
from onnxcomp.data import DataSource
from onnxcomp.errors import InputError
from onnxcomp.identity import IdentityEliminationPass
from onnxcomp.macs import count_macs
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassOutcome, Skipped
from onnxcomp.session import create_session, one_line, run_named
from onnxcomp.weights import constant_tensor, iter_graphs, node_label

#: Opset from which DequantizeLinear takes an ``axis`` (per-channel weights).
PER_CHANNEL_OPSET = 13
#: onnxruntime ops that mean "this ran as an integer kernel" in an optimized graph.
INTEGER_KERNELS = frozenset({
    "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm", "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul", "QLinearConvTranspose", "DynamicQuantizeLinear",
})
#: Quantized ops onnxruntime keeps as float ops fed by DequantizeLinear when it did not fuse them.
FLOAT_KERNELS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul"})
_ABSORBABLE = frozenset({"Relu", "Clip"})
_BUDGET_REASON = "returned to float by the accuracy budget"
_SPEED_REASON = "returned to float by --speed-aware: its int8 form did not pay on this machine"


# -- configuration -------------------------------------------------------------------------------------


@dataclass
class QuantizeConfig:
    """Options of the int8 quantization pass.

    Attributes:
        method: How activation ranges are chosen: ``minmax``, ``percentile``, ``entropy`` or ``mse``.
        percentile: For ``percentile``: the share of values kept, in percent.
        per_channel: One weight scale per output channel (else one per tensor).
        activations: ``auto`` (by target), ``uint8`` or ``int8``.
        target: ``cpu`` or ``cuda``: which runtime's integer kernels the format aims at.
        exclude: Regular expression; nodes whose name or op type matches stay float.
        max_drop: Budget: largest allowed drop in top-1 accuracy vs float (with labels), or in top-1
            agreement with the float model (without), as a fraction (0.01 = 1 point).
        min_cosine: Budget: smallest allowed cosine similarity of every output to the float model's.
        min_top1: Budget: smallest allowed top-1 agreement with the float model.
        metric: Budget: a callable scoring a session (higher is better); it may drop by at most
            ``max_drop`` (default 0.01) from the float model's score.
        bias_correction: Shift each output channel's bias by the mean error weight rounding causes.
        speed_aware: Return to float the quantized kernels whose int8 form does not pay (measured), so the
            result is never slower than fp32 on this machine.
        auto_measure_max_ms: ``activations='auto'`` on cpu times uint8 against int8 (when ``measure_target``)
            if one fp32 run of a calibration batch takes at most this long (else the static rule: uint8).
        measure_target: After quantizing, count fused integer kernels and time int8 vs fp32.
        latency_runs: Timed runs per model for that measurement.
        bins: Histogram bins per calibrated tensor.
        progress: Progress line on stderr (when it is a terminal).
    """

    method: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    activations: str = "auto"
    target: str = "cpu"
    exclude: str | None = None
    max_drop: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    metric: Callable[[ort.InferenceSession], float] | None = field(default=None, repr=False)
    bias_correction: bool = True
    speed_aware: bool = False
    auto_measure_max_ms: float = 50.0
    measure_target: bool = True
    latency_runs: int = 30
    bins: int = 4096
    progress: bool = True

    def __post_init__(self) -> None:
        choices = {"method": [m.value for m in Method], "activations": ["auto", "uint8", "int8"],
                   "target": ["cpu", "cuda"]}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"quantize: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.exclude is not None:
            try:
                re.compile(self.exclude)
            except re.error as exc:
                raise InputError(f"quantize: --exclude {self.exclude!r} is not a regular expression ({exc})") from None

    @property
    def has_budget(self) -> bool:
        return any(x is not None for x in (self.max_drop, self.min_cosine, self.min_top1, self.metric))

    def static_activations(self) -> str:
        """The activation type by rule alone (what ``auto`` means when nothing is measured)."""
        return self.activations if self.activations != "auto" else ("uint8" if self.target == "cpu" else "int8")

    def activation_grid(self) -> tuple[ir.DataType, int, int, bool]:
        """(dtype, qmin, qmax, symmetric) of activations for this target."""
        kind = self.static_activations()
        if kind == "uint8":
            return ir.DataType.UINT8, 0, 255, False
        return ir.DataType.INT8, -128, 127, self.target == "cuda"


# -- the op registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    """How one op type takes part in quantization.

    kind: ``kernel`` (activation inputs, weight, bias and output quantized; what integer kernels run),
    ``own`` (all activation inputs must already be quantized; output gets its own calibrated range),
    ``shared`` (data movement: output reuses the input's scale so the chain stays integer).
    """

    kind: str
    weight_axis: Callable[[ir.Node], int | None] | None = None
    bias_input: int | None = None


def _conv_axis(node: ir.Node) -> int | None:
    return 0


def _conv_transpose_axis(node: ir.Node) -> int | None:
    group = node.attributes.get("group")
    return 1 if group is None or group.as_int() == 1 else None  # grouped: out channels are split across groups


def _gemm_axis(node: ir.Node) -> int | None:
    trans = node.attributes.get("transB")
    return 0 if trans is not None and trans.as_int() else 1


def _matmul_axis(node: ir.Node) -> int | None:
    return -1


_ROLES: dict[str, _Role] = {
    "Conv": _Role("kernel", _conv_axis, bias_input=2),
    "ConvTranspose": _Role("kernel", _conv_transpose_axis, bias_input=2),
    "Gemm": _Role("kernel", _gemm_axis, bias_input=2),
    "MatMul": _Role("kernel", _matmul_axis),
    "Add": _Role("own"),
    "Mul": _Role("own"),
    "Concat": _Role("own"),
    "Sigmoid": _Role("own"),
    "GlobalAveragePool": _Role("own"),
    "AveragePool": _Role("own"),
    "MaxPool": _Role("shared"),
    "Reshape": _Role("shared"),
    "Flatten": _Role("shared"),
    "Transpose": _Role("shared"),
    "Squeeze": _Role("shared"),
    "Unsqueeze": _Role("shared"),
    "Resize": _Role("shared"),
}


def _is_float(value: ir.Value | None) -> bool:
    return value is not None and (value.dtype is None or value.dtype == ir.DataType.FLOAT)


def _is_constant(value: ir.Value | None) -> bool:
    return value is not None and constant_tensor(value) is not None


def _activation_inputs(node: ir.Node) -> list[ir.Value]:
    """Float inputs that are computed at run time (what calibration observes)."""
    role = _ROLES[node.op_type]
    count = 2 if role.kind == "kernel" else len(node.inputs)
    if node.op_type in {"Reshape", "Resize", "Squeeze", "Unsqueeze"}:
        count = 1  # shape / sizes / axes inputs are not data
    return [v for v in node.inputs[:count] if v is not None and not _is_constant(v)]


def _labels(graph: ir.Graph) -> dict[ir.Node, str]:
    return {node: node_label(node, index) for index, node in enumerate(graph)}


# -- preparation ---------------------------------------------------------------------------------------


def _clone(model: ir.Model) -> ir.Model:
    return ir.from_proto(ir.to_proto(model))


def _fold_batchnorm(model: ir.Model) -> int:
    """Fold inference-mode BatchNormalization into the Conv that alone feeds it; return how many."""
    folded = 0
    for node in list(model.graph):
        if node.op_type != "BatchNormalization" or len(node.outputs) != 1:
            continue
        conv = node.inputs[0].producer() if node.inputs[0] is not None else None
        params = [constant_tensor(v) for v in node.inputs[1:5]]
        if conv is None or conv.op_type != "Conv" or len(node.inputs[0].uses()) != 1 or None in params:
            continue
        if node.inputs[0] in model.graph.outputs or not _is_constant(conv.inputs[1]):
            continue
        scale, bias, mean, var = (np.asarray(p.numpy(), dtype=np.float64) for p in params)  # type: ignore[union-attr]
        eps = node.attributes["epsilon"].as_float() if "epsilon" in node.attributes else 1e-5
        if not np.all(np.isfinite(var)) or np.any(var + eps <= 0):
            continue  # a non-positive variance has no real scale to fold; leave the BatchNorm as it is
        factor = scale / np.sqrt(var + eps)
        weight = np.asarray(constant_tensor(conv.inputs[1]).numpy(), dtype=np.float64)  # type: ignore[union-attr]
        old_bias = np.zeros(weight.shape[0]) if len(conv.inputs) < 3 or conv.inputs[2] is None else np.asarray(
            constant_tensor(conv.inputs[2]).numpy(), dtype=np.float64)  # type: ignore[union-attr]
        new_weight = (weight * factor.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        new_bias = ((old_bias - mean) * factor + bias).astype(np.float32)
        w_value = _initializer(model.graph, f"{conv.inputs[1].name}_bnfolded", new_weight)
        b_value = _initializer(model.graph, f"{node.name or conv.inputs[1].name}_bnfolded_bias", new_bias)
        conv.replace_input_with(1, w_value)
        if len(conv.inputs) < 3:
            conv.resize_inputs(3)
        conv.replace_input_with(2, b_value)
        ir.convenience.replace_all_uses_with(node.outputs[0], conv.outputs[0])
        model.graph.remove(node, safe=True)
        folded += 1
    return folded


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    taken = set(graph.initializers)
    unique, k = name, 1
    while unique in taken:
        unique, k = f"{name}_{k}", k + 1
    value = ir.Value(name=unique, const_value=ir.tensor(array, name=unique))
    value.dtype = value.const_value.dtype  # type: ignore[union-attr]
    value.shape = ir.Shape(array.shape)
    graph.register_initializer(value)
    return value


def _upgrade_opset(model: ir.Model, data: DataSource) -> tuple[ir.Model | None, str | None]:
    """The model converted to opset 13, verified against the original on one batch; or why not."""
    try:
        converted = onnx.version_converter.convert_version(ir.to_proto(model), PER_CHANNEL_OPSET)
        upgraded = ir.from_proto(converted)
        feed = next(iter(data.feeds()))
        before = run_named(create_session(io.serialize(model)), feed)
        after = run_named(create_session(io.serialize(upgraded)), feed)
    except Exception as exc:
        return None, f"opset upgrade to {PER_CHANNEL_OPSET} failed ({one_line(exc, 120)})"
    for name, ref in before.items():
        if not np.allclose(ref, after.get(name), rtol=1e-4, atol=1e-5):
            return None, f"opset upgrade to {PER_CHANNEL_OPSET} changed output {name!r}"
    return upgraded, None


def _prepare(model: ir.Model, config: QuantizeConfig, data: DataSource) -> tuple[ir.Model, dict[str, Any],
                                                                                   list[Skipped]]:
    """A float copy ready to quantize: aliases gone, BN folded, opset upgraded where that is safe."""
    prepared = _clone(model)
    ir.passes.Sequential(IdentityEliminationPass(), common.RemoveUnusedNodesPass())(prepared)
    facts: dict[str, Any] = {"batchnorm_folded": _fold_batchnorm(prepared)}
    skipped: list[Skipped] = []
    opset = prepared.graph.opset_imports.get("", 1)
    facts["opset_before"] = opset
    if opset < PER_CHANNEL_OPSET and config.per_channel:
        upgraded, reason = _upgrade_opset(prepared, data)
        if upgraded is not None:
            prepared = upgraded
        else:
            skipped.append(Skipped("per-channel weights", f"{reason}; weights use per-tensor scales"))
    facts["opset_after"] = prepared.graph.opset_imports.get("", 1)
    return prepared, facts, skipped


# -- planning: which nodes and tensors ---------------------------------------------------------------------


@dataclass
class _Plan:
    """What one build quantizes: nodes by label, tensors with their range source."""

    nodes: dict[str, ir.Node] = field(default_factory=dict)
    kernels: list[str] = field(default_factory=list)
    #: tensor name -> name of the tensor whose statistics give its range (itself, a ReLU's output, or
    #: for ``shared`` ops the input's)
    range_of: dict[str, str] = field(default_factory=dict)
    absorbed: dict[str, ir.Node] = field(default_factory=dict)  # tensor name -> ReLU/Clip folded into it
    skipped: list[Skipped] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # absorbed ReLU output -> tensor that replaces it


def _absorbable(value: ir.Value, graph: ir.Graph, symmetric: bool) -> ir.Node | None:
    """A sole ReLU / Clip(min 0) consumer whose clamping the output quantization can do instead."""
    uses = value.uses()
    if symmetric or len(uses) != 1 or value in graph.outputs:
        return None
    node = uses[0].node
    if node.op_type not in _ABSORBABLE or node.outputs[0] in graph.outputs:
        return None
    if node.op_type == "Clip":
        low = constant_tensor(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] is not None else None
        attr_min = node.attributes.get("min")
        minimum = float(low.numpy()) if low is not None else (attr_min.as_float() if attr_min else None)
        if minimum != 0.0:
            return None
    return node


def plan_quantization(graph: ir.Graph, config: QuantizeConfig, excluded: Iterable[str] | Mapping[str, str] = (),
                      observed: set[str] | None = None) -> _Plan:
    """Walk the main graph in order and decide what to quantize (see :class:`_Role`).

    Args:
        graph: The prepared float graph.
        config: Options (exclusions, symmetric grids).
        excluded: Node labels kept float (the accuracy loop's list), or labels mapped to why.
        observed: Tensor names with usable statistics; None during the calibration dry run (all usable).
    """
    plan = _Plan()
    pattern = re.compile(config.exclude) if config.exclude else None
    skip = dict(excluded) if isinstance(excluded, Mapping) else dict.fromkeys(excluded, _BUDGET_REASON)
    symmetric = config.activation_grid()[3]
    quantized: set[str] = set()
    for node, label in _labels(graph).items():
        role = _ROLES.get(node.op_type)
        if role is None or node.domain not in ("", "ai.onnx"):
            continue
        usable = None if observed is None else observed | {t for t, src in plan.range_of.items() if src in observed}
        reason = _node_reason(node, label, role, pattern, skip, quantized, usable)
        if reason is not None:
            if role.kind == "kernel":
                plan.skipped.append(Skipped(label, reason))
            continue
        plan.nodes[label] = node
        if role.kind == "kernel":
            plan.kernels.append(label)
        absorbed_outputs = {n.outputs[0].name for n in plan.absorbed.values()}
        for value in _activation_inputs(node):
            if value.name not in absorbed_outputs:  # those are read through the absorbing tensor's DQ
                plan.range_of.setdefault(value.name, value.name)  # type: ignore[arg-type]
            quantized.add(value.name)  # type: ignore[arg-type]
        _plan_outputs(node, role, graph, symmetric, plan, quantized)
    return plan


def _node_reason(node: ir.Node, label: str, role: _Role, pattern: re.Pattern[str] | None, skip: dict[str, str],
                 quantized: set[str], observed: set[str] | None) -> str | None:
    """Why ``node`` stays float in this build, or None."""
    if label in skip:
        return skip[label]
    if pattern is not None and (pattern.search(label) or pattern.fullmatch(node.op_type)):
        return "matches --exclude"
    inputs = _activation_inputs(node)
    if not all(_is_float(v) for v in node.inputs[:2] if v is not None) or not inputs:
        return "inputs are not float activations"
    if observed is not None and any(v.name not in observed for v in inputs):
        return "an input has no usable calibration statistics"
    if role.kind == "kernel":
        weight = node.inputs[1] if len(node.inputs) > 1 else None
        if node.op_type != "MatMul" and not _is_constant(weight):
            return "weight is not a constant"
        if node.op_type == "Gemm" and _gemm_unsupported(node):
            return "Gemm with transA, alpha or beta other than default has no integer kernel"
        return None
    if any(v.name not in quantized for v in inputs):
        return "its inputs are not quantized (it would only add conversions)"
    if role.kind == "shared" and len(node.outputs) != 1:
        return "more than one output"
    return None


def _gemm_unsupported(node: ir.Node) -> bool:
    def attr(name: str, default: float) -> float:
        value = node.attributes.get(name)
        return default if value is None else value.value

    return attr("transA", 0) != 0 or attr("alpha", 1.0) != 1.0 or attr("beta", 1.0) != 1.0


def _plan_outputs(node: ir.Node, role: _Role, graph: ir.Graph, symmetric: bool, plan: _Plan,
                  quantized: set[str]) -> None:
    for output in node.outputs:
        if not _is_float(output) or output.name is None:
            continue
        if role.kind == "shared":
            source = node.inputs[0].name  # type: ignore[union-attr]
            source = plan.aliases.get(source, source)  # type: ignore[arg-type]
            plan.range_of[output.name] = plan.range_of[source]  # type: ignore[index]
        else:
            absorbed = _absorbable(output, graph, symmetric)
            if absorbed is not None:
                plan.absorbed[output.name] = absorbed
                plan.aliases[absorbed.outputs[0].name] = output.name  # type: ignore[index]
                plan.range_of[output.name] = absorbed.outputs[0].name  # type: ignore[assignment]
                quantized.add(absorbed.outputs[0].name)  # type: ignore[arg-type]
            else:
                plan.range_of[output.name] = output.name
        quantized.add(output.name)


# -- emission: writing Q/DQ nodes --------------------------------------------------------------------------


@dataclass
class _Grid:
    """Calibrated activation parameters per tensor and the options of one build."""

    config: QuantizeConfig
    params: dict[str, QuantParams]
    per_channel: bool
    channel_means: dict[str, np.ndarray]


def activation_params(calibration: CalibrationResult, config: QuantizeConfig) -> dict[str, QuantParams]:
    """Scale and zero point of every tensor with usable statistics."""
    _, qmin, qmax, symmetric = config.activation_grid()
    params = {}
    for name, stats in calibration.stats.items():
        if stats.problem is not None and stats.count == 0:
            continue
        rng = select_range(stats, config.method, levels=qmax - qmin + 1, percentile=config.percentile)
        params[name] = quant_params(rng, qmin, qmax, symmetric=symmetric)
    return params


def _scalar(graph: ir.Graph, name: str, value: float | int, dtype: type) -> ir.Value:
    return _initializer(graph, name, np.array(value, dtype=dtype))


def _qdq_activation(graph: ir.Graph, value: ir.Value, params: QuantParams, dtype: ir.DataType) -> ir.Value:
    """Insert Q -> DQ after ``value``; return the DQ output (consumers are rewired by the caller)."""
    np_dtype = dtype.numpy()
    scale = _scalar(graph, f"{value.name}_scale", params.scale, np.float32)
    zero = _scalar(graph, f"{value.name}_zero_point", params.zero_point, np_dtype)
    quant = ir.node("QuantizeLinear", [value, scale, zero], name=f"{value.name}_QuantizeLinear")
    quant.outputs[0].name = f"{value.name}_quantized"
    dequant = ir.node("DequantizeLinear", [quant.outputs[0], scale, zero], name=f"{value.name}_DequantizeLinear")
    dequant.outputs[0].name = f"{value.name}_dequantized"
    dequant.outputs[0].dtype = ir.DataType.FLOAT
    dequant.outputs[0].shape = value.shape
    graph.extend([quant, dequant])
    return dequant.outputs[0]


def _quantize_weight(graph: ir.Graph, weight: ir.Value, axis: int | None,
                     ) -> tuple[ir.Value, np.ndarray, np.ndarray]:
    """int8 symmetric weight + DequantizeLinear; returns (DQ output, per-channel scales, dequantized weight)."""
    array = np.asarray(constant_tensor(weight).numpy(), dtype=np.float32)  # type: ignore[union-attr]
    if axis is not None:
        axis = axis % array.ndim
        reduce = tuple(a for a in range(array.ndim) if a != axis)
        bound = np.abs(array).max(axis=reduce) if reduce else np.abs(array)
    else:
        bound = np.array(np.abs(array).max())
    scales = np.where(bound > 0, bound / 127.0, 1.0).astype(np.float32)
    shaped = scales.reshape([-1 if a == axis else 1 for a in range(array.ndim)]) if axis is not None else scales
    q = np.clip(np.round(array / shaped), -127, 127).astype(np.int8)
    q_value = _initializer(graph, f"{weight.name}_quantized", q)
    s_value = _initializer(graph, f"{weight.name}_scale", scales)
    z_value = _initializer(graph, f"{weight.name}_zero_point", np.zeros(scales.shape, np.int8))
    attrs = {"axis": axis} if axis is not None else {}
    dequant = ir.node("DequantizeLinear", [q_value, s_value, z_value], attrs, name=f"{weight.name}_DequantizeLinear")
    dequant.outputs[0].name = f"{weight.name}_dequantized"
    dequant.outputs[0].dtype = ir.DataType.FLOAT
    graph.append(dequant)
    return dequant.outputs[0], scales, q.astype(np.float32) * shaped


def _quantize_bias(graph: ir.Graph, bias: ir.Value, scales: np.ndarray, shift: np.ndarray | None) -> ir.Value:
    """int32 bias with scale input_scale x weight_scale (per channel), + DequantizeLinear."""
    array = np.asarray(constant_tensor(bias).numpy(), dtype=np.float64)  # type: ignore[union-attr]
    if shift is not None:
        array = array - shift
    scales = np.asarray(scales, dtype=np.float32)
    if scales.size > 1:
        scales = np.broadcast_to(scales, array.shape).astype(np.float32)
    q = np.clip(np.round(array / scales), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    q_value = _initializer(graph, f"{bias.name}_quantized", q)
    s_value = _initializer(graph, f"{bias.name}_scale", scales if scales.size > 1 else scales.reshape(()))
    z_value = _initializer(graph, f"{bias.name}_zero_point", np.zeros(s_value.shape.numpy(), np.int32))
    attrs = {"axis": 0} if scales.size > 1 else {}
    dequant = ir.node("DequantizeLinear", [q_value, s_value, z_value], attrs, name=f"{bias.name}_DequantizeLinear")
    dequant.outputs[0].name = f"{bias.name}_dequantized"
    dequant.outputs[0].dtype = ir.DataType.FLOAT
    graph.append(dequant)
    return dequant.outputs[0]


def _bias_shift(node: ir.Node, delta: np.ndarray, means: np.ndarray | None) -> np.ndarray | None:
    """Expected output error per channel from weight rounding: delta applied to the input's channel means."""
    if means is None:
        return None
    if node.op_type == "Conv":
        groups = node.attributes["group"].as_int() if "group" in node.attributes else 1
        per_group = delta.shape[1]
        if means.size != per_group * groups:
            return None
        out_per_group = delta.shape[0] // groups
        group_means = means.reshape(groups, per_group)[np.arange(delta.shape[0]) // out_per_group]
        spatial = delta.reshape(delta.shape[0], per_group, -1).sum(axis=2)
        return np.einsum("oi,oi->o", spatial, group_means)
    if node.op_type == "Gemm":
        w = delta if _gemm_axis(node) == 0 else delta.T
        return w @ means if w.shape[1] == means.size else None
    return None


def _emit_kernel_weights(graph: ir.Graph, node: ir.Node, role: _Role, grid: _Grid) -> None:
    weight = node.inputs[1]
    if weight is None or not _is_constant(weight):
        return  # MatMul of two activations: both are quantized as activations
    tensor = constant_tensor(weight)
    axis = role.weight_axis(node) if (grid.per_channel and role.weight_axis is not None) else None
    if axis is not None and len(tensor.shape) < 2:  # type: ignore[union-attr]
        axis = None
    dq, scales, dequantized = _quantize_weight(graph, weight, axis)
    node.replace_input_with(1, dq)
    bias = node.inputs[role.bias_input] if role.bias_input is not None and len(node.inputs) > role.bias_input else None
    x = node.inputs[0]
    x_params = grid.params.get(x.name) if x is not None else None  # type: ignore[arg-type]
    if bias is None or x_params is None or not _is_constant(bias) or len(constant_tensor(bias).shape) != 1:  # type: ignore[union-attr]
        return
    shift = None
    if grid.config.bias_correction:
        original = np.asarray(tensor.numpy(), dtype=np.float64)  # type: ignore[union-attr]
        shift = _bias_shift(node, dequantized - original, grid.channel_means.get(x.name))  # type: ignore[union-attr,arg-type]
    node.replace_input_with(role.bias_input, _quantize_bias(graph, bias, x_params.scale * scales, shift))  # type: ignore[arg-type]


def emit(model: ir.Model, plan: _Plan, grid: _Grid) -> None:
    """Rewrite the (prepared, cloned) model in place according to ``plan``."""
    graph = model.graph
    dtype = grid.config.activation_grid()[0]
    quantized_nodes = set(plan.nodes.values())
    for label, node in plan.nodes.items():
        role = _ROLES[node.op_type]
        if role.kind == "kernel":
            _emit_kernel_weights(graph, node, role, grid)
        del label
    for name, source in plan.range_of.items():
        value = _find_value(graph, name)
        params = grid.params.get(source)
        if value is None or params is None:
            continue
        dq = _qdq_activation(graph, value, params, dtype)
        absorbed = plan.absorbed.get(name)
        if absorbed is not None:
            ir.convenience.replace_all_uses_with(absorbed.outputs[0], dq)
            graph.remove(absorbed, safe=True)
        for use in list(value.uses()):
            if use.node in quantized_nodes:
                use.node.replace_input_with(use.idx, dq)
    _finish(model)


def _find_value(graph: ir.Graph, name: str) -> ir.Value | None:
    for value in graph.inputs:
        if value.name == name:
            return value
    for node in graph:
        for value in node.outputs:
            if value.name == name:
                return value
    return None


def _finish(model: ir.Model) -> None:
    ir.passes.Sequential(common.RemoveUnusedNodesPass(), common.TopologicalSortPass())(model)


def quantize_subgraph_weights(model: ir.Model, per_channel: bool) -> list[dict[str, Any]]:
    """Weight-only int8 for kernels inside If/Loop/Scan bodies (their activations cannot be calibrated)."""
    changed = []
    for graph, path in iter_graphs(model.graph):
        if not path:
            continue
        for node, label in _labels(graph).items():
            role = _ROLES.get(node.op_type)
            if role is None or role.kind != "kernel" or len(node.inputs) < 2 or not _is_constant(node.inputs[1]):
                continue
            tensor = constant_tensor(node.inputs[1])
            axis = role.weight_axis(node) if per_channel and role.weight_axis is not None else None
            axis = axis if tensor is not None and len(tensor.shape) >= 2 else None
            dq, _, _ = _quantize_weight(graph, node.inputs[1], axis)
            node.replace_input_with(1, dq)
            changed.append({"node": f"{path}/{label}", "op": node.op_type, "mode": "weight-only",
                            "reason": "activations inside subgraphs cannot be calibrated"})
        _drop_unused_initializers(graph)
        graph.sort()
    return changed


def _drop_unused_initializers(graph: ir.Graph) -> None:
    """Remove a subgraph's initializers nothing reads any more (the float weights just replaced)."""
    for name, value in list(graph.initializers.items()):
        if not value.uses() and value not in graph.outputs:
            del graph.initializers[name]


# -- evaluation --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """How a quantized model compares with the float one on the data."""

    parity: ParityReport
    accuracy_float: float | None
    accuracy_quant: float | None
    metric_float: float | None = None
    metric_quant: float | None = None

    @property
    def top1(self) -> float | None:
        values = [o.metrics.top1 for o in self.parity.outputs if o.metrics is not None and o.metrics.top1 is not None]
        return min(values) if values else None

    @property
    def cosine(self) -> float | None:
        values = [o.metrics.cosine for o in self.parity.outputs if o.metrics is not None]
        return min(values) if values else None

    def meets(self, config: QuantizeConfig) -> bool:
        """Whether every budget in ``config`` holds."""
        checks = []
        if config.min_cosine is not None:
            checks.append(self.cosine is not None and self.cosine >= config.min_cosine)
        if config.min_top1 is not None:
            checks.append(self.top1 is not None and self.top1 >= config.min_top1)
        if config.metric is not None:
            drop = config.max_drop if config.max_drop is not None else 0.01
            checks.append(self.metric_quant is not None and self.metric_quant >= self.metric_float - drop)  # type: ignore[operator]
        elif config.max_drop is not None:
            checks.append(self.drop is not None and self.drop <= config.max_drop + 1e-12)
        return all(checks)

    @property
    def drop(self) -> float | None:
        """Top-1 accuracy drop with labels, else top-1 disagreement with the float model."""
        if self.accuracy_float is not None and self.accuracy_quant is not None:
            return self.accuracy_float - self.accuracy_quant
        return None if self.top1 is None else 1.0 - self.top1

    def to_dict(self) -> dict[str, Any]:
        return {"cosine": self.cosine, "top1_agreement": self.top1, "accuracy_float": self.accuracy_float,
                "accuracy_quant": self.accuracy_quant, "drop": self.drop, "metric_float": self.metric_float,
                "metric_quant": self.metric_quant}


class _Evaluator:
    """Runs candidates against the float model on the data; the float outputs are computed once.

    The per-kernel sensitivity ranking builds one candidate per kernel (a hundred on a detector), so it is
    measured on the first :data:`RANKING_FEEDS` feeds only (``limit``); the budget itself is always judged on
    all of them.
    """

    def __init__(self, reference: ir.Model, data: DataSource, config: QuantizeConfig) -> None:
        self.reference = create_session(io.serialize(reference))
        self.data = data
        self.config = config
        self.metric_float = config.metric(self.reference) if config.metric is not None else None
        self._float_outputs: list[dict[str, np.ndarray]] | None = None

    def _pairs(self, limit: int | None) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
        if self._float_outputs is None:
            self._float_outputs = [run_named(self.reference, batch.feed) for batch in self.data]
        for index, batch in enumerate(self.data):
            if limit is not None and index >= limit:
                return
            yield batch, self._float_outputs[index]

    def evaluate(self, candidate: ir.Model, limit: int | None = None) -> Evaluation:
        session = create_session(io.serialize(candidate))
        acc = ParityAccumulator(ParityThresholds())
        right = {"float": 0, "quant": 0}
        labelled = 0
        for batch, ref in self._pairs(limit):
            cand = run_named(session, batch.feed)
            acc.update(ref, cand)
            if batch.labels is not None:
                first = next(iter(ref))
                right["float"] += int(np.sum(ref[first].argmax(-1).reshape(-1) == batch.labels.reshape(-1)))
                right["quant"] += int(np.sum(cand[first].argmax(-1).reshape(-1) == batch.labels.reshape(-1)))
                labelled += batch.labels.size
        metric_quant = self.config.metric(session) if self.config.metric is not None else None
        return Evaluation(acc.result(), right["float"] / labelled if labelled else None,
                          right["quant"] / labelled if labelled else None, self.metric_float, metric_quant)


#: Feeds the per-kernel sensitivity ranking is measured on (see _Evaluator).
RANKING_FEEDS = 2


def _error(evaluation: Evaluation) -> float:
    """One number for sensitivity ranking: 1 - cosine, plus disagreement (both 0 for a perfect copy)."""
    return (1.0 - (evaluation.cosine or 0.0)) + (1.0 - (evaluation.top1 if evaluation.top1 is not None else 1.0))


# -- target: what onnxruntime made of it ------------------------------------------------------------------


@dataclass
class TargetReport:
    """What onnxruntime's optimizer made of the quantized model, and how fast it runs."""

    quantized_kernels: int
    integer_kernels: int
    float_kernels_left: int
    dequantize_left: int
    optimized_ops: dict[str, int]
    latency_fp32_ms: float | None = None
    latency_int8_ms: float | None = None

    @property
    def fused_fraction(self) -> float | None:
        return min(1.0, self.integer_kernels / self.quantized_kernels) if self.quantized_kernels else None

    @property
    def speedup(self) -> float | None:
        if not self.latency_fp32_ms or not self.latency_int8_ms:
            return None
        return self.latency_fp32_ms / self.latency_int8_ms

    @property
    def slower(self) -> bool:
        return self.speedup is not None and self.speedup < 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"quantized_kernels": self.quantized_kernels, "integer_kernels": self.integer_kernels,
                "fused_fraction": self.fused_fraction, "float_kernels_left": self.float_kernels_left,
                "dequantize_left": self.dequantize_left, "optimized_ops": self.optimized_ops,
                "latency_fp32_ms": self.latency_fp32_ms, "latency_int8_ms": self.latency_int8_ms,
                "speedup": self.speedup, "slower": self.slower}


def optimized_op_counts(model: ir.Model) -> dict[str, int]:
    """Op histogram of the graph onnxruntime actually runs (all optimizations on, CPU)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(path)
        options.log_severity_level = 3
        ort.InferenceSession(io.serialize(model), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(path), load_external_data=False)
    counts: dict[str, int] = {}
    for node in _all_proto_nodes(optimized.graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _all_proto_nodes(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_proto_nodes(attr.g)


def target_report(reference: ir.Model, quantized: ir.Model, kernels: int, data: DataSource | None,
                  runs: int) -> TargetReport:
    """Count fused integer kernels and, with data, time int8 against fp32 (interleaved runs)."""
    counts = optimized_op_counts(quantized)
    report = TargetReport(
        quantized_kernels=kernels,
        integer_kernels=sum(n for op, n in counts.items() if op in INTEGER_KERNELS and op != "DynamicQuantizeLinear"),
        float_kernels_left=sum(n for op, n in counts.items() if op in FLOAT_KERNELS),
        dequantize_left=counts.get("DequantizeLinear", 0),
        optimized_ops=counts,
    )
    if data is not None and runs > 0:
        feed = next(iter(data.feeds()))
        sessions = {"fp32": create_session(io.serialize(reference)), "int8": create_session(io.serialize(quantized))}
        latency = measure_latency(sessions, feed, warmup=5, runs=runs)
        report.latency_fp32_ms = latency.model("fp32").p50_ms
        report.latency_int8_ms = latency.model("int8").p50_ms
    return report


# -- the pass ------------------------------------------------------------------------------------------------


@dataclass
class _Session:
    """Everything one pass run shares between builds."""

    prepared: ir.Model
    grid: _Grid


class QuantizePass(CompressionPass):
    """Static int8 QDQ quantization with streaming calibration, an accuracy budget and a target check."""

    name = "quantize"
    Config = QuantizeConfig
    needs = frozenset({Need.DATA})

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        config: QuantizeConfig = self.config
        data = context.data
        assert data is not None  # guaranteed by needs
        prepared, facts, skipped = _prepare(model, config, data)
        dry = plan_quantization(prepared.graph, config)
        if not dry.kernels and not _has_subgraph_kernels(prepared):
            skipped += dry.skipped or [Skipped("model", "no Conv, ConvTranspose, Gemm or MatMul to quantize")]
            return PassOutcome(False, skipped=skipped, summary={**facts, "quantized_kernels": 0,
                                                                 "note": "nothing quantizable"})
        calibration = self._calibrate(prepared, dry, data, config, context.provider)
        feed = next(iter(data.feeds()))
        shared, choice = _choose_activations(prepared, calibration, config, feed)
        config = shared.grid.config
        observed = set(shared.grid.params)
        excluded, budget = self._fit_budget(model, shared, observed, data)
        reasons = dict.fromkeys(excluded, _BUDGET_REASON)
        speed = None
        if config.speed_aware:
            excluded, speed = _speed_exclusions(model, shared, excluded, observed, feed, config.latency_runs)
            if not speed["int8_pays"]:
                # Even with every kernel back in float the prepared graph was not faster: hand back the
                # original, untouched, rather than a float model that is merely rearranged.
                skipped.append(Skipped("model", "no int8 variant was faster than fp32 on this machine "
                                                "(--speed-aware); the model is left unchanged"))
                return PassOutcome(False, skipped=skipped, summary={**facts, "quantized_kernels": 0,
                                                                     "activation_choice": choice, "speed": speed})
            reasons |= dict.fromkeys(speed["returned"], _SPEED_REASON)
        final, plan = _build(shared, reasons, observed)
        changed = [{"node": label, "op": node.op_type, "mode": "int8"} for label, node in plan.nodes.items()
                   if _ROLES[node.op_type].kind == "kernel"]
        if config.speed_aware:  # weight-only DequantizeLinear runs on every call and never fuses: pure cost
            skipped += [Skipped(f"{path}/{label}", "weight-only int8 in a subgraph only adds a DequantizeLinear per "
                                "call; left float by --speed-aware") for path, label in _subgraph_kernels(final)]
        else:
            changed += quantize_subgraph_weights(final, shared.grid.per_channel)
        skipped += plan.skipped + [Skipped(name, reason) for name, reason in calibration.problems.items()]
        summary = self._summary(facts, calibration, config, plan, budget, excluded)
        summary.update(activation_choice=choice, speed=speed)
        if config.measure_target:
            target = target_report(model, final, len(plan.kernels), data, config.latency_runs)
            summary["target"] = target.to_dict()
            summary["warnings"] = _target_warnings(target)
        _replace_contents(model, final)
        return PassOutcome(True, changed=changed, skipped=skipped, summary=summary)

    @staticmethod
    def _calibrate(prepared: ir.Model, dry: _Plan, data: DataSource, config: QuantizeConfig,
                   provider: str) -> CalibrationResult:
        # Every tensor the full plan touches gets its own statistics, not only the range sources: when the
        # budget returns a node to float, the tensors after it must be quantizable on their own.
        names = set(dry.range_of.values()) | set(dry.range_of)
        axes: dict[str, int] = {}
        if config.bias_correction:
            for node in dry.nodes.values():
                if node.op_type in ("Conv", "Gemm") and node.inputs[0] is not None:
                    axes[node.inputs[0].name] = 1 if node.op_type == "Conv" else -1  # type: ignore[index]
        return calibrate(prepared, sorted(names), data, provider=provider, bins=config.bins, channel_axes=axes,
                         progress=config.progress)

    def _fit_budget(self, reference: ir.Model, shared: _Session, observed: set[str], data: DataSource,
                    ) -> tuple[list[str], dict[str, Any] | None]:
        """Exclusions that meet the budget (none without a budget), and what was measured on the way."""
        config: QuantizeConfig = self.config
        if not config.has_budget:
            return [], None
        evaluator = _Evaluator(reference, data, config)
        full, plan = _build(shared, [], observed)
        first = evaluator.evaluate(full)
        record: dict[str, Any] = {"initial": first.to_dict(), "met": first.meets(config), "ranking": []}
        if record["met"]:
            record["final"] = record["initial"]
            return [], record
        ranking = sorted(((label, _error(evaluator.evaluate(_build(shared, [k for k in plan.kernels if k != label],
                                                                   observed)[0], limit=RANKING_FEEDS)))
                          for label in plan.kernels), key=lambda item: -item[1])
        record["ranking"] = [{"node": label, "error": err} for label, err in ranking]
        tried: dict[int, Evaluation] = {}

        def meets(count: int) -> bool:
            excluded = [label for label, _ in ranking[:count]]
            tried[count] = evaluator.evaluate(_build(shared, excluded, observed)[0])
            return tried[count].meets(config)

        count = fewest_meeting(len(ranking), meets)
        record["tried"] = {str(k): v.to_dict()["cosine"] for k, v in sorted(tried.items())}
        if count is None:
            record.update(met=False, final=None)
            return [label for label, _ in ranking], record
        record.update(met=True, final=tried[count].to_dict())
        return [label for label, _ in ranking[:count]], record

    @staticmethod
    def _summary(facts: dict[str, Any], calibration: CalibrationResult, config: QuantizeConfig, plan: _Plan,
                 budget: dict[str, Any] | None, excluded: list[str]) -> dict[str, Any]:
        dtype = config.activation_grid()[0]
        return {
            **facts,
            "method": config.method,
            "activations": dtype.name.lower(),
            "bias_correction": config.bias_correction,
            "calibration": calibration.to_dict(),
            "quantized_kernels": len(plan.kernels),
            "quantized_nodes": len(plan.nodes),
            "absorbed_activations": len(plan.absorbed),
            "budget": budget,
            "float_nodes": excluded,
        }


def _session_for(prepared: ir.Model, calibration: CalibrationResult, config: QuantizeConfig) -> _Session:
    """Everything builds share, for one activation type (``config.activations`` already resolved)."""
    grid = _Grid(config, activation_params(calibration, config),
                 per_channel=config.per_channel and prepared.graph.opset_imports.get("", 1) >= PER_CHANNEL_OPSET,
                 channel_means={n: m for n, s in calibration.stats.items() if (m := s.channel_means()) is not None})
    return _Session(prepared, grid)


def _p50s(models: dict[str, ir.Model], feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    """p50 latency (ms) of each model on ``feed``, runs interleaved so machine load hits all alike."""
    sessions = {name: create_session(io.serialize(m)) for name, m in models.items()}
    report = measure_latency(sessions, feed, warmup=3, runs=max(runs, 5))
    return {name: report.model(name).p50_ms for name in models}


def _quick_to_time(model: ir.Model, feed: dict[str, np.ndarray], limit_ms: float) -> bool:
    """Whether one run of ``model`` on ``feed`` takes at most ``limit_ms`` (after one warm-up run)."""
    session = create_session(io.serialize(model))
    run_named(session, feed)
    start = time.perf_counter()
    run_named(session, feed)
    return (time.perf_counter() - start) * 1000 <= limit_ms


def _choose_activations(prepared: ir.Model, calibration: CalibrationResult, config: QuantizeConfig,
                        feed: dict[str, np.ndarray]) -> tuple[_Session, dict[str, Any]]:
    """Resolve ``activations='auto'``: measured uint8 vs int8 on cpu when quick to time, else by rule."""
    rule = config.static_activations()
    measurable = (config.activations == "auto" and config.target == "cpu" and config.measure_target
                  and config.latency_runs > 0)
    if not measurable or not _quick_to_time(prepared, feed, config.auto_measure_max_ms):
        why = "given" if config.activations != "auto" else "rule for the target (model too slow to time, or cuda)"
        chosen = dataclasses.replace(config, activations=rule)
        return _session_for(prepared, calibration, chosen), {"chosen": rule, "measured": False, "why": why}
    sessions = {kind: _session_for(prepared, calibration, dataclasses.replace(config, activations=kind))
                for kind in ("uint8", "int8")}
    observed = set(sessions["uint8"].grid.params)
    p50 = _p50s({kind: _build(s, [], observed)[0] for kind, s in sessions.items()}, feed, config.latency_runs)
    # the rule's choice wins unless the other is clearly (3 %) faster: timings on a busy machine wobble
    other = "int8" if rule == "uint8" else "uint8"
    chosen = other if p50[other] < 0.97 * p50[rule] else rule
    return sessions[chosen], {"chosen": chosen, "measured": True, "p50_ms": p50}


def _kernel_macs(model: ir.Model, labels: Iterable[str], feed: dict[str, np.ndarray]) -> dict[str, int]:
    """MACs per quantized kernel (by label) at the feed's shapes; unknown counts as large (kept int8)."""
    try:
        entries = count_macs(model, {k: list(v.shape) for k, v in feed.items()}).entries
    except Exception:  # counting is a heuristic for the order; without it, keep the graph order
        entries = []
    known = {e.name: e.macs for e in entries if not e.subgraph_path and e.macs is not None}
    return {label: known.get(label, 2**62) for label in labels}


_SPEED_MARGIN = 0.97


def _speed_steps(count: int) -> list[int]:
    """How many of the cheapest kernels go back to float in each timed variant: 0, 1, 2, 4, ..., count."""
    steps, k = [0], 1
    while k < count:
        steps.append(k)
        k *= 2
    return [*steps, count] if count else steps


def _speed_exclusions(reference: ir.Model, shared: _Session, excluded: list[str], observed: set[str],
                      feed: dict[str, np.ndarray], runs: int) -> tuple[list[str], dict[str, Any]]:
    """``excluded`` plus the cheapest kernels whose int8 form does not pay (measured against fp32)."""
    plan = _build(shared, excluded, observed)[1]
    macs = _kernel_macs(shared.prepared, plan.kernels, feed)
    cheapest = sorted(plan.kernels, key=lambda label: macs[label])
    steps = _speed_steps(len(cheapest))
    models = {"fp32": reference} | {str(k): _build(shared, excluded + cheapest[:k], observed)[0] for k in steps}
    p50 = _p50s(models, feed, runs)
    # A variant must beat fp32 by a margin larger than timing noise to count as paying.
    faster = [k for k in steps if p50[str(k)] < _SPEED_MARGIN * p50["fp32"]]
    if faster:
        best = min(p50[str(k)] for k in faster)
        chosen = min(k for k in faster if p50[str(k)] <= 1.03 * best)
    else:
        chosen = len(cheapest)
    record = {"p50_ms": p50, "chosen_step": chosen, "returned": cheapest[:chosen],
              "int8_pays": bool(faster)}
    return excluded + cheapest[:chosen], record


def _build(shared: _Session, excluded: list[str] | dict[str, str], observed: set[str]) -> tuple[ir.Model, _Plan]:
    model = _clone(shared.prepared)
    plan = plan_quantization(model.graph, shared.grid.config, excluded, observed)
    emit(model, plan, shared.grid)
    return model, plan


def _subgraph_kernels(model: ir.Model) -> list[tuple[str, str]]:
    """(subgraph path, node label) of every kernel with a constant weight inside If/Loop/Scan bodies."""
    return [(path, label) for graph, path in iter_graphs(model.graph) if path
            for node, label in _labels(graph).items()
            if _ROLES.get(node.op_type, _Role("none")).kind == "kernel" and len(node.inputs) > 1
            and _is_constant(node.inputs[1])]


def _has_subgraph_kernels(model: ir.Model) -> bool:
    return any(path and any(_ROLES.get(n.op_type, _Role("none")).kind == "kernel" for n in graph)
               for graph, path in iter_graphs(model.graph))


def _target_warnings(target: TargetReport) -> list[str]:
    warnings = []
    if target.slower:
        warnings.append(f"int8 model is SLOWER than fp32 on this machine ({target.latency_int8_ms:.4g} ms vs "
                        f"{target.latency_fp32_ms:.4g} ms p50); int8 pays where onnxruntime fuses the quantized "
                        "nodes into integer kernels and the layers are large enough to outweigh Q/DQ costs")
    fraction = target.fused_fraction
    if fraction is not None and fraction < 1.0:
        warnings.append(f"only {target.integer_kernels} of {target.quantized_kernels} quantized kernels became "
                        "integer kernels in onnxruntime")
    return warnings


def _replace_contents(model: ir.Model, source: ir.Model) -> None:
    """Make ``model`` (the caller's object, changed in place) hold ``source``'s graph and opsets."""
    model.graph = source.graph
    model.ir_version = max(model.ir_version, source.ir_version)

"""A differentiable view of an ONNX model: its float weights as torch parameters, its graph run op by op.

The parameters are keyed by the :class:`~onnxcomp.weights.WeightRef` they came from, so training changes
nothing structural and :meth:`TorchGraph.write_back` puts every trained tensor back where the exporter stored
it (initializer, ``Constant`` node, ``If``/``Loop`` body). Weights that are trained are those a gradient step
can sensibly move; the others stay constants and each carries the reason (BatchNormalization running
statistics, scalars such as Clip bounds or GELU coefficients, initializers that are also graph inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir
import torch

from onnxcomp.errors import InputError
from onnxcomp.torch_exec.ops import OpContext, handler_for, to_torch, unsupported_ops
from onnxcomp.weights import WeightRef, iter_weights

__all__ = ["TorchGraph", "TrainableWeight", "frozen_reason"]

FLOAT_DTYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})

#: ``(op, input index)`` pairs whose tensors are statistics, not parameters: moving them by gradient would
#: change what the inference-mode op means (and a variance can go negative).
_STATISTIC_INPUTS = frozenset({("BatchNormalization", 3), ("BatchNormalization", 4)})


def frozen_reason(ref: WeightRef) -> str | None:
    """Why ``ref`` is not trained (``None``: it is)."""
    if ref.dtype not in FLOAT_DTYPES:
        return f"{ref.dtype.name.lower()} tensor (shape data or indices, not a float weight)"
    if ref.size <= 1:
        return "scalar constant (a Clip bound, a GELU or scaling coefficient)"
    if ref.overridable:
        return "initializer that is also a graph input (a caller may feed it)"
    for node, index in ref.consumers(through_identity=True):
        if (node.op_type, index) in _STATISTIC_INPUTS:
            return "BatchNormalization running statistic (the graph runs in inference mode)"
    return None


#: A tensor with at most this many distinct values (and at least 4x as many elements) counts as clustered.
MAX_CLUSTER_VALUES = 256


def cluster_codes(array: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(codebook, indices)`` when ``array`` looks clustered (few distinct values), else ``None``.

    Few means at most ``MAX_CLUSTER_VALUES`` and at most half the elements, so small clustered tensors
    (a 100x10 classifier, a clustered bias) keep their clusters too; a tensor of mostly distinct values is
    trained element by element.
    """
    values, indices = np.unique(array, return_inverse=True)
    if values.size > MAX_CLUSTER_VALUES or 2 * values.size > array.size:
        return None
    return values, indices.reshape(array.shape)


@dataclass
class TrainableWeight:
    """One trained tensor: where it lives in the ONNX model, its parameter, and its zero mask.

    For a shared (clustered) tensor the parameter is its codebook and ``indices`` maps every element to a
    centroid, so training moves centroids (each gets the sum of its members' gradients, as in Deep
    Compression's fine-tuning) and the tensor keeps exactly its clusters.
    """

    ref: WeightRef
    parameter: torch.nn.Parameter
    keep: torch.Tensor | None  # 1 where the weight may move, 0 where it was exactly zero; None: no mask
    indices: torch.Tensor | None = None

    def tensor(self) -> torch.Tensor:
        """The weight as the graph uses it."""
        if self.indices is None:
            return self.parameter
        return self.parameter[self.indices]


class TorchGraph:
    """Run an ``ir.Model`` in torch with gradients to its float weights.

    Args:
        model: The model; not modified until :meth:`write_back`.
        keep_zeros: Weights that are exactly zero stay exactly zero (their gradient is masked and they are
            re-zeroed after each step by :meth:`apply_masks`), so pruning survives training.
        share_clusters: Train the codebook of clustered tensors (few distinct values) instead of every
            element, so they stay clustered exactly.

    Raises:
        InputError: The graph uses ops this interpreter has no handler for (all of them are named).
    """

    def __init__(self, model: ir.Model, *, keep_zeros: bool = True, share_clusters: bool = False) -> None:
        missing = unsupported_ops(model.graph)
        if missing:
            raise InputError(f"cannot run the model in torch for training: unsupported op(s) {', '.join(missing)}")
        self.model = model
        self.opset = _default_opset(model)
        self.trainable: list[TrainableWeight] = []
        self.frozen: list[tuple[WeightRef, str]] = []
        self._constants: dict[int, torch.Tensor] = {}
        for ref in iter_weights(model):
            self._add(ref, keep_zeros, share_clusters)

    def _add(self, ref: WeightRef, keep_zeros: bool, share_clusters: bool) -> None:
        array = ref.numpy()
        reason = frozen_reason(ref)
        if reason is not None:
            self.frozen.append((ref, reason))
            self._constants[id(ref.value)] = to_torch(array)
            return
        codes = cluster_codes(array) if share_clusters else None
        if codes is not None:
            values, indices = codes
            keep = to_torch((values != 0).astype(values.dtype)) if keep_zeros and np.any(values == 0) else None
            self.trainable.append(TrainableWeight(ref, torch.nn.Parameter(to_torch(values)), keep,
                                                  to_torch(indices.astype(np.int64))))
            return
        parameter = torch.nn.Parameter(to_torch(array))
        keep = None
        if keep_zeros and np.any(array == 0):
            keep = to_torch((array != 0).astype(array.dtype))
        self.trainable.append(TrainableWeight(ref, parameter, keep))
        self._constants[id(ref.value)] = parameter

    # -- running ---------------------------------------------------------------------------------------------

    def parameters(self) -> list[torch.nn.Parameter]:
        return [weight.parameter for weight in self.trainable]

    def __call__(self, feed: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
        """The model's outputs by name for one feed (tensors or arrays keyed by input name)."""
        env: dict[int, Any] = dict(self._constants)
        for weight in self.trainable:
            if weight.indices is not None:
                env[id(weight.ref.value)] = weight.tensor()
        for value in self.model.graph.inputs:
            if value.name in feed:
                given = feed[value.name]
                env[id(value)] = given if isinstance(given, torch.Tensor) else to_torch(np.asarray(given))
            elif id(value) not in env:
                raise InputError(f"no data for model input {value.name!r}")
        outputs = self._run(self.model.graph, env)
        return {value.name: tensor for value, tensor in zip(self.model.graph.outputs, outputs, strict=True)}

    def _run(self, graph: ir.Graph, env: dict[int, Any]) -> list[Any]:
        context = OpContext(self.opset, lambda subgraph: self._run(subgraph, env), dict(self.model.opset_imports))
        for node in graph:
            if node.outputs and all(id(out) in env for out in node.outputs):
                continue  # a Constant node whose tensor is a parameter or constant already
            inputs = [None if value is None else _lookup(env, value, node) for value in node.inputs]
            results = handler_for(node)(context, node, inputs)
            for value, result in zip(node.outputs, results, strict=False):
                env[id(value)] = result
        return [_lookup(env, value, None) for value in graph.outputs]

    # -- training support ------------------------------------------------------------------------------------

    def mask_gradients(self) -> None:
        """Zero the gradient of pruned positions, so Adam's moments never move them."""
        for weight in self.trainable:
            if weight.keep is not None and weight.parameter.grad is not None:
                weight.parameter.grad.mul_(weight.keep)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Re-zero pruned positions exactly (guards against any optimizer drift)."""
        for weight in self.trainable:
            if weight.keep is not None:
                weight.parameter.mul_(weight.keep)

    def snapshot(self) -> list[torch.Tensor]:
        return [weight.parameter.detach().clone() for weight in self.trainable]

    @torch.no_grad()
    def restore(self, saved: list[torch.Tensor]) -> None:
        for weight, tensor in zip(self.trainable, saved, strict=True):
            weight.parameter.copy_(tensor)

    def write_back(self) -> list[dict[str, Any]]:
        """Put every trained tensor back into the ONNX model, in its original dtype and place."""
        self.apply_masks()
        written = []
        for weight in self.trainable:
            original = weight.ref.numpy()
            array = weight.tensor().detach().cpu().numpy().astype(original.dtype)
            if weight.keep is not None:
                array[original == 0] = 0  # exact zeros, whatever the dtype conversion did
            change = float(np.linalg.norm(array.astype(np.float64) - original) /
                           max(float(np.linalg.norm(original.astype(np.float64))), 1e-12))
            weight.ref.replace(array)
            written.append({"name": weight.ref.name, "location": weight.ref.subgraph_path or weight.ref.storage,
                            "shape": list(array.shape), "zeros": int(np.count_nonzero(array == 0)),
                            "shared_clusters": weight.indices is not None,
                            "relative_change": change})
        return written


def _lookup(env: dict[int, Any], value: ir.Value, node: ir.Node | None) -> Any:
    try:
        return env[id(value)]
    except KeyError:
        where = f" (input of {node.op_type} {node.name!r})" if node is not None else ""
        raise InputError(f"value {value.name!r}{where} is computed by nothing the interpreter ran") from None


def _default_opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", 17)))

"""The op registry of the torch interpreter, and the small helpers every handler module shares.

A handler takes the node, its input tensors (``None`` for an omitted optional input) and an :class:`OpContext`
(the opset, and a way to run subgraphs), and returns the output tensors. It is registered under the op's key:
its type for the default domain, ``domain::type`` for any other (``ai.onnx.ml::ArrayFeatureExtractor``).

A handler that covers only part of an op's attribute space registers a *check* beside it: a function of the node
that returns why that node cannot run (``None`` when it can), so a graph using an unsupported variant fails up
front, naming the op and the variant, instead of halfway through training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx_ir as ir

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKS", "OPS", "Check", "Handler", "OpContext", "attr", "functional", "ints", "op", "op_key",
           "to_torch", "torch_module"]

Tensors = list["torch.Tensor | None"]
Handler = Callable[["OpContext", ir.Node, Tensors], "list[torch.Tensor]"]
Check = Callable[[ir.Node], "str | None"]

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class OpContext:
    """What a handler may need beyond its inputs."""

    opset: int
    run_graph: Callable[[ir.Graph], list[Any]]
    opsets: dict[str, int] | None = None

    def domain_opset(self, domain: str) -> int:
        """The opset the model imports for ``domain`` (the default domain's for ``''``)."""
        if domain in DEFAULT_DOMAINS:
            return self.opset
        return int((self.opsets or {}).get(domain, 1))


OPS: dict[str, Handler] = {}
CHECKS: dict[str, Check] = {}


def op_key(domain: str, op_type: str) -> str:
    """The registry key of an op: its type in the default domain, ``domain::type`` elsewhere."""
    return op_type if domain in DEFAULT_DOMAINS else f"{domain}::{op_type}"


def op(*names: str, check: Check | None = None) -> Callable[[Handler], Handler]:
    """Register a handler (and optionally a check of the variants it supports) under ``names``."""

    def register(handler: Handler) -> Handler:
        for name in names:
            OPS[name] = handler
            if check is not None:
                CHECKS[name] = check
        return handler

    return register


def attr(node: ir.Node, name: str, default: Any = None) -> Any:
    """An attribute's Python value (ints, floats, lists, strings, graphs), or ``default``."""
    found = node.attributes.get(name)
    return default if found is None else found.value


def to_torch(array: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.array(array, copy=True))


def ints(tensor: torch.Tensor | None) -> list[int] | None:
    """A shape-like tensor as Python ints (``None`` stays ``None``)."""
    return None if tensor is None else [int(v) for v in tensor.reshape(-1).tolist()]


def optional(x: Tensors, index: int) -> torch.Tensor | None:
    """Input ``index``, or ``None`` when the node omits it (trailing or empty name)."""
    return x[index] if len(x) > index else None


def torch_module() -> Any:
    import torch

    return torch


def functional() -> Any:
    import torch.nn.functional as functional_module

    return functional_module

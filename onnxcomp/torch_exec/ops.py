"""Every op the torch interpreter runs, in one registry keyed by op (``domain::type`` outside the default domain).

The handlers live in small modules by family (:mod:`~onnxcomp.torch_exec.elementwise`,
:mod:`~onnxcomp.torch_exec.layers`, :mod:`~onnxcomp.torch_exec.shapes`, :mod:`~onnxcomp.torch_exec.recurrent`,
:mod:`~onnxcomp.torch_exec.resize`, and ``If`` here); importing this module registers them all. Semantics follow
the ONNX operator definitions at the opsets exporters use (9 to 20), including inputs that moved from attributes
to inputs over versions (``axes``, ``split``, ``pads``, ``min``/``max``), and onnxruntime's choices where the two
differ. Shape arithmetic runs on torch tensors too, so no op needs static shapes.

:func:`unsupported_ops` lists what a graph uses beyond the registry, and the variants of registered ops their
handlers do not cover (``Resize mode 'cubic'``), so a caller fails before training, naming every one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxcomp.torch_exec import elementwise, layers, recurrent, resize, shapes
from onnxcomp.torch_exec.registry import CHECKS, OPS, Handler, OpContext, Tensors, attr, op, op_key, to_torch

if TYPE_CHECKING:
    import torch

__all__ = ["OPS", "OpContext", "attr", "handler_for", "to_torch", "unsupported_ops"]

_FAMILIES = (elementwise, layers, recurrent, resize, shapes)  # imported for their registrations


def handler_for(node: ir.Node) -> Handler:
    """The handler of ``node``'s op (``KeyError`` when there is none; :func:`unsupported_ops` says so first)."""
    return OPS[op_key(node.domain, node.op_type)]


def unsupported_ops(graph: ir.Graph) -> list[str]:
    """Ops in ``graph`` (and its subgraphs) without a handler, and unsupported variants, sorted, each once."""
    missing: set[str] = set()
    for node in ir.traversal.RecursiveGraphIterator(graph):
        key = op_key(node.domain, node.op_type)
        if key not in OPS:
            missing.add(key)
        elif key in CHECKS and (why := CHECKS[key](node)) is not None:
            missing.add(why)
    return sorted(missing)


@op("If")
def _if(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    """Run the branch the condition picks on this feed; outer-scope values are visible through the shared
    environment, so a data-dependent condition is simply evaluated again for every feed."""
    branch = "then_branch" if bool(x[0].reshape(()).item()) else "else_branch"
    return ctx.run_graph(attr(node, branch))

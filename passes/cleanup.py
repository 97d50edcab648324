"""Graph cleanup: the exact, lossless tidying every later pass benefits from.

Exporters leave dead nodes, unused initializers, Identity chains and duplicated weight tensors behind. They
cost bytes on disk and confuse structural passes (an Identity between a Conv and its BatchNorm hides the
pair). This pass removes them with onnx-ir's maintained passes and reports what went.

Guarantees: the model's inputs and outputs keep their names, types and shapes, and every output is
computed exactly as before (no arithmetic is changed).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes import common

from onnxcomp.identity import IdentityEliminationPass
from onnxcomp.minify import minify
from onnxcomp.pass_base import CompressionPass, PassContext, PassOutcome, Skipped


@dataclass
class CleanupConfig:
    """Options of the cleanup pass.

    Attributes:
        deduplicate_initializers: merge initializers with identical dtype, shape and bytes (within a graph).
        eliminate_identity: drop Identity nodes, rewiring their consumers.
        minify: also drop what only humans read (node names, doc strings, intermediate shapes, attributes at
            their default values) and give intermediate values short names; see :mod:`onnxcomp.minify`. Off by
            default (names help debugging); the ``size`` preset turns it on, since on a model compressed to a
            few kilobytes the names are a visible part of the file.
    """

    deduplicate_initializers: bool = True
    eliminate_identity: bool = True
    minify: bool = False


def _count(model: ir.Model) -> tuple[int, int]:
    nodes = sum(1 for _ in ir.traversal.RecursiveGraphIterator(model.graph))
    initializers = sum(len(graph.initializers) for graph in model.graphs())
    return nodes, initializers


class CleanupPass(CompressionPass):
    """Remove dead nodes, unused initializers and opsets, Identity nodes and duplicate weights."""

    name = "cleanup"
    Config = CleanupConfig

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        del context
        nodes_before, inits_before = _count(model)
        steps: list[ir.passes.PassBase] = []
        skipped: list[Skipped] = []
        if self.config.eliminate_identity:
            steps.append(IdentityEliminationPass())
        else:
            skipped.append(Skipped("Identity nodes", "eliminate_identity is off"))
        if self.config.deduplicate_initializers:
            steps.append(common.DeduplicateInitializersPass())
        else:
            skipped.append(Skipped("duplicate initializers", "deduplicate_initializers is off"))
        steps += [common.RemoveUnusedNodesPass(), common.RemoveUnusedFunctionsPass(),
                  common.RemoveUnusedOpsetsPass()]
        modified = ir.passes.Sequential(*steps)(model).modified
        nodes_after, inits_after = _count(model)
        summary: dict[str, object] = {
            "nodes_before": nodes_before,
            "nodes_after": nodes_after,
            "initializers_before": inits_before,
            "initializers_after": inits_after,
        }
        if self.config.minify:
            minified = minify(model)
            summary["minified"] = minified.to_dict()
            modified = modified or any(minified.to_dict().values())
        return PassOutcome(modified=modified, summary=summary, skipped=skipped)

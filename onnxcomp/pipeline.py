"""Run passes in order over one in-memory model and collect one report.

Unlike a plain ``onnx_ir.passes.PassManager``, whose ``requires()`` checks run only when a pass's turn comes
(after earlier passes already changed the model), the pipeline checks every pass's needs before it touches
the model: a missing ``--data`` is reported at once, naming every pass that wanted it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_ir as ir

from onnxcomp.errors import MissingRequirementError
from onnxcomp.pass_base import CompressionPass, PassContext, PassReport, describe_needs, weight_bytes


@dataclass
class PipelineReport:
    """What a pipeline run did: one report per pass, sizes before and after, and the total time."""

    passes: list[PassReport] = field(default_factory=list)
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    seconds: float = 0.0
    data: str | None = None

    @property
    def modified(self) -> bool:
        return any(report.modified for report in self.passes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passes": [report.to_dict() for report in self.passes],
            "weight_bytes_before": self.weight_bytes_before,
            "weight_bytes_after": self.weight_bytes_after,
            "seconds": self.seconds,
            "modified": self.modified,
            "data": self.data,
        }


class Pipeline:
    """An ordered list of passes sharing one :class:`PassContext`."""

    def __init__(self, passes: Sequence[CompressionPass], context: PassContext | None = None) -> None:
        self.passes = list(passes)
        self.context = context or PassContext()

    @classmethod
    def from_recipe(cls, path: str | Path, context: PassContext | None = None) -> Pipeline:
        """The pipeline a YAML recipe describes (see :mod:`onnxcomp.recipe`); bad recipes are one-line errors."""
        from onnxcomp.recipe import Recipe

        return cls(Recipe.load(path).passes(context), context)

    def to_recipe(self, path: str | Path | None = None) -> str:
        """This pipeline's passes and configs as recipe YAML; also written (atomically) to ``path`` if given."""
        from onnxcomp.recipe import Recipe

        recipe = Recipe.from_passes(self.passes)
        if path is not None:
            recipe.save(path)
        return recipe.dump()

    def check_needs(self) -> None:
        """Raise one error naming every pass whose needs the context cannot meet."""
        problems = describe_needs(self.passes, self.context)
        if problems:
            raise MissingRequirementError("; ".join(problems))

    def run(self, model: ir.Model) -> PipelineReport:
        """Apply every pass to ``model`` in place, in order; return what each did."""
        self.check_needs()
        report = PipelineReport(weight_bytes_before=weight_bytes(model),
                                data=self.context.data.description if self.context.data else None)
        start = time.perf_counter()
        for compression_pass in self.passes:
            compression_pass.context = self.context
            result = compression_pass(model)
            report.passes.append(result.report)
        report.seconds = time.perf_counter() - start
        report.weight_bytes_after = weight_bytes(model)
        return report

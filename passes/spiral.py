"""The prune ↔ distill spiral: prune a little more, distil a little, keep the sparsest model within budget.

One-shot pruning to 90% costs far more accuracy than reaching 90% in steps with retraining in between (Han et
al. 2015; Zhu and Gupta 2017): each short distillation round lets the remaining weights take over the work of
the ones just removed, so the next pruning step starts from a model that has adapted. Here the retraining is
distillation from the original model (:mod:`onnxcomp.passes.distill`), so no training code is needed.

Schedule: the gradual (cubic) one of Zhu and Gupta, ``s_i = s_f * (1 - (1 - i / steps)^3)``, which prunes
fast while many redundant weights remain and slowly near the target. After each round the model is measured
in onnxruntime: accuracy against the data's labels when it has them (the drop is against the original's
accuracy), else top-1 agreement with the original (the drop is 1 - agreement). The sparsest round whose drop
stays within ``max_drop`` is the result; when a round misses, later (sparser) rounds are not tried unless
``stop_on_miss`` is off. When no round meets the budget the model is left as it was.

The measurement uses ``eval_data`` when given, else the training data itself; the latter flatters (it is what
the student was trained on), so pass held-out samples when you have them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx_ir as ir
from onnxcomp.passes.distill import DistillConfig, Progress, Samples, distill, load_samples
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

from onnxcomp import io
from onnxcomp.data import DataSource
from onnxcomp.errors import InputError
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassOutcome
from onnxcomp.session import create_session
from onnxcomp.torch_exec import require_torch
from onnxcomp.weights import iter_weights

__all__ = ["DEFAULT_MAX_DROP", "SpiralConfig", "SpiralPass", "gradual_schedule"]

DEFAULT_MAX_DROP = 0.005


@dataclass
class SpiralConfig:
    """Options of the spiral.

    Attributes:
        target_sparsity: Final sparsity of the prunable weights (global magnitude ranking).
        steps: Pruning rounds on the way to the target.
        epochs_per_step: Distillation epochs after each pruning step.
        max_drop: Largest accepted loss of accuracy (labelled data) or of top-1 agreement with the original
            (``None``: 0.005; inside ``onnxcomp optimize``, what the optimize budget allows).
        stop_on_miss: Stop at the first round that misses the budget.
        keep_first_last: Passed to magnitude pruning (first and last layer pruned to half the target).
        min_size: Passed to magnitude pruning.
        distill: Distillation options for every round (its ``epochs`` is replaced by ``epochs_per_step``); a
            mapping of its options is accepted, so a recipe can set them.
    """

    target_sparsity: float = 0.9
    steps: int = 4
    epochs_per_step: int = 2
    max_drop: float | None = None
    stop_on_miss: bool = True
    keep_first_last: bool = True
    min_size: int = 128
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        if isinstance(self.distill, Mapping):
            self.distill = DistillConfig(**self.distill)
        if not 0.0 < self.target_sparsity < 1.0:
            raise InputError(f"target sparsity must be in (0, 1), got {self.target_sparsity}")
        if self.steps < 1 or self.epochs_per_step < 0:
            raise InputError("steps must be >= 1 and epochs per step >= 0")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise InputError(f"max drop must be in [0, 1], got {self.max_drop}")

    @property
    def allowed_drop(self) -> float:
        """``max_drop``, or 0.005 (one sample in 200) when unset."""
        return DEFAULT_MAX_DROP if self.max_drop is None else self.max_drop


def gradual_schedule(target: float, steps: int) -> list[float]:
    """Sparsity after each of ``steps`` rounds, cubic toward ``target`` (the last one is exactly it)."""
    return [round(target * (1.0 - (1.0 - i / steps) ** 3), 6) for i in range(1, steps + 1)]


def _metric(model: ir.Model | bytes, samples: Samples) -> tuple[str, float]:
    """Accuracy (labelled data) or top-1 agreement with the original, through onnxruntime."""
    source = model if isinstance(model, bytes) else io.serialize(model)
    outputs = create_session(source).run(None, samples.feed)
    name = next(iter(samples.teacher))
    scores = outputs[0].reshape(samples.count, -1)
    predicted = scores.argmax(-1)
    if samples.labels is not None:
        return "accuracy", float(np.mean(predicted == samples.labels))
    return "teacher_agreement", float(np.mean(predicted == samples.teacher[name].reshape(samples.count, -1).argmax(-1)))


def _snapshot(model: ir.Model) -> list[np.ndarray]:
    return [ref.numpy().copy() for ref in iter_weights(model)]


def _restore(model: ir.Model, saved: list[np.ndarray]) -> None:
    for ref, array in zip(iter_weights(model), saved, strict=True):
        if not np.array_equal(ref.numpy(), array):
            ref.replace(array)


class SpiralPass(CompressionPass):
    """Gradual magnitude pruning with distillation from the original between steps (see the module docstring)."""

    name = "spiral"
    Config = SpiralConfig
    needs = frozenset({Need.DATA})

    def __init__(self, config: SpiralConfig | None = None, context: PassContext | None = None, *,
                 eval_data: DataSource | None = None, progress: Progress | None = None,
                 teacher: ir.Model | bytes | None = None) -> None:
        """``teacher``: what to distil from and measure against (default: the model as the pass receives it;
        ``onnxcomp optimize`` gives the original, so a spiral after other lossy steps still aims at it)."""
        super().__init__(config, context)
        self.eval_data = eval_data
        self.progress = progress
        self.teacher = teacher

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        require_torch("the prune/distill spiral")
        config: SpiralConfig = self.config
        assert context.data is not None
        if self.teacher is None:
            original = io.serialize(model)
        else:
            original = self.teacher if isinstance(self.teacher, bytes) else io.serialize(self.teacher)
        samples = load_samples(context.data, original)
        evaluation = load_samples(self.eval_data, original) if self.eval_data is not None else samples
        kind, baseline = _metric(original, evaluation)
        reference = baseline if kind == "accuracy" else 1.0
        start = _snapshot(model)
        best: tuple[float, list[np.ndarray]] | None = None
        rounds: list[dict[str, Any]] = []
        for sparsity in gradual_schedule(config.target_sparsity, config.steps):
            entry = self._round(model, original, samples, evaluation, sparsity)
            entry["drop"] = reference - entry[kind]
            entry["within_budget"] = entry["drop"] <= config.allowed_drop
            rounds.append(entry)
            if entry["within_budget"]:
                best = (sparsity, _snapshot(model))
            elif config.stop_on_miss:
                break
        _restore(model, best[1] if best is not None else start)
        summary = {"metric": kind, "baseline": baseline, "max_drop": config.allowed_drop,
                   "evaluated_on": "eval data" if self.eval_data else
                   "training data (pass held-out data for an honest budget)",
                   "schedule": gradual_schedule(config.target_sparsity, config.steps),
                   "chosen_sparsity": best[0] if best is not None else None, "rounds": rounds}
        changed = [{"sparsity": r["sparsity"], "metric": r[kind], "drop": r["drop"], "kept": best is not None and
                    r["sparsity"] == best[0]} for r in rounds]
        return PassOutcome(modified=best is not None, changed=changed, skipped=[], summary=summary)

    def _round(self, model: ir.Model, original: bytes, samples: Samples, evaluation: Samples,
               sparsity: float) -> dict[str, Any]:
        config: SpiralConfig = self.config
        prune = MagnitudePruneConfig(sparsity=sparsity, keep_first_last=config.keep_first_last,
                                     min_size=config.min_size)
        pruned = MagnitudePrunePass(prune)(model).report.summary
        kind, after_prune = _metric(model, evaluation)
        options = dataclasses.replace(config.distill, epochs=config.epochs_per_step,
                                      seed=config.distill.seed + len(pruned))
        result = distill(model, original, samples, options, progress=self.progress)
        _, after = _metric(model, evaluation)
        return {"sparsity": sparsity, "eligible_sparsity": pruned["eligible_sparsity"],
                f"{kind}_after_prune": after_prune, kind: after, "distill_loss": result.losses[-1:] or None,
                "seconds": result.seconds}

"""Run a recipe under an accuracy budget: the engine behind ``onnxcomp optimize``.

Each step runs on a copy of the model. With data, the result is measured against the *original* model (so
errors that add up across steps are caught) and a step that breaks the budget is retried with its fallback
options, then reverted; a ``keep: if-faster`` step is also timed against the model before it and kept only
when it is faster. Without data, steps that need it or that change outputs are skipped with a note saying
which and why: a budget that cannot be measured is never assumed to hold.

The result carries the facts the report renders (sizes per stage, per-layer sparsity and channels, error
histograms, latency samples, the quantization sensitivity ranking); nothing here prints or writes files.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx_ir as ir

from onnxcomp import io
from onnxcomp.data import DataSource
from onnxcomp.errors import InputError
from onnxcomp.evaluation import Evaluation, Evaluator, latency_samples
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassReport, weight_bytes
from onnxcomp.progress import Progress
from onnxcomp.recipe import Budget, Recipe, Step
from onnxcomp.report.layers import layer_facts

__all__ = ["FASTER_RATIO", "OptimizeOptions", "OptimizeResult", "StageRecord", "optimize"]

#: ``keep: if-faster`` keeps a step when its p50 latency is at most this share of the model before it. Tiny
#: models' p50 ratios wander ±20 % between identical runs on a busy machine; 5 % asks for a real gain.
FASTER_RATIO = 0.95


@dataclass
class OptimizeOptions:
    """How ``optimize`` runs a recipe.

    Attributes:
        budget: what the result must keep against the original on the data (default: the recipe's budget,
            else cosine ≥ 0.99 and top-1 agreement ≥ 99%).
        target: ``cpu`` or ``cuda``: where sessions run and which int8 format quantization aims at.
        pack: pack the result into ``.onnxc`` (``None``: as the recipe says).
        latency_runs: timed runs per model for ``keep: if-faster`` and the before/after latency plot.
        progress: progress bars on stderr (shown only when it is a terminal).
        headroom: share of each allowed loss held in reserve when deciding to keep a step (see
            :meth:`Budget.tightened`); measured on the trained fixtures, 0.5 is what kept the budget on the
            test split when the decisions were taken on 256 calibration samples.
    """

    budget: Budget | None = None
    target: str = "cpu"
    pack: bool | None = None
    latency_runs: int = 30
    progress: bool = True
    headroom: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.headroom < 1.0:
            raise InputError(f"headroom must be in [0, 1), got {self.headroom}")


@dataclass
class StageRecord:
    """What happened at one step: kept, reverted, skipped or unchanged, and why."""

    index: int
    pass_name: str
    status: str
    reason: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    report: PassReport | None = None
    weight_bytes: int = 0
    model_bytes: int = 0
    evaluation: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "pass": self.pass_name, "status": self.status, "reason": self.reason,
                "attempts": self.attempts, "report": self.report.to_dict() if self.report else None,
                "weight_bytes": self.weight_bytes, "model_bytes": self.model_bytes, "evaluation": self.evaluation,
                "latency": self.latency, "seconds": self.seconds}


@dataclass
class OptimizeResult:
    """The optimized model and every fact the JSON and HTML reports show."""

    model: ir.Model
    budget: Budget
    data: str | None
    data_is_random: bool
    original: dict[str, Any]
    stages: list[StageRecord]
    final: Evaluation | None
    latency: dict[str, list[float]] | None
    layers: list[dict[str, Any]]
    notes: list[str]
    packed: bytes | None = None
    pack_report: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def budget_met(self) -> bool | None:
        """Whether the final model keeps the budget on the data (None: no data, nothing measured)."""
        return None if self.final is None else not self.final.failures(self.budget)

    @property
    def sensitivity(self) -> list[dict[str, Any]]:
        """Quantization's per-kernel sensitivity ranking, from the last quantize attempt that made one."""
        for stage in reversed(self.stages):
            for attempt in reversed(stage.attempts):
                ranking = ((attempt.get("summary") or {}).get("budget") or {}).get("ranking")
                if ranking:
                    return ranking
        return []

    def to_dict(self) -> dict[str, Any]:
        from onnxcomp.report.document import build_document

        return build_document(self)


# -- budget hooks: how the optimize budget becomes a pass's own budget ------------------------------------------


def _quantize_budget(config: Any, budget: Budget, options: OptimizeOptions) -> Any:
    updates: dict[str, Any] = {"target": options.target, "progress": options.progress}
    if not config.has_budget:
        updates.update(min_cosine=budget.min_cosine, min_top1=budget.min_top1, max_drop=budget.max_drop)
    return dataclasses.replace(config, **updates)


def _channels_budget(config: Any, budget: Budget, options: OptimizeOptions) -> Any:
    if config.ratio == 0.0 or config.max_drop is not None:
        return config  # exact removal, or the recipe set its own search budget
    max_drop = budget.max_drop if budget.max_drop is not None else (
        1.0 - budget.min_top1 if budget.min_top1 is not None else 1.0)
    return dataclasses.replace(config, max_drop=max_drop, min_cosine=config.min_cosine or budget.min_cosine)


def _allowed_drop(budget: Budget) -> float:
    """The budget as one top-1 drop: ``max_drop``, else the disagreement ``min_top1`` allows, else 1 %."""
    if budget.max_drop is not None:
        return budget.max_drop
    return 1.0 - budget.min_top1 if budget.min_top1 is not None else 0.01


def _spiral_budget(config: Any, budget: Budget, options: OptimizeOptions) -> Any:
    return config if config.max_drop is not None else dataclasses.replace(config, max_drop=_allowed_drop(budget))


#: Pass name -> how its config takes the budget, so it can search within it instead of only being reverted.
BUDGET_HOOKS: dict[str, Callable[[Any, Budget, OptimizeOptions], Any]] = {
    "quantize": _quantize_budget,
    "channels": _channels_budget,
    "spiral": _spiral_budget,
}


# -- the engine ---------------------------------------------------------------------------------------------------


def _copy(model: ir.Model) -> ir.Model:
    return ir.from_proto(ir.to_proto(model))


def _spiral_inputs(run: _Run, config: Any) -> dict[str, Any]:
    return {"teacher": run.reference_bytes, "eval_data": run.eval_data}


def _distill_inputs(run: _Run, config: Any) -> dict[str, Any]:
    return {} if config.teacher is not None else {"teacher": run.reference_bytes}


#: Pass name -> what the engine hands its constructor: distillation learns from the original model (the one
#: the budget is measured against), and the spiral chooses its sparsity on the held-out data when given.
PASS_INPUTS: dict[str, Callable[[_Run, Any], dict[str, Any]]] = {
    "spiral": _spiral_inputs,
    "distill": _distill_inputs,
}


class _Run:
    """State of one optimize run: the reference, the data, the evaluator and the stages so far."""

    def __init__(self, model: ir.Model, recipe: Recipe, data: DataSource | None, eval_data: DataSource | None,
                 options: OptimizeOptions) -> None:
        self.recipe = recipe
        self.options = options
        self.budget = options.budget or recipe.budget or Budget.default()
        self.guard = self.budget.tightened(options.headroom)
        self.context = PassContext(data=data, provider=options.target)
        self.data = data
        self.reference = _copy(model)
        self.reference_bytes = io.serialize(self.reference)
        self.eval_data = eval_data or data
        self.reference_session = self.context.session(self.reference) if self.eval_data is not None else None
        self.evaluator = Evaluator(self.reference_session, self.eval_data, progress=options.progress) \
            if self.eval_data is not None and self.reference_session is not None else None
        self.stages: list[StageRecord] = []
        self.notes: list[str] = []

    def step(self, model: ir.Model, index: int, step: Step) -> ir.Model:
        """Run one step; return the model to carry on with (the step's result, or ``model`` unchanged)."""
        start = time.perf_counter()
        skip = self._skip_reason(step)
        if skip is not None:
            self.notes.append(f"{step.pass_name} skipped: {skip}")
            record = StageRecord(index, step.pass_name, "skipped", skip)
        else:
            model, record = self._attempts(model, index, step)
        record.weight_bytes, record.model_bytes = weight_bytes(model), len(io.serialize(model))
        record.seconds = time.perf_counter() - start
        self.stages.append(record)
        return model

    def _skip_reason(self, step: Step) -> str | None:
        if self.data is not None:
            return None
        probe = step.build(self.context)
        if Need.DATA in probe.needs:
            return "it needs calibration data (--data)"
        if not step.exact:
            return "it changes outputs and the budget cannot be checked without --data"
        return None

    def _configs(self, step: Step) -> list[Any]:
        hook = BUDGET_HOOKS.get(step.pass_name) if self.data is not None else None
        configs = [step.config, *step.fallback_configs()]
        return [hook(c, self.guard, self.options) if hook else c for c in configs]

    def _attempts(self, model: ir.Model, index: int, step: Step) -> tuple[ir.Model, StageRecord]:
        record = StageRecord(index, step.pass_name, "reverted")
        for number, config in enumerate(self._configs(step)):
            candidate = _copy(model)
            report = self._build(step, config)(candidate).report
            record.report = report
            attempt: dict[str, Any] = {"config": _jsonable_config(config), "modified": report.modified,
                                       "summary": report.summary}
            record.attempts.append(attempt)
            if not report.modified:
                record.status, record.reason = "unchanged", _unchanged_reason(report)
                return model, record
            failures = self._measure(candidate, attempt)
            if failures:
                record.evaluation = attempt["evaluation"]
                continue
            record.evaluation = attempt.get("evaluation")
            if step.keep == "if-faster" and not self._faster(model, candidate, record):
                return model, record
            record.status = "kept" if number == 0 else "backed-off"
            record.reason = None if number == 0 else f"fallback {number} of {len(step.fallbacks)} fits the budget"
            return candidate, record
        last = record.attempts[-1].get("failures") or ["budget broken"]
        record.reason = (f"broke the budget in all {len(record.attempts)} attempts ({'; '.join(last)})"
                         if len(record.attempts) > 1 else f"broke the budget ({'; '.join(last)})")
        return model, record

    def _build(self, step: Step, config: Any) -> CompressionPass:
        inputs = PASS_INPUTS.get(step.pass_name)
        return step.pass_cls(config, self.context, **(inputs(self, config) if inputs else {}))

    def _measure(self, candidate: ir.Model, attempt: dict[str, Any]) -> list[str]:
        if self.evaluator is None:
            return []
        evaluation = self.evaluator.evaluate(self.context.session(candidate), label=attempt.get("pass", "checking"))
        failures = evaluation.failures(self.guard)
        attempt.update(evaluation=evaluation.summary(), failures=failures, passed=not failures)
        return failures

    def _faster(self, before: ir.Model, after: ir.Model, record: StageRecord) -> bool:
        if self.data is None:
            record.status, record.reason = "reverted", "keep if-faster needs data to time the models"
            return False
        samples = latency_samples({"before": self.context.session(before), "after": self.context.session(after)},
                                  next(iter(self.data.feeds())), runs=self.options.latency_runs,
                                  progress=self.options.progress)
        p50 = {name: _percentile(values, 50) for name, values in samples.items()}
        ratio = p50["after"] / p50["before"] if p50["before"] else 1.0
        record.latency = {"before_p50_ms": p50["before"], "after_p50_ms": p50["after"], "ratio_p50": ratio,
                          "runs": self.options.latency_runs, "required_ratio": FASTER_RATIO}
        if ratio <= FASTER_RATIO:
            return True
        record.status = "reverted"
        record.reason = (f"within budget but not faster: p50 {p50['after']:.4g} ms vs {p50['before']:.4g} ms "
                         f"before ({ratio:.2f}x; keeping needs ≤ {FASTER_RATIO:.2f}x)")
        return False


def _unchanged_reason(report: PassReport) -> str:
    """Why a pass changed nothing: a search that found no setting within the budget, or nothing to do."""
    trials = report.summary.get("search") or []
    failed = [t for t in trials if not t.get("passed", True)]
    if failed:
        first = failed[0]
        why = "; ".join(first.get("failures") or [])[:160]
        return f"no setting within the budget changed anything (first failure at ratio {first.get('ratio')}: {why})"
    note = report.summary.get("note")
    return str(note) if note else "the pass found nothing to change"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))] if ordered else 0.0


def _jsonable_config(config: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _jsonable(value: Any) -> Any:
    """An option as JSON data: a nested config (the spiral's distillation options) as a mapping."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable_config(value)
    return "<callable>" if callable(value) else value


def optimize(model: ir.Model, recipe: Recipe, data: DataSource | None = None,
             options: OptimizeOptions | None = None, *, eval_data: DataSource | None = None) -> OptimizeResult:
    """Run ``recipe`` over ``model`` (not changed: the result holds a new model) within the budget.

    Args:
        model: the original model.
        recipe: the steps (see :mod:`onnxcomp.recipe`; presets come from :func:`onnxcomp.presets.preset_recipe`).
        data: calibration data; the budget is measured on it unless ``eval_data`` is given. ``None`` skips every
            step that needs data or changes outputs, with a note.
        options: budget, target, packing, latency runs, progress.
        eval_data: held-out data the budget is measured on (default: ``data``). Calibration data from a
            training set overstates top-1 agreement on unseen inputs (the model is confident on it), so a
            budget measured there is a weaker promise; see the README.
    """
    options = options or OptimizeOptions()
    start = time.perf_counter()
    run = _Run(model, recipe, data, eval_data, options)
    if data is None:
        run.notes.append("no --data: steps that need data or change outputs are skipped, and nothing was measured")
    elif run.eval_data is not None and run.eval_data.is_random:
        run.notes.append("random data: the budget was measured on random inputs, which are NOT representative")
    elif eval_data is None:
        run.notes.append("the budget was measured on the calibration data; held-out data (--eval-data) makes it "
                         "a promise about unseen inputs")
    original = {"weight_bytes": weight_bytes(model), "model_bytes": len(io.serialize(model))}
    current = _copy(model)
    with Progress("optimize", len(recipe.steps), enabled=options.progress) as bar:
        for index, step in enumerate(recipe.steps):
            current = run.step(current, index, step)
            bar.advance()
    measured = run.eval_data
    result = OptimizeResult(current, run.budget, measured.description if measured else None,
                            bool(measured and measured.is_random), original, run.stages, None, None,
                            layer_facts(run.reference, current), run.notes)
    _finish(result, run, options)
    result.seconds = time.perf_counter() - start
    return result


def _finish(result: OptimizeResult, run: _Run, options: OptimizeOptions) -> None:
    """Final measurements (parity with error histograms, latency before/after) and packing."""
    if run.evaluator is not None and run.eval_data is not None:
        session = run.context.session(result.model)
        result.final = run.evaluator.evaluate(session, histograms=True, label="final check")
        result.latency = latency_samples({"original": run.reference_session, "optimized": session},
                                         next(iter(run.eval_data.feeds())), runs=options.latency_runs,
                                         progress=options.progress)
    if options.pack if options.pack is not None else run.recipe.pack:
        from onnxcomp.packing import pack_with_report

        packed, report = pack_with_report(result.model)
        result.packed = packed
        result.pack_report = {k: v for k, v in report.to_dict().items() if k != "tensors"}

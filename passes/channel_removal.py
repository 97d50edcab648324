"""Channel removal: structured pruning straight on the ONNX graph, for models from any exporter.

Whole output channels (Conv filters, Gemm/MatMul columns, FFN units) are removed together with everything
coupled to them (residual Adds, Concat offsets, Split sizes, depthwise convs, BatchNorm statistics,
Flatten/Reshape rows), so the model gets genuinely smaller and faster on every runtime. The dependency
analysis and the per-op handler table live in :mod:`onnxcomp.channels`.

Guarantees: graph inputs and outputs keep their declared types and shapes; all-zero channels are removed
first and removing them changes no output (a zero filter followed by a BatchNorm with a non-zero shift is a
*constant* channel, not a zero one, and is not removed as exact); shapes that the model computes at run time
stay computed at run time, and shapes observed on probe feeds never reach the result
(:mod:`onnxcomp.channels.shapes`); the result runs in onnxruntime wherever the original ran on the check feeds,
with the same output shapes (and values, when only exact removals were made), or the pass fails naming the
problem (:mod:`onnxcomp.channels.validate`). With ``max_drop`` the pass searches the largest ratio (in
``search_step`` increments up to ``ratio``) whose top-1 agreement with the original on the calibration data
stays within the budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx_ir as ir

from onnxcomp.channels.analyze import ChannelGroup, analyze, channel_groups, infer_shapes
from onnxcomp.channels.compensate import fold_means
from onnxcomp.channels.constants import constant_roots, sink_values
from onnxcomp.channels.graph import Analysis
from onnxcomp.channels.importance import CRITERIA, ChannelStats, channel_stats, scores_for
from onnxcomp.channels.plan import GroupDecision, plan, simd_channel_block
from onnxcomp.channels.remove import copy_model, main_opset, rewrite_model
from onnxcomp.channels.rewrite import Rewriter
from onnxcomp.channels.shapes import Boundary, Feed, described_values, forget_shapes, settle_shapes
from onnxcomp.channels.validate import RuntimeCheck
from onnxcomp.check import ParityAccumulator, ParityThresholds
from onnxcomp.errors import InputError
from onnxcomp.fold import fold_constant_reshapes
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassFailedError, PassOutcome, Skipped
from onnxcomp.summary import summarize

Criterion = Literal["auto", "l1", "l2", "bn", "activation"]


@dataclass
class ChannelRemovalConfig:
    """Options of the channel-removal pass.

    Attributes:
        ratio: share of each group's channels to remove, in [0, 1) (the upper bound when ``max_drop`` is set).
        criterion: importance measure: ``l1``/``l2`` effective filter norms, ``bn`` |gamma|, ``activation``
            (needs data); ``auto`` is ``activation`` when calibration data is given, else ``l1``. Measured on
            the trained fixtures at ratio 0.25 (benchmarks/channels.py), activation + mean folding kept
            resnet 0.80 / yolo_block 0.70 / transformer 0.98 where no weight-only criterion beat 0.47 / 0.58
            / 0.96, and among weight-only criteria none won consistently (differences are within noise).
        round_to: keep channel counts at multiples of this (never above the original count; see
            :func:`onnxcomp.channels.plan.target_keep` for narrow groups). ``None`` (default) uses the block of
            onnxruntime's CPU convolutions on this machine (16 with AVX-512, else 8): other widths are padded
            up to the block anyway, or fall off the blocked kernels and can make a pruned model slower.
        exclude: regex; groups with a source layer whose name matches are left alone (zero channels aside).
        layer_ratios: ``(regex, ratio)`` pairs overriding ``ratio`` for groups with a matching layer name.
        max_drop: with data, the largest top-1 disagreement with the original the result may have.
        min_cosine: with data and ``max_drop``, also require this output cosine similarity.
        search_step: ratio increment of the ``max_drop`` search.
        fold_means: with data, add each removed channel's calibration mean times its weights to the next
            layer's bias (free accuracy recovery; off only to measure what it buys).
    """

    ratio: float = 0.25
    criterion: Criterion = "auto"
    round_to: int | None = None
    exclude: str | None = None
    layer_ratios: tuple[tuple[str, float], ...] = ()
    max_drop: float | None = None
    min_cosine: float | None = None
    search_step: float = 0.05
    fold_means: bool = True

    def __post_init__(self) -> None:
        for name, value in [("ratio", self.ratio), *[(f"ratio for {p!r}", r) for p, r in self.layer_ratios]]:
            if not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {value}")
        if self.criterion != "auto" and self.criterion not in CRITERIA:
            raise InputError(f"criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if self.round_to is not None and self.round_to < 1:
            raise InputError(f"round_to must be >= 1, got {self.round_to}")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise InputError(f"max_drop must be in [0, 1], got {self.max_drop}")
        for pattern in [self.exclude or "", *(p for p, _ in self.layer_ratios)]:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InputError(f"bad regular expression {pattern!r}: {exc}") from None

    @property
    def needs_data(self) -> bool:
        return self.criterion == "activation" or self.max_drop is not None

    def resolved_criterion(self, has_data: bool) -> str:
        """The criterion actually used: ``auto`` picks ``activation`` with data, ``l1`` without."""
        if self.criterion == "auto":
            return "activation" if has_data else "l1"
        return self.criterion


@dataclass
class _Pruned:
    """One pruning of a model: the analysis it was planned on and the decisions taken."""

    analysis: Analysis
    groups: list[ChannelGroup]
    decisions: list[GroupDecision]
    criterion: str = ""
    folded: int = 0
    fold_skips: tuple[str, ...] = ()
    zero_removed: int = 0
    zero: set[int] = field(default_factory=set)
    constant_removed: set[int] = field(default_factory=set)
    constant_blocked: tuple[str, ...] = ()
    round_to: int = 1


class ChannelRemovalPass(CompressionPass):
    """Remove whole channels, with every coupled tensor, weight and shape literal rewritten."""

    name = "channels"
    Config = ChannelRemovalConfig

    def __init__(self, config: ChannelRemovalConfig | None = None, context: PassContext | None = None) -> None:
        super().__init__(config, context)
        self.needs = frozenset({Need.DATA}) if self.config.needs_data else frozenset()  # type: ignore[misc]
        #: A real input (the first data feed), to observe shapes on; ``None`` without data.
        self._feed: Feed | None = None

    # ---------------------------------------------------------------------------------------- planning

    def _ratio_for(self, ratio: float) -> Callable[[ChannelGroup], float | None]:
        exclude = re.compile(self.config.exclude) if self.config.exclude else None
        overrides = [(re.compile(p), r) for p, r in self.config.layer_ratios]

        def ratio_for(group: ChannelGroup) -> float | None:
            if exclude is not None and any(exclude.search(s) for s in group.sources):
                return None
            for pattern, value in overrides:
                if any(pattern.search(s) for s in group.sources):
                    return value
            return ratio

        return ratio_for

    def _prune(self, model: ir.Model, ratio: float, scores: dict[int, float] | None = None,
               stats: dict[str, ChannelStats] | None = None) -> _Pruned:
        """Analyse, plan and rewrite ``model`` in place at ``ratio``.

        ``scores`` and ``stats`` are per analysis of the *original* model; the ratio search passes them in
        so that calibration runs once, not once per trial.
        """
        infer_shapes(model, self._feed)
        analysis = analyze(model)
        groups = channel_groups(analysis)
        if stats is None:
            stats = self._stats(model, analysis)
        if scores is None:
            scores = scores_for(self.config.resolved_criterion(stats is not None), analysis, stats)
        zero = analysis.zero_roots()
        constant, blocked = constant_roots(analysis)
        round_to = self.config.round_to or simd_channel_block()
        decisions = plan(groups, self._ratio_for(ratio), round_to, scores, zero | constant, analysis)
        removed = {r for d in decisions for r in d.removed}
        pruned = _Pruned(analysis, groups, decisions, self.config.resolved_criterion(stats is not None),
                         round_to=round_to)
        pruned.zero, pruned.zero_removed = zero, len(removed & zero)
        pruned.constant_removed = (removed & constant) - zero
        pruned.constant_blocked = tuple(sorted(set(blocked.values())))
        if removed:
            self._fold(model, pruned, removed, stats)
            rewrite_model(model, analysis, removed, self._feed)
        return pruned

    def _fold(self, model: ir.Model, pruned: _Pruned, removed: set[int],
              stats: dict[str, ChannelStats] | None) -> None:
        """Fold removed channels into the readers' biases: constants exactly, the rest by calibration mean."""
        analysis = pruned.analysis
        rewriter = Rewriter(analysis, frozenset(removed), main_opset(model))
        folded, skips = fold_means(analysis, pruned.constant_removed, sink_values(analysis), rewriter)
        assert not skips, f"constant channels were planned with a reader that cannot absorb them: {skips}"
        if stats and self.config.fold_means:
            means = {name: s.mean for name, s in stats.items()}
            by_mean, skips = fold_means(analysis, removed - pruned.constant_removed, means, rewriter)
            folded += by_mean
            pruned.fold_skips = tuple(skips)
        pruned.folded = folded

    def _stats(self, model: ir.Model, analysis: Analysis) -> dict[str, ChannelStats] | None:
        """Calibration statistics of the sink inputs, when data was given (else ``None``)."""
        if self.context.data is None:
            return None
        return channel_stats(model, analysis, self.context.data, self.context.session)

    def _search(self, model: ir.Model) -> tuple[float, list[dict[str, Any]]]:
        """The largest ratio (step by step, stopping at the first failure) within the parity budget."""
        assert self.context.data is not None
        probe = copy_model(model)
        infer_shapes(probe, self._feed)
        analysis = analyze(probe)
        stats = self._stats(probe, analysis)
        scores = scores_for(self.config.resolved_criterion(stats is not None), analysis, stats)
        reference = self.context.session(model)
        thresholds = ParityThresholds(min_top1=1.0 - self.config.max_drop,  # type: ignore[operator]
                                      min_cosine=self.config.min_cosine, require_top1=False)
        step, best, trials = self.config.search_step, 0.0, []
        for ratio in np.arange(step, self.config.ratio + 1e-9, step):
            candidate = copy_model(model)
            self._prune(candidate, float(ratio), scores, stats)
            forget_shapes(candidate)
            parity = _parity(reference, self.context.session(candidate), self.context.data, thresholds)
            trials.append({"ratio": round(float(ratio), 4), "passed": bool(parity), "failures": parity.failures()})
            if not parity:
                break
            best = round(float(ratio), 4)
        return best, trials

    # -------------------------------------------------------------------------------------------- apply

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        del context
        boundary, described = Boundary.of(model), described_values(model)
        before = summarize(model)
        data = self.context.data
        self._feed = next(iter(data.feeds()), None) if data is not None else None
        check = self._prepare_check(model)
        # Per-channel constants made at run time (Mul by Unsqueeze(gamma)) would freeze their channels.
        folded = fold_constant_reshapes(model)
        ratio, trials = self.config.ratio, []
        if self.config.max_drop is not None:
            ratio, trials = self._search(model)
        pruned = self._prune(model, ratio)
        after = summarize(model)
        settle_shapes(model, described)
        boundary.restore()
        self._validate(model, check, _only_exact(pruned))
        outcome = _outcome(pruned, before, after, ratio, trials)
        outcome.summary["constants_folded"] = folded
        return outcome

    def _prepare_check(self, model: ir.Model) -> RuntimeCheck:
        """The original's outputs on the check feeds, with onnxruntime's full optimisation where it loads so."""
        data = self.context.data
        for optimize in (True, False):
            try:
                session = self.context.session(model, optimize=optimize)
            except Exception:  # onnxruntime raises several unrelated types; all mean the same here
                continue
            return RuntimeCheck.prepare(session, data.feeds() if data is not None else None, optimize=optimize)
        return RuntimeCheck(optimize=False)  # the original itself does not load: only loading is checked

    def _validate(self, model: ir.Model, check: RuntimeCheck, exact: bool) -> None:
        """Load the result and hold it against the original on the check feeds (names the problem if any)."""
        try:
            session = self.context.session(model, optimize=check.optimize)
        except Exception as exc:  # onnxruntime raises several unrelated types; all mean the same here
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PassFailedError(f"channels produced a model onnxruntime cannot load: {first}") from exc
        problem = check.problem(session, exact)
        if problem is not None:
            raise PassFailedError(f"channels produced a model that does not stand in for the original: {problem}")


def _only_exact(pruned: _Pruned) -> bool:
    """Whether every removed channel was provably zero or constant (the result must then match exactly)."""
    return all(r in pruned.zero or r in pruned.constant_removed for d in pruned.decisions for r in d.removed)


def _parity(reference: Any, candidate: Any, data: Any, thresholds: ParityThresholds) -> Any:
    from onnxcomp.session import run_named

    accumulator = ParityAccumulator(thresholds)
    for feed in data.feeds():
        accumulator.update(run_named(reference, feed), run_named(candidate, feed))
    return accumulator.result()


def _macs_by_node(summary: Any) -> dict[str, int | None]:
    return {entry.name: entry.macs for entry in summary.macs}


def _outcome(pruned: _Pruned, before: Any, after: Any, ratio: float, trials: list[dict[str, Any]]) -> PassOutcome:
    macs_before, macs_after = _macs_by_node(before), _macs_by_node(after)
    removed = {r for d in pruned.decisions for r in d.removed}
    changed, skipped = [], []
    for source in pruned.analysis.sources:
        kept = sum(1 for e in source.elements.tolist() if pruned.analysis.root(e) not in removed)
        name = source.node.name or source.node.op_type
        changed.append({"layer": name, "op": source.node.op_type, "channels_before": len(source.elements),
                        "channels_after": kept,
                        "macs_before": macs_before.get(name), "macs_after": macs_after.get(name)})
    for decision in pruned.decisions:
        skipped += _group_skips(decision)
    skipped += [Skipped("bias fold", reason) for reason in pruned.fold_skips]
    skipped += [Skipped("constant channels", f"not removed as exact: {reason}") for reason in pruned.constant_blocked]
    changed = [c for c in changed if c["channels_after"] != c["channels_before"]] or []
    summary = {
        "ratio": ratio,
        "criterion": pruned.criterion,
        "round_to": pruned.round_to,
        "groups": len(pruned.groups),
        "groups_pruned": sum(1 for d in pruned.decisions if d.removed),
        "channels_before": sum(d.before for d in pruned.decisions),
        "channels_after": sum(d.after for d in pruned.decisions),
        "zero_channels_removed": pruned.zero_removed,
        "constant_channels_removed": len(pruned.constant_removed),
        **_comparable_macs(macs_before, macs_after),
        "params_before": before.params,
        "params_after": after.params,
        "nothing_removed": not removed,
        "groups_excluded": sum(1 for d in pruned.decisions if d.excluded),
        "group_table": [_group_row(d) for d in pruned.decisions],
        "search": trials,
        "bias_folds": pruned.folded,
    }
    return PassOutcome(modified=bool(removed), changed=changed, skipped=skipped, summary=summary)


def _comparable_macs(before: dict[str, int | None], after: dict[str, int | None]) -> dict[str, Any]:
    """MACs totals over the nodes whose count is known both before and after.

    The rewrite can make shapes *more* known (a computed Reshape target becomes a literal), so raw totals
    would compare different sets of nodes (bert_encoder_opset11 showed a MACs "ratio" of 3.0).
    """
    known = [name for name, macs in before.items() if macs is not None and after.get(name) is not None]
    total_before = sum(before[name] or 0 for name in known)
    total_after = sum(after[name] or 0 for name in known)
    return {"macs_before": total_before, "macs_after": total_after,
            "macs_ratio": total_after / total_before if total_before else 1.0,
            "macs_unknown_nodes": len(before) - len(known)}


def _group_row(decision: GroupDecision) -> dict[str, Any]:
    return {"group": decision.group.label, "channels_before": decision.before, "channels_after": decision.after,
            "frozen": len(decision.group.frozen), "zero_removed": decision.zero_removed,
            "excluded": decision.excluded}


def _group_skips(decision: GroupDecision) -> list[Skipped]:
    group = decision.group
    if decision.excluded:
        return [Skipped(group.label, "excluded by --exclude (only all-zero channels removed)")]
    if not group.frozen:
        return []
    reasons = sorted(set(group.frozen.values()))
    scope = "all" if len(group.frozen) == len(group.roots) else f"{len(group.frozen)} of {len(group.roots)}"
    return [Skipped(group.label, f"{scope} channels frozen: {'; '.join(reasons[:3])}")]

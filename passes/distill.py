"""Knowledge distillation from an ONNX teacher into an ONNX student, with no training code from the user.

Post-training compression (pruning, channel removal, low rank) loses accuracy that retraining would win back,
but a user of an ONNX file rarely has the training code. They do have the original model, which is the ideal
teacher (Hinton, Vinyals and Dean 2015): its temperature-softened outputs carry more per sample than a hard
label, so a few epochs on unlabeled data recover most of what compression cost.

How it runs:

* every feed of the data is kept as the data source gave it: feeds differ in shape from one to the next (OCR
  widths, sentence lengths), and some models have no batch axis at all (a recurrent state ``[2, 1, 128]``, a
  scalar sample rate), so feeds are only re-stacked where they show a batch axis
  (:mod:`onnxcomp.torch_exec.feeds`);
* the teacher runs in onnxruntime, once per feed (its outputs are kept for all epochs);
* the student runs differentiably in torch from its own ONNX graph (:mod:`onnxcomp.torch_exec`); its float
  weights are trained with Adam, every zero weight stays exactly zero (pruning masks), and the trained tensors
  are written back where they were stored, so the file keeps its structure. An optimizer step takes samples
  until they hold ``batch_size``, one backward pass per stack of same-shaped samples or per feed of its own
  (gradients accumulate, each weighted by its share of the samples); ``max_steps`` caps the steps;
* the loss of each output depends on what it is (:mod:`onnxcomp.torch_exec.losses`): KL divergence for class
  distributions, MSE for other float outputs; non-float outputs and outputs no trained weight reaches are left
  out, with a note; with ``use_labels`` and labelled data, ``(1 - alpha) * distillation + alpha *
  cross-entropy`` on the first class output;
* the write-back is verified: onnxruntime's outputs of the written student equal the torch student's, within
  the tolerance plus what the two runtimes already disagreed by before training (float summation order: a
  variance computed as ``E[x²] - E[x]²`` amplifies it);
* tensors that were clustered (few distinct values) keep their clusters: by default their centroids are what
  is trained (every member's gradient summed into its centroid, Deep Compression's fine-tuning), or, with
  ``clustered='recluster'``, every element is trained and the tensor is clustered again afterwards with
  :class:`~onnxcomp.passes.cluster.ClusterPass` at the bits its value count needed;
* deterministic for a seed: torch's seed and deterministic algorithms are set for the run (and restored), the
  shuffling uses a seeded numpy generator; ``threads`` pins torch's intra-op threads.

All feeds are held in memory; distillation data is a few thousand samples at most, the scale at which the
teacher's outputs are also worth caching.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.data import DataSource
from onnxcomp.errors import InputError
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassFailedError, PassOutcome, Skipped
from onnxcomp.session import create_session, run_named
from onnxcomp.torch_exec import require_torch
from onnxcomp.torch_exec.feeds import Outputs, Samples, Unit, step_groups, steps

if TYPE_CHECKING:
    import torch

    from onnxcomp.torch_exec.graph import TorchGraph
    from onnxcomp.torch_exec.losses import Kind

__all__ = ["DistillConfig", "DistillPass", "DistillResult", "Samples", "Unit", "distill", "load_samples"]

LossKind = Literal["auto", "kl", "mse"]
ClusterMode = Literal["share", "recluster", "free"]
Progress = Callable[[int, int, float], None]

#: The write-back check runs on the first feeds, up to this many feeds and this many samples.
_VERIFY_FEEDS = 8
_VERIFY_SAMPLES = 64
#: How much more than before training onnxruntime and torch may disagree on the written student.
_VERIFY_SLACK = 4.0


@dataclass
class DistillConfig:
    """Options of distillation.

    Attributes:
        teacher: Path of the teacher ONNX model (the pass only; the :func:`distill` function takes a model).
            Inside ``onnxcomp optimize`` (a recipe step), leaving it unset distils from the original model
            optimize was given: the one the budget is measured against, and the only teacher that never
            passes on a compression step's error.
        epochs: Passes over the data.
        temperature: Softening of class distributions (T > 1 exposes the teacher's ranking of wrong classes).
        alpha: Weight of the hard-label cross-entropy when ``use_labels``; the distillation loss gets 1 - alpha.
        use_labels: Add the cross-entropy on the data's labels (ignored, with a note, when it carries none).
        lr: Adam learning rate.
        batch_size: Samples per optimizer step.
        seed: Seed for torch and the shuffling.
        threads: torch intra-op threads (``None``: torch's default).
        loss: ``'auto'`` (KL for class distributions, MSE otherwise), or force ``'kl'``/``'mse'`` for every
            float output.
        keep_zeros: Weights that are exactly zero stay exactly zero.
        clustered: What happens to tensors that were clustered (few distinct values): ``'share'`` trains their
            centroids, so they stay exactly clustered; ``'recluster'`` trains every element, then clusters them
            again with ClusterPass; ``'free'`` trains every element and leaves them unclustered.
        tolerance: Largest difference allowed between onnxruntime and torch on the written student beyond what
            they disagreed by before training (absolute, plus the same amount relative to the output's largest
            magnitude).
        max_steps: Stop after this many optimizer steps over all epochs (``None``: no cap); the result notes it.
    """

    teacher: str | None = None
    epochs: int = 5
    temperature: float = 4.0
    alpha: float = 0.5
    use_labels: bool = False
    lr: float = 3e-3
    batch_size: int = 32
    seed: int = 0
    threads: int | None = None
    loss: LossKind = "auto"
    keep_zeros: bool = True
    clustered: ClusterMode = "share"
    tolerance: float = 1e-5
    max_steps: int | None = None

    def __post_init__(self) -> None:
        checks = [(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
                  (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
                  (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
                  (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
                  (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
                  (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
                  (self.max_steps is None or self.max_steps >= 1, f"max steps must be >= 1, got {self.max_steps}"),
                  (self.loss in ("auto", "kl", "mse"), f"loss must be auto, kl or mse, got {self.loss!r}"),
                  (self.clustered in ("share", "recluster", "free"),
                   f"clustered must be share, recluster or free, got {self.clustered!r}")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


# -- data and teacher -------------------------------------------------------------------------------------------

def load_samples(data: DataSource, teacher: ir.Model | bytes | str | Path) -> Samples:
    """Read every feed once and run the teacher on it in onnxruntime."""
    session = create_session(_teacher_source(teacher))
    units = [Unit.of(batch.feed, run_named(session, batch.feed), batch.labels) for batch in data]
    if not units:
        raise InputError("the distillation data holds no samples")
    return Samples(units)


def _teacher_source(teacher: ir.Model | bytes | str | Path) -> bytes | str:
    if isinstance(teacher, ir.Model):
        return io.serialize(teacher)
    if isinstance(teacher, bytes):
        return teacher
    return io.serialize(io.load(str(teacher)))  # validated like any model the user names


# -- running the student ----------------------------------------------------------------------------------------

def _predict(graph: TorchGraph, units: Sequence[Unit]) -> list[Outputs]:
    import torch

    with torch.no_grad():
        return [{k: v.numpy() for k, v in graph(unit.feed).items()} for unit in units]


def _metrics(outputs: Sequence[Outputs], samples: Samples, kinds: Mapping[str, Kind]) -> dict[str, float]:
    """Top-1 agreement with the teacher (and accuracy when labelled) on the first class output."""
    from onnxcomp.torch_exec.losses import agreement, categorical

    score = categorical(kinds)
    if score is None:
        return {}
    units = samples.units
    return agreement(outputs, [u.teacher for u in units], score, [u.labels for u in units])


def _mean_loss(outputs: Sequence[Outputs], samples: Samples, kinds: Mapping[str, Kind], config: DistillConfig,
               use_labels: bool) -> float:
    """The training objective over every feed, from outputs already computed (no gradients needed)."""
    import torch

    from onnxcomp.torch_exec.losses import unit_loss

    total = 0.0
    for out, unit in zip(outputs, samples.units, strict=True):
        labels = None
        if use_labels and unit.labels is not None:
            labels = torch.from_numpy(np.asarray(unit.labels).astype(np.int64))
        loss, _ = unit_loss({k: torch.from_numpy(out[k]) for k in kinds},
                            {k: torch.from_numpy(unit.teacher[k]) for k in kinds}, kinds, config.temperature, labels,
                            config.alpha, differentiable_only=False)
        total += float(loss) * unit.count if loss is not None else 0.0
    return total / max(samples.count, 1)


def _verify_units(samples: Samples) -> list[Unit]:
    chosen, count = [], 0
    for unit in samples.units[:_VERIFY_FEEDS]:
        if chosen and count + unit.count > _VERIFY_SAMPLES:
            break
        chosen.append(unit)
        count += unit.count
    return chosen


def _differences(model: ir.Model, units: Sequence[Unit], expected: Sequence[Outputs]) -> dict[str, tuple[float, float]]:
    """``(max |onnxruntime - torch|, max |torch|)`` per float output over ``units``."""
    session = create_session(io.serialize(model))
    found: dict[str, tuple[float, float]] = {}
    for unit, torch_out in zip(units, expected, strict=True):
        actual = run_named(session, unit.feed)
        for name, array in torch_out.items():
            if array.dtype.kind != "f" or not array.size:
                continue
            diff = float(np.max(np.abs(actual[name].astype(np.float64) - array)))
            scale = float(np.max(np.abs(array)))
            old = found.get(name, (0.0, 0.0))
            found[name] = (max(old[0], diff), max(old[1], scale))
    return found


def _verify(model: ir.Model, units: Sequence[Unit], expected: Sequence[Outputs], baseline: Mapping[str, float],
            tolerance: float) -> float:
    """Largest |onnxruntime - torch| over the outputs of the written student; raises past the allowance."""
    worst = 0.0
    for name, (diff, scale) in _differences(model, units, expected).items():
        allowed = tolerance * (1.0 + scale) + _VERIFY_SLACK * baseline.get(name, 0.0)
        if not diff <= allowed:
            raise PassFailedError(f"distill write-back check failed: output {name!r} differs by {diff:.3g} between "
                                  f"onnxruntime and torch (allowed {allowed:.3g})")
        worst = max(worst, diff)
    return worst


# -- training ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _torch_settings(seed: int, threads: int | None) -> Iterator[None]:
    """Seeded, deterministic torch for the run; the caller's settings come back afterwards."""
    import torch

    threads_before, deterministic_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        torch.set_num_threads(threads_before)


@dataclass
class _Training:
    """What the loop reports back besides the weights."""

    losses: list[float]
    steps: int = 0
    capped: bool = False
    trained_on: int = 0  # feed evaluations that had a loss with a gradient
    left_out: set[str] = field(default_factory=set)


def _unit_loss(graph: TorchGraph, unit: Unit, kinds: Mapping[str, Kind], config: DistillConfig,
               use_labels: bool) -> tuple[torch.Tensor | None, list[str]]:
    import torch

    from onnxcomp.torch_exec.losses import unit_loss

    target = {k: torch.from_numpy(v) for k, v in unit.teacher.items() if k in kinds}
    labels = None
    if use_labels and unit.labels is not None:
        labels = torch.from_numpy(np.asarray(unit.labels).astype(np.int64))
    return unit_loss(graph(unit.feed), target, kinds, config.temperature, labels, config.alpha)


def _step(graph: TorchGraph, batch: Sequence[Unit], kinds: Mapping[str, Kind], config: DistillConfig,
          use_labels: bool, run: _Training) -> tuple[float, int]:
    """Accumulate the gradients of one step, one forward per stack of same-shaped samples or per lone feed (one
    graph in memory at a time); returns the summed loss and the samples that had one."""
    size = sum(unit.count for unit in batch)
    total, seen = 0.0, 0
    for unit in step_groups(batch):
        loss, left_out = _unit_loss(graph, unit, kinds, config, use_labels)
        run.left_out.update(left_out)
        if loss is None:
            continue
        (loss * (unit.count / size)).backward()
        total, seen = total + float(loss.detach()) * unit.count, seen + unit.count
        run.trained_on += 1
    return total, seen


def _train(graph: TorchGraph, samples: Samples, kinds: Mapping[str, Kind], config: DistillConfig,
           use_labels: bool, progress: Progress | None) -> _Training:
    import torch

    optimizer = torch.optim.Adam(graph.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    run = _Training(losses=[])
    pieces = samples.pieces()
    for epoch in range(config.epochs):
        order = rng.permutation(len(pieces))
        total, seen = 0.0, 0
        for batch in steps(pieces, order, config.batch_size):
            if config.max_steps is not None and run.steps >= config.max_steps:
                run.capped = True
                break
            optimizer.zero_grad(set_to_none=True)
            step_total, step_seen = _step(graph, batch, kinds, config, use_labels, run)
            total, seen = total + step_total, seen + step_seen
            graph.mask_gradients()
            optimizer.step()
            graph.apply_masks()
            run.steps += 1
        if seen:
            run.losses.append(total / seen)
            if progress is not None:
                progress(epoch + 1, config.epochs, run.losses[-1])
        if run.capped or not run.trained_on:
            break
    return run


# -- clustering -------------------------------------------------------------------------------------------------

def _clustered(graph: TorchGraph) -> dict[str, int]:
    """Trained tensors that look clustered, with the bits their distinct-value count needs."""
    from onnxcomp.torch_exec.graph import cluster_codes

    found = {}
    for weight in graph.trainable:
        codes = cluster_codes(weight.ref.numpy())
        if codes is not None:
            found[weight.ref.name] = max(1, math.ceil(math.log2(max(codes[0].size, 2))))
    return found


def _recluster(model: ir.Model, clustered: dict[str, int]) -> list[dict[str, Any]]:
    """Cluster again the tensors that were clustered, one ClusterPass per bit width, each limited to its tensors."""
    from onnxcomp.passes.cluster import ClusterConfig, ClusterPass

    from onnxcomp.weights import iter_weights

    entries: list[dict[str, Any]] = []
    names = {ref.name for ref in iter_weights(model)}
    for bits in sorted(set(clustered.values())):
        mine = {n for n, b in clustered.items() if b == bits}
        others = tuple(f"^{re.escape(n)}$" for n in sorted(names - mine))
        report = ClusterPass(ClusterConfig(bits=bits, exclude=others, min_size=0))(model).report
        entries += [{**entry, "bits": bits} for entry in report.changed if entry.get("name") in mine]
    return entries


# -- the run ----------------------------------------------------------------------------------------------------

@dataclass
class DistillResult:
    """What a distillation run did: losses per epoch, agreement/accuracy before and after, tensors written."""

    epochs: int
    samples: int
    losses: list[float]
    trained: list[dict[str, Any]]
    frozen: list[Skipped]
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    writeback_max_abs_diff: float
    reclustered: list[dict[str, Any]]
    notes: list[str]
    seconds: float
    feeds: int = 0
    steps: int = 0
    losses_by_output: dict[str, str] | None = None
    interpreter_max_abs_diff: float = 0.0
    loss_before: float | None = None
    loss_after: float | None = None
    reverted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "samples": self.samples, "feeds": self.feeds, "steps": self.steps,
                "losses": self.losses, "losses_by_output": self.losses_by_output or {}, "trained": self.trained,
                "loss_before": self.loss_before, "loss_after": self.loss_after, "reverted": self.reverted,
                "frozen": [{"target": s.target, "reason": s.reason} for s in self.frozen],
                "metrics_before": self.metrics_before, "metrics_after": self.metrics_after,
                "interpreter_max_abs_diff": self.interpreter_max_abs_diff,
                "writeback_max_abs_diff": self.writeback_max_abs_diff, "reclustered": self.reclustered,
                "notes": self.notes, "seconds": self.seconds}


def _output_notes(samples: Samples, kinds: Mapping[str, Kind], left_out: set[str]) -> list[str]:
    notes = []
    for name, array in samples.units[0].teacher.items():
        if name not in kinds:
            notes.append(f"output {name!r} ({array.dtype}) is not float: not compared (it has no gradient)")
    for name in sorted(left_out):
        notes.append(f"output {name!r} does not depend differentiably on any trained weight (on at least one "
                     "feed): left out of the loss there")
    return notes


def _training_notes(graph: TorchGraph, run: _Training, config: DistillConfig) -> list[str]:
    if not graph.trainable:
        return ["no weight can be trained (every float weight is frozen, see the reasons): the model is unchanged"]
    if config.epochs and not run.trained_on:
        return ["no compared output depends on a trained weight: nothing was trained"]
    if run.capped:
        return [f"stopped after {run.steps} optimizer steps (max_steps={config.max_steps})"]
    return []


def distill(student: ir.Model, teacher: ir.Model | bytes | str | Path, data: DataSource | Samples,
            config: DistillConfig | None = None, *, progress: Progress | None = None) -> DistillResult:
    """Train ``student``'s float weights (in place) to match ``teacher`` on ``data``; see the module docstring.

    Args:
        student: The model to train; its weights are replaced, its structure is kept.
        teacher: The model to imitate (in memory, serialized bytes or a path); run in onnxruntime.
        data: The samples (labels used only with ``config.use_labels``), or :class:`Samples` already holding
            the teacher's outputs (the spiral reuses them across rounds).
        config: Options; defaults when omitted.
        progress: Called after each epoch with ``(epoch, epochs, mean loss)``.
    """
    import time

    require_torch("distillation")
    from onnxcomp.torch_exec.graph import TorchGraph
    from onnxcomp.torch_exec.losses import output_kinds

    config = config or DistillConfig()
    start = time.perf_counter()
    # first, so that an op the interpreter lacks fails before the teacher runs over all the data
    graph = TorchGraph(student, keep_zeros=config.keep_zeros, share_clusters=config.clustered == "share")
    samples = data if isinstance(data, Samples) else load_samples(data, teacher)
    notes: list[str] = []
    use_labels = config.use_labels and samples.labels is not None
    if config.use_labels and samples.labels is None:
        notes.append("use_labels is set but the data carries no labels: distillation loss only")
    with _torch_settings(config.seed, config.threads):
        kinds = output_kinds([unit.teacher for unit in samples.units], config.loss)
        if not kinds:
            raise InputError("the teacher has no float outputs to distill from")
        clustered = _clustered(graph) if config.clustered == "recluster" else {}
        verify_units = _verify_units(samples)
        before = _predict(graph, samples.units)
        baseline = {name: diff for name, (diff, _) in
                    _differences(student, verify_units, before[:len(verify_units)]).items()}
        saved = graph.snapshot()
        run = _train(graph, samples, kinds, config, use_labels, progress) if graph.trainable else _Training([])
        after = _predict(graph, samples.units) if run.steps else before
        loss_before = _mean_loss(before, samples, kinds, config, use_labels)
        loss_after = _mean_loss(after, samples, kinds, config, use_labels) if run.steps else loss_before
        reverted = bool(run.steps) and not loss_after < loss_before
        if reverted:  # training that does not lower the objective on its own data is not worth keeping
            graph.restore(saved)
            after = before
            notes.append(f"training raised the distillation loss on the data ({loss_before:.6g} -> {loss_after:.6g}): "
                         "the weights are left as they were")
        trained = graph.write_back() if run.steps and not reverted else []
        diff = _verify(student, verify_units, after[:len(verify_units)], baseline, config.tolerance)
    notes += _training_notes(graph, run, config) + _output_notes(samples, kinds, run.left_out)
    reclustered = _recluster(student, clustered) if clustered and trained else []
    return DistillResult(
        epochs=config.epochs, samples=samples.count, losses=run.losses, trained=trained,
        frozen=[Skipped(ref.name, reason) for ref, reason in graph.frozen],
        metrics_before=_metrics(before, samples, kinds), metrics_after=_metrics(after, samples, kinds),
        writeback_max_abs_diff=diff, reclustered=reclustered, notes=notes, seconds=time.perf_counter() - start,
        feeds=len(samples.units), steps=run.steps, losses_by_output=dict(kinds),
        interpreter_max_abs_diff=max(baseline.values(), default=0.0), loss_before=loss_before,
        loss_after=loss_after, reverted=reverted,
    )


class DistillPass(CompressionPass):
    """Distil the model from a teacher (``config.teacher``, or a model given to the constructor)."""

    name = "distill"
    Config = DistillConfig
    needs = frozenset({Need.DATA})

    def __init__(self, config: DistillConfig | None = None, context: PassContext | None = None, *,
                 teacher: ir.Model | bytes | None = None, progress: Progress | None = None) -> None:
        super().__init__(config, context)
        self.teacher = teacher
        self.progress = progress

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        config: DistillConfig = self.config
        teacher = self.teacher if self.teacher is not None else config.teacher
        if teacher is None:
            raise InputError("distill needs a teacher model (--teacher)")
        assert context.data is not None
        result = distill(model, teacher, context.data, config, progress=self.progress)
        summary = result.to_dict()
        changed, frozen = summary.pop("trained"), result.frozen
        summary.pop("frozen")
        return PassOutcome(modified=config.epochs > 0 and bool(changed), changed=changed, skipped=frozen,
                           summary=summary)

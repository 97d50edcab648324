"""Knowledge distillation from an ONNX teacher into an ONNX student, with no training code from the user.

Post-training compression (pruning, channel removal, low rank) loses accuracy that retraining would win back,
but a user of an ONNX file rarely has the training code. They do have the original model, which is the ideal
teacher (Hinton, Vinyals and Dean 2015): its temperature-softened outputs carry more per sample than a hard
label, so a few epochs on unlabeled data recover most of what compression cost.

How it runs:

* the teacher runs in onnxruntime, once per sample (its outputs are kept for all epochs);
* the student runs differentiably in torch from its own ONNX graph (:mod:`onnxcomp.torch_exec`); its float
  weights are trained with Adam, every zero weight stays exactly zero (pruning masks), and the trained tensors
  are written back where they were stored, so the file keeps its structure;
* loss per output: KL divergence of temperature-softened scores (times T², so gradients keep their scale as
  T changes) for score outputs (float, last axis > 1 class, rank ≥ 2), MSE for any other output; with
  ``use_labels`` and labelled data, ``(1 - alpha) * distillation + alpha * cross-entropy`` on the first score
  output;
* the write-back is verified: onnxruntime's output of the written student equals the torch student's;
* tensors that were clustered (few distinct values) keep their clusters: by default their centroids are what
  is trained (every member's gradient summed into its centroid, Deep Compression's fine-tuning), or, with
  ``clustered='recluster'``, every element is trained and the tensor is clustered again afterwards with
  :class:`~onnxcomp.passes.cluster.ClusterPass` at the bits its value count needed;
* deterministic for a seed: torch's seed and deterministic algorithms are set for the run (and restored), the
  shuffling uses a seeded numpy generator; ``threads`` pins torch's intra-op threads.

All samples are held in memory (stacked along axis 0, the batch axis); distillation data is a few thousand
samples at most, the scale at which the teacher's outputs are also worth caching.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator
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

if TYPE_CHECKING:
    import torch

    from onnxcomp.torch_exec.graph import TorchGraph

__all__ = ["DistillConfig", "DistillPass", "DistillResult", "Samples", "distill", "load_samples"]

LossKind = Literal["auto", "kl", "mse"]
ClusterMode = Literal["share", "recluster", "free"]
Progress = Callable[[int, int, float], None]

_VERIFY_SAMPLES = 64


@dataclass
class DistillConfig:
    """Options of distillation.

    Attributes:
        teacher: Path of the teacher ONNX model (the pass only; the :func:`distill` function takes a model).
            Inside ``onnxcomp optimize`` (a recipe step), leaving it unset distils from the original model
            optimize was given: the one the budget is measured against, and the only teacher that never
            passes on a compression step's error.
        epochs: Passes over the data.
        temperature: Softening of score outputs (T > 1 exposes the teacher's ranking of wrong classes).
        alpha: Weight of the hard-label cross-entropy when ``use_labels``; the distillation loss gets 1 - alpha.
        use_labels: Add the cross-entropy on the data's labels (ignored, with a note, when it carries none).
        lr: Adam learning rate.
        batch_size: Samples per optimizer step.
        seed: Seed for torch and the shuffling.
        threads: torch intra-op threads (``None``: torch's default).
        loss: ``'auto'`` (KL for score outputs, MSE otherwise), or force ``'kl'``/``'mse'`` for every output.
        keep_zeros: Weights that are exactly zero stay exactly zero.
        clustered: What happens to tensors that were clustered (few distinct values): ``'share'`` trains their
            centroids, so they stay exactly clustered; ``'recluster'`` trains every element, then clusters them
            again with ClusterPass; ``'free'`` trains every element and leaves them unclustered.
        tolerance: Largest difference allowed between onnxruntime and torch on the written student
            (absolute, plus the same amount relative to the output's largest magnitude).
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

    def __post_init__(self) -> None:
        checks = [(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
                  (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
                  (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
                  (self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
                  (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
                  (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
                  (self.loss in ("auto", "kl", "mse"), f"loss must be auto, kl or mse, got {self.loss!r}"),
                  (self.clustered in ("share", "recluster", "free"),
                   f"clustered must be share, recluster or free, got {self.clustered!r}")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


@dataclass
class Samples:
    """Every sample of a data source, stacked along the batch axis, with the teacher's outputs."""

    feed: dict[str, np.ndarray]
    labels: np.ndarray | None
    teacher: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(next(iter(self.feed.values())))

    def take(self, index: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray | None]:
        labels = self.labels[index] if self.labels is not None else None
        return ({k: v[index] for k, v in self.feed.items()}, {k: v[index] for k, v in self.teacher.items()}, labels)


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

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "samples": self.samples, "losses": self.losses, "trained": self.trained,
                "frozen": [{"target": s.target, "reason": s.reason} for s in self.frozen],
                "metrics_before": self.metrics_before, "metrics_after": self.metrics_after,
                "writeback_max_abs_diff": self.writeback_max_abs_diff, "reclustered": self.reclustered,
                "notes": self.notes, "seconds": self.seconds}


# -- data and teacher -------------------------------------------------------------------------------------------

def load_samples(data: DataSource, teacher: ir.Model | bytes | str | Path) -> Samples:
    """Read every batch once, run the teacher on it in onnxruntime, and stack the results."""
    session = create_session(_teacher_source(teacher))
    feeds: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray | None] = []
    outputs: list[dict[str, np.ndarray]] = []
    for batch in data:
        feeds.append({k: np.asarray(v) for k, v in batch.feed.items()})
        labels.append(batch.labels)
        outputs.append(run_named(session, batch.feed))
    if not feeds:
        raise InputError("the distillation data holds no samples")
    try:
        feed = {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        teacher_out = {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
    except ValueError as exc:
        raise InputError(f"distillation stacks samples along axis 0 and the batches do not stack: {exc}") from None
    stacked = np.concatenate([np.asarray(lab).reshape(-1) for lab in labels]) if all(
        lab is not None for lab in labels) else None
    return Samples(feed, stacked, teacher_out)


def _teacher_source(teacher: ir.Model | bytes | str | Path) -> bytes | str:
    if isinstance(teacher, ir.Model):
        return io.serialize(teacher)
    if isinstance(teacher, bytes):
        return teacher
    return io.serialize(io.load(str(teacher)))  # validated like any model the user names


# -- loss -------------------------------------------------------------------------------------------------------

def _is_score(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" and array.ndim >= 2 and array.shape[-1] > 1


def _kinds(samples: Samples, config: DistillConfig) -> dict[str, str]:
    """``'kl'`` or ``'mse'`` per float teacher output; non-float outputs are not trained on."""
    kinds = {}
    for name, array in samples.teacher.items():
        if array.dtype.kind != "f":
            continue
        kinds[name] = config.loss if config.loss != "auto" else ("kl" if _is_score(array) else "mse")
    return kinds


def _loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], labels: torch.Tensor | None,
          kinds: dict[str, str], config: DistillConfig) -> torch.Tensor:
    import torch
    import torch.nn.functional as functional

    temperature = config.temperature
    total = torch.zeros(())
    for name, kind in kinds.items():
        s, t = student[name], teacher[name]
        if kind == "kl":
            s2, t2 = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
            total = total + functional.kl_div(functional.log_softmax(s2 / temperature, dim=-1),
                                              functional.log_softmax(t2 / temperature, dim=-1),
                                              reduction="batchmean", log_target=True) * temperature**2
        else:
            total = total + functional.mse_loss(s, t)
    score = next((n for n, k in kinds.items() if k == "kl"), None)
    if labels is not None and score is not None:
        logits = student[score].reshape(-1, student[score].shape[-1])
        total = (1 - config.alpha) * total + config.alpha * functional.cross_entropy(logits, labels)
    return total


# -- metrics ----------------------------------------------------------------------------------------------------

def _predict(graph: TorchGraph, samples: Samples, batch_size: int) -> dict[str, np.ndarray]:
    import torch

    parts: list[dict[str, np.ndarray]] = []
    with torch.no_grad():
        for start in range(0, samples.count, max(batch_size, 256)):
            index = np.arange(start, min(start + max(batch_size, 256), samples.count))
            parts.append({k: v.numpy() for k, v in graph(samples.take(index)[0]).items()})
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _metrics(graph: TorchGraph, samples: Samples, kinds: dict[str, str], batch_size: int) -> dict[str, float]:
    """Top-1 agreement with the teacher (and accuracy when labelled) on the first score output."""
    score = next((n for n, k in kinds.items() if k == "kl" and _is_score(samples.teacher[n])), None)
    if score is None:
        return {}
    student = _predict(graph, samples, batch_size)[score]
    predicted = student.reshape(samples.count, -1, student.shape[-1]).argmax(-1)
    teacher = samples.teacher[score].reshape(samples.count, -1, student.shape[-1]).argmax(-1)
    metrics = {"teacher_agreement": float(np.mean(predicted == teacher))}
    if samples.labels is not None and predicted.shape[1] == 1:
        metrics["accuracy"] = float(np.mean(predicted[:, 0] == samples.labels))
        metrics["teacher_accuracy"] = float(np.mean(teacher[:, 0] == samples.labels))
    return metrics


# -- the run ----------------------------------------------------------------------------------------------------

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


def _train(graph: TorchGraph, samples: Samples, kinds: dict[str, str], config: DistillConfig, use_labels: bool,
           progress: Progress | None) -> list[float]:
    import torch

    optimizer = torch.optim.Adam(graph.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    losses = []
    for epoch in range(config.epochs):
        order = rng.permutation(samples.count)
        total, seen = 0.0, 0
        for start in range(0, samples.count, config.batch_size):
            feed, teacher, labels = samples.take(order[start:start + config.batch_size])
            target = {k: torch.from_numpy(v) for k, v in teacher.items()}
            label_tensor = torch.from_numpy(labels.astype(np.int64)) if use_labels and labels is not None else None
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(graph(feed), target, label_tensor, kinds, config)
            loss.backward()
            graph.mask_gradients()
            optimizer.step()
            graph.apply_masks()
            count = len(next(iter(feed.values())))
            total, seen = total + float(loss.detach()) * count, seen + count
        losses.append(total / seen)
        if progress is not None:
            progress(epoch + 1, config.epochs, losses[-1])
    return losses


def _verify(model: ir.Model, graph: TorchGraph, samples: Samples, tolerance: float) -> float:
    """Largest |onnxruntime - torch| over the outputs of the written student; raises past the tolerance."""
    import torch

    index = np.arange(min(samples.count, _VERIFY_SAMPLES))
    feed = samples.take(index)[0]
    with torch.no_grad():
        expected = {k: v.numpy() for k, v in graph(feed).items()}
    actual = run_named(create_session(io.serialize(model)), feed)
    worst = 0.0
    for name, array in expected.items():
        if array.dtype.kind != "f":
            continue
        diff = float(np.max(np.abs(actual[name].astype(np.float64) - array))) if array.size else 0.0
        scale = float(np.max(np.abs(array))) if array.size else 0.0
        if not diff <= tolerance * (1.0 + scale):
            raise PassFailedError(f"distill write-back check failed: output {name!r} differs by {diff:.3g} between "
                                  "onnxruntime and torch")
        worst = max(worst, diff)
    return worst


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

    config = config or DistillConfig()
    start = time.perf_counter()
    samples = data if isinstance(data, Samples) else load_samples(data, teacher)
    notes: list[str] = []
    use_labels = config.use_labels and samples.labels is not None
    if config.use_labels and samples.labels is None:
        notes.append("use_labels is set but the data carries no labels: distillation loss only")
    with _torch_settings(config.seed, config.threads):
        graph = TorchGraph(student, keep_zeros=config.keep_zeros, share_clusters=config.clustered == "share")
        kinds = _kinds(samples, config)
        if not kinds:
            raise InputError("the teacher has no float outputs to distill from")
        clustered = _clustered(graph) if config.clustered == "recluster" else {}
        before = _metrics(graph, samples, kinds, config.batch_size)
        losses = _train(graph, samples, kinds, config, use_labels, progress)
        after = _metrics(graph, samples, kinds, config.batch_size)
        trained = graph.write_back()
        diff = _verify(student, graph, samples, config.tolerance)
    reclustered = _recluster(student, clustered) if clustered else []
    return DistillResult(
        epochs=config.epochs, samples=samples.count, losses=losses, trained=trained,
        frozen=[Skipped(ref.name, reason) for ref, reason in graph.frozen],
        metrics_before=before, metrics_after=after, writeback_max_abs_diff=diff, reclustered=reclustered,
        notes=notes, seconds=time.perf_counter() - start,
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

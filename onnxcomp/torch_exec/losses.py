"""What distillation compares, output by output: the loss kind of each teacher output, the loss, the agreement.

An output is compared as a categorical distribution over its last axis only when it evidently is one:

* ``kl_prob``: the teacher's values are probabilities (non-negative, each row summing to 1, as after a
  Softmax): KL divergence of the temperature-softened distributions, taken from their logarithms, because a
  softmax of probabilities divided by T would be nearly uniform and teach nothing;
* ``kl``: a 2-D ``[N, C]`` float output (a classification head's logits): KL of ``softmax(logits / T)``, unless
  its rows have unit length (a normalised embedding, as sentence encoders and speaker encoders output);
* ``bce``: every teacher value lies in ``[0, 1]`` (sigmoid scores: a wake word, a detector's class scores, a
  text-probability map): binary cross-entropy against the teacher's score, whose gradient at the logit is
  ``student - teacher`` however saturated the score is (MSE's vanishes there);
* ``mse``: anything else that is float (embeddings, boxes, per-pixel maps, CTC logits, recurrent state). KL is
  shift-invariant per row, so it would let a regression output drift by a constant; MSE does not.

Non-float outputs (labels from ArgMax, indices) have no gradient and are not compared. A float output the
student computes without a path from any trained weight (through a cast to an integer and back, a Shape) is
left out of that feed's loss; the caller notes which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Kind", "agreement", "categorical", "output_kinds", "unit_loss"]

Kind = Literal["kl", "kl_prob", "bce", "mse"]
_PROBABILITY_TOLERANCE = 1e-3
_LOG_FLOOR = 1e-12


def _is_probability(arrays: Sequence[np.ndarray]) -> bool:
    for array in arrays:
        if array.ndim < 1 or array.shape[-1] < 2 or not array.size:
            return False
        if float(array.min()) < 0 or not np.allclose(array.sum(-1, dtype=np.float64), 1.0,
                                                     atol=_PROBABILITY_TOLERANCE):
            return False
    return True


def _is_unit_norm(arrays: Sequence[np.ndarray]) -> bool:
    return all(np.allclose(np.linalg.norm(array.astype(np.float64), axis=-1), 1.0, atol=_PROBABILITY_TOLERANCE)
               for array in arrays)


def _is_unit_interval(arrays: Sequence[np.ndarray]) -> bool:
    return all(array.size and float(array.min()) >= 0 and float(array.max()) <= 1 for array in arrays)


def output_kinds(teacher: Sequence[Mapping[str, np.ndarray]], forced: str = "auto") -> dict[str, Kind]:
    """The loss kind of every float output, judged on the teacher's outputs over all feeds.

    Args:
        teacher: The teacher's outputs, one mapping per feed.
        forced: ``'auto'``, or ``'kl'``/``'mse'`` for every float output (``'kl'`` on probabilities is
            ``'kl_prob'``).
    """
    kinds: dict[str, Kind] = {}
    for name, first in teacher[0].items():
        if first.dtype.kind != "f":
            continue
        arrays = [outputs[name] for outputs in teacher]
        probability = _is_probability(arrays)
        if forced == "mse":
            kinds[name] = "mse"
        elif probability:
            kinds[name] = "kl_prob"
        elif forced == "kl" or (first.ndim == 2 and first.shape[-1] > 1 and not _is_unit_interval(arrays)
                                and not _is_unit_norm(arrays)):
            kinds[name] = "kl"
        elif _is_unit_interval(arrays):
            kinds[name] = "bce"
        else:
            kinds[name] = "mse"
    return kinds


def categorical(kinds: Mapping[str, Kind]) -> str | None:
    """The first output compared as a distribution (top-1 agreement and labels apply to it)."""
    return next((name for name, kind in kinds.items() if kind in ("kl", "kl_prob")), None)


def _log_scores(tensor: torch.Tensor, kind: Kind) -> torch.Tensor:
    """Rows over the last axis, as logits (``kl``) or log-probabilities (``kl_prob``)."""
    rows = tensor.reshape(-1, tensor.shape[-1])
    return rows.clamp_min(_LOG_FLOOR).log() if kind == "kl_prob" else rows


def unit_loss(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor], kinds: Mapping[str, Kind],
              temperature: float, labels: torch.Tensor | None = None, alpha: float = 0.0, *,
              differentiable_only: bool = True) -> tuple[torch.Tensor | None, list[str]]:
    """The loss of one feed, and the outputs left out because nothing trainable reaches them.

    ``differentiable_only=False`` evaluates every output (the loss of outputs computed without gradients,
    before and after training).

    KL terms are multiplied by T², so their gradients keep their scale as T changes (Hinton et al. 2015). With
    ``labels`` (one per row of the categorical output) the loss is ``(1 - alpha) * distillation + alpha *
    cross-entropy``. ``None`` when no compared output depends on a trained weight.
    """
    import torch.nn.functional as functional

    total, skipped = None, []
    for name, kind in kinds.items():
        s, t = student[name], teacher[name]
        if differentiable_only and not s.requires_grad:
            skipped.append(name)
            continue
        if kind == "mse":
            term = functional.mse_loss(s, t.to(s.dtype))
        elif kind == "bce":
            term = functional.binary_cross_entropy(s.clamp(0, 1), t.to(s.dtype))
        else:
            soft_s = functional.log_softmax(_log_scores(s, kind) / temperature, dim=-1)
            soft_t = functional.log_softmax(_log_scores(t.to(s.dtype), kind) / temperature, dim=-1)
            term = functional.kl_div(soft_s, soft_t, reduction="batchmean", log_target=True) * temperature**2
        total = term if total is None else total + term
    score = categorical(kinds)
    usable = score is not None and (student[score].requires_grad or not differentiable_only)
    if total is not None and labels is not None and usable:
        rows = _log_scores(student[score], kinds[score])
        if rows.shape[0] == labels.numel():
            total = (1 - alpha) * total + alpha * functional.cross_entropy(rows, labels.reshape(-1))
    return total, skipped


def agreement(student: Sequence[Mapping[str, np.ndarray]], teacher: Sequence[Mapping[str, np.ndarray]],
              name: str, labels: Sequence[np.ndarray | None]) -> dict[str, float]:
    """Top-1 agreement of ``name`` with the teacher over every row of every feed; accuracy when labelled."""
    agree = rows = correct = teacher_correct = labelled = 0
    for s, t, label in zip(student, teacher, labels, strict=True):
        predicted = s[name].reshape(-1, s[name].shape[-1]).argmax(-1)
        expected = t[name].reshape(-1, t[name].shape[-1]).argmax(-1)
        agree, rows = agree + int(np.sum(predicted == expected)), rows + predicted.size
        if label is not None and np.asarray(label).size == predicted.size:
            flat = np.asarray(label).reshape(-1)
            correct += int(np.sum(predicted == flat))
            teacher_correct += int(np.sum(expected == flat))
            labelled += flat.size
    metrics = {"teacher_agreement": agree / max(rows, 1)}
    if labelled and all(label is not None for label in labels):
        metrics["accuracy"] = correct / labelled
        metrics["teacher_accuracy"] = teacher_correct / labelled
    return metrics

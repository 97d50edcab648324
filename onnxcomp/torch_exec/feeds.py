"""The feeds a training run goes over: each one as the data gave it, and how optimizer steps batch them.

Real feeds differ in shape from one to the next (OCR widths, sentence lengths), and some models have no batch
axis at all (a recurrent state ``[2, 1, 128]``, a scalar sample rate), so feeds are never concatenated on the
guess that axis 0 is a batch. Only a feed that *shows* a batch axis is split and re-stacked: one whose inputs,
teacher outputs and labels all lead with the same count N > 1 (the teacher just ran on those N samples as one
batch). Its samples are shuffled one by one, and a step stacks samples of identical shapes, at most N at a time,
so a model with a fixed batch of N is never fed more. Every other feed is a piece of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Outputs", "Samples", "Unit", "step_groups", "steps"]

Outputs = dict[str, np.ndarray]


@dataclass
class Unit:
    """One feed, the teacher's outputs on it, its labels, and how many samples it holds.

    ``stack_limit`` is how many samples of this shape may share one forward pass: N for a piece of a feed that
    showed a batch of N, 0 for a feed that must run on its own.
    """

    feed: dict[str, np.ndarray]
    teacher: Outputs
    labels: np.ndarray | None
    count: int
    stack_limit: int = 0

    @classmethod
    def of(cls, feed: Mapping[str, np.ndarray], teacher: Outputs, labels: np.ndarray | None) -> Unit:
        feed = {k: np.asarray(v) for k, v in feed.items()}
        count = _batch_count(feed, teacher, labels)
        return cls(feed, teacher, labels, max(count, 1), count if count > 1 else 0)

    def pieces(self) -> list[Unit]:
        """One unit per sample when the feed showed a batch axis, else the feed itself."""
        if not self.stack_limit:
            return [self]
        labels = None if self.labels is None else np.asarray(self.labels).reshape(-1)
        return [Unit({k: v[i:i + 1] for k, v in self.feed.items()}, {k: v[i:i + 1] for k, v in self.teacher.items()},
                     None if labels is None else labels[i:i + 1], 1, self.stack_limit) for i in range(self.count)]

    def signature(self) -> tuple:
        return self.stack_limit, tuple((k, v.shape, v.dtype.str) for k, v in self.feed.items())


def _batch_count(feed: Mapping[str, np.ndarray], teacher: Outputs, labels: np.ndarray | None) -> int:
    """N when every input, teacher output and the labels lead with the same N, else 0."""
    arrays = [*feed.values(), *teacher.values()]
    if not arrays or any(array.ndim == 0 for array in arrays):
        return 0
    leading = {array.shape[0] for array in arrays}
    if len(leading) != 1:
        return 0
    count = leading.pop()
    if labels is not None and np.asarray(labels).size != count:
        return 0
    return count


@dataclass
class Samples:
    """Every feed of a data source with the teacher's outputs: what all epochs of a run train on."""

    units: list[Unit]

    @property
    def count(self) -> int:
        return sum(unit.count for unit in self.units)

    @property
    def labels(self) -> np.ndarray | None:
        """All labels in feed order, or ``None`` unless every feed carries them."""
        if not self.units or any(unit.labels is None for unit in self.units):
            return None
        return np.concatenate([np.asarray(unit.labels).reshape(-1) for unit in self.units])

    @property
    def feed(self) -> dict[str, np.ndarray]:
        """The feeds stacked along axis 0, for callers that run one batch (``InputError`` when they differ)."""
        return _stack([unit.feed for unit in self.units])

    @property
    def teacher(self) -> Outputs:
        """The teacher's outputs stacked along axis 0 (``InputError`` when they differ)."""
        return _stack([unit.teacher for unit in self.units])

    def pieces(self) -> list[Unit]:
        return [piece for unit in self.units for piece in unit.pieces()]


def _stack(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    from onnxcomp.errors import InputError

    try:
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    except ValueError as exc:
        raise InputError(f"the feeds differ in shape and do not stack into one batch: {exc}") from None


def steps(pieces: Sequence[Unit], order: np.ndarray, batch_size: int) -> Iterator[list[Unit]]:
    """Consecutive pieces of ``order`` until they hold ``batch_size`` samples: one optimizer step each."""
    batch: list[Unit] = []
    size = 0
    for index in order:
        batch.append(pieces[index])
        size += pieces[index].count
        if size >= batch_size:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def step_groups(batch: Sequence[Unit]) -> list[Unit]:
    """The forward passes of one step: pieces of one shape stacked (at most their limit), the rest alone."""
    groups: dict[tuple, list[Unit]] = {}
    alone: list[Unit] = []
    for piece in batch:
        (groups.setdefault(piece.signature(), []) if piece.stack_limit else alone).append(piece)
    stacked = []
    for members in groups.values():
        limit = members[0].stack_limit
        for start in range(0, len(members), limit):
            stacked.append(_concatenate(members[start:start + limit]))
    return stacked + alone


def _concatenate(members: Sequence[Unit]) -> Unit:
    if len(members) == 1:
        return members[0]
    labels = None
    if all(m.labels is not None for m in members):
        labels = np.concatenate([np.asarray(m.labels).reshape(-1) for m in members])
    return Unit(_stack([m.feed for m in members]), _stack([m.teacher for m in members]), labels,
                sum(m.count for m in members), members[0].stack_limit)

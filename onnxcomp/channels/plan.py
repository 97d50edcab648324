"""Choosing which channels go: all-zero ones first, then the least important, per group, within a budget.

Each group keeps ``n - floor(ratio * n)`` channels, rounded *up* to a multiple of ``round_to`` (SIMD-friendly
widths; never above ``n``) and at least one. Groups narrower than ``2 * round_to`` are not rounded: rounding
6 channels up to 8 would keep them all, and such narrow layers are not where the time goes.

Why rounding matters (measured, benchmarks/channels.py, onnxruntime CPU with all graph optimisations): its
blocked NCHWc convolutions need channel counts divisible by the SIMD block; resnet at ratio 0.25 without
rounding (12/24/48 channels) ran 1.19x *slower* than the original at batch 32 despite 0.57x the MACs, and
0.93x with counts kept at multiples of 8. All-zero channels always go, even past the budget, since
removing them changes no output. Frozen channels never go; a group with too many frozen channels keeps
more than its budget. Finally no tensor may lose every channel it carries (a Split piece of width 0 is
not a model): the most important channel of such a tensor is kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from onnxcomp.channels.analyze import ChannelGroup
from onnxcomp.channels.graph import UNTRACKED, Analysis


@dataclass
class GroupDecision:
    """What the plan does with one group: channels before, removed ones, of which provably zero."""

    group: ChannelGroup
    ratio: float
    removed: list[int]
    zero_removed: int
    excluded: bool = False

    @property
    def before(self) -> int:
        return len(self.group.roots)

    @property
    def after(self) -> int:
        return self.before - len(self.removed)


def target_keep(n: int, ratio: float, round_to: int) -> int:
    keep = n - math.floor(ratio * n + 1e-9)
    if round_to > 1 and n >= 2 * round_to:
        keep = min(n, math.ceil(keep / round_to) * round_to)
    return max(1, keep)


def decide_group(group: ChannelGroup, ratio: float, round_to: int, scores: dict[int, float],
                 zero: set[int]) -> GroupDecision:
    n = len(group.roots)
    removable = group.removable
    zeros = [r for r in removable if r in zero]
    budget = n - target_keep(n, ratio, round_to)
    count = min(len(removable), max(budget, len(zeros)), n - 1)
    ranked = sorted(removable, key=lambda r: (r not in zero, scores.get(r, 0.0), r))
    removed = ranked[:count]
    return GroupDecision(group, ratio, removed, sum(1 for r in removed if r in zero))


def plan(groups: list[ChannelGroup], ratio_for: Callable[[ChannelGroup], float | None], round_to: int,
         scores: dict[int, float], zero: set[int], analysis: Analysis) -> list[GroupDecision]:
    """One decision per group; ``ratio_for`` returning ``None`` means the group is excluded."""
    decisions = []
    for group in groups:
        ratio = ratio_for(group)
        if ratio is None:
            excluded = [r for r in group.removable if r in zero]
            decisions.append(GroupDecision(group, 0.0, excluded, len(excluded), excluded=True))
            continue
        decisions.append(decide_group(group, ratio, round_to, scores, zero))
    _keep_every_tensor_alive(decisions, scores, analysis)
    return decisions


def _keep_every_tensor_alive(decisions: list[GroupDecision], scores: dict[int, float], analysis: Analysis) -> None:
    removed = {r for d in decisions for r in d.removed}
    owner = {r: d for d in decisions for r in d.removed}
    for track in analysis.tracks.values():
        slots = track.slots.tolist()
        if UNTRACKED in slots:
            continue
        roots = {analysis.root(s) for s in slots}
        if roots <= removed:
            best = max(roots, key=lambda r: (scores.get(r, 0.0), -r))
            removed.discard(best)
            owner[best].removed.remove(best)

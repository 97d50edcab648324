"""Choosing which channels go: all-zero ones first, then the least important, per group, within a budget.

Each group keeps ``n - floor(ratio * n)`` channels, rounded *up* to a multiple of ``round_to`` (SIMD-friendly
widths; never above ``n``; by default the CPU's convolution block, see :func:`simd_channel_block`) and at least
one. Groups narrower than two blocks drop to a smaller block (down to 8), and under 16 channels are not rounded:
rounding 6 channels up to 8 would keep them all, and such narrow layers are not where the time goes.

Why rounding matters (measured, benchmarks/channels.py, onnxruntime CPU with all graph optimisations): its
blocked NCHWc convolutions need channel counts divisible by the SIMD block; resnet at ratio 0.25 without
rounding (12/24/48 channels) ran 1.19x *slower* than the original at batch 32 despite 0.57x the MACs, and
0.93x with counts kept at multiples of 8. All-zero channels always go, even past the budget, since
removing them changes no output. Frozen channels never go; a group with too many frozen channels keeps
more than its budget. Finally no tensor may lose every channel it carries (a Split piece of width 0 is
not a model): the most important channel of such a tensor is kept.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


#: The narrowest SIMD block worth rounding to; narrower groups stay unrounded (see the module docstring).
_MIN_BLOCK = 8


def simd_channel_block() -> int:
    """The channel block onnxruntime's CPU convolutions work in on this machine: 16 with AVX-512, else 8.

    Its blocked (NCHWc) kernels pad channel counts up to the block, so pruning 32 channels to 24 on an
    AVX-512 machine computes 32 anyway (measured on wide_cnn at ratio 0.25: rounding to 8 gave 0.57x the MACs
    and 0.70x the latency, rounding to 16 gave 0.67x the MACs and the same 0.70x latency, keeping accuracy).
    """
    return _simd_block_from_cpuinfo()


@functools.cache
def _simd_block_from_cpuinfo() -> int:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return _MIN_BLOCK
    return 16 if re.search(r"^flags\s*:.*\bavx512f\b", flags, re.M) else _MIN_BLOCK


def target_keep(n: int, ratio: float, round_to: int) -> int:
    """Channels a group of ``n`` keeps: the ratio's share removed, rounded up to a SIMD-friendly width.

    A group too narrow for ``round_to`` (fewer than two blocks) is rounded to the largest smaller power-of-two
    block down to 8, so a 24-channel group still lands on a multiple of 8 when ``round_to`` is 16.
    """
    keep = n - math.floor(ratio * n + 1e-9)
    step = round_to
    while step > _MIN_BLOCK and n < 2 * step:
        step //= 2
    if step > 1 and n >= 2 * step:
        keep = min(n, math.ceil(keep / step) * step)
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

"""Running a channel-removed model where its original ran: same outputs with the same shapes, and for exact
removals (zero and constant channels only) the same values.

The feeds are chosen to catch anything fixed at one input size: with data, the first feed of each distinct input
shape (up to three) and the first one tiled twice along its dynamic axes; without data, seeded standard-normal
floats (integer inputs zero) with every dynamic dim 1 and then 32. Only feeds the original runs on count (an STFT
front-end does not run on one sample), and the sessions use onnxruntime's full graph optimisation, as users do: a
wrong shape in the model's ``value_info`` breaks only there (its optimizer bakes it into a fused Reshape).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from onnxcomp.channels.shapes import MAX_PROBE_ELEMENTS, Feed, session_inputs, tiled_feed, zero_feed

#: Distinct-shape data feeds the check runs, and how many data feeds it looks through to find them.
DATA_SHAPES, DATA_SCAN = 3, 16
#: An exact removal may change an output by float rounding only (summation order of narrower layers).
EXACT_ATOL, EXACT_RTOL = 1e-5, 1e-4


def _signature(feed: Feed) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple(sorted((name, tuple(np.shape(a))) for name, a in feed.items()))


def _size(feed: Feed) -> int:
    return sum(int(np.size(a)) for a in feed.values())


def candidate_feeds(session: object, data_feeds: Iterable[Feed] | None) -> list[Feed]:
    """The feeds to check on, before filtering by what the original runs (see the module docstring)."""
    inputs = session_inputs(session)
    feeds: list[Feed] = []
    if data_feeds is not None:
        seen = set()
        for feed in itertools.islice(data_feeds, DATA_SCAN):
            if _signature(feed) not in seen and len(seen) < DATA_SHAPES:
                seen.add(_signature(feed))
                feeds.append(dict(feed))
        tiled = tiled_feed(feeds[0], inputs) if feeds else None  # None when too large or nothing is dynamic
        if tiled is not None:
            feeds.append(tiled)
        return feeds
    for size in (1, 32):
        synthetic = zero_feed(inputs, size, seed=size)
        if synthetic is not None and (size == 1 or _size(synthetic) <= MAX_PROBE_ELEMENTS) \
                and all(_signature(synthetic) != _signature(f) for f in feeds):
            feeds.append(synthetic)
    return feeds


def _run(session: object, feed: Feed) -> dict[str, np.ndarray]:
    from onnxcomp.session import run_named

    return run_named(session, feed)  # type: ignore[arg-type]


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class RuntimeCheck:
    """The original's outputs on the check feeds, to hold a rewritten model against.

    ``optimize`` says whether the original's session had onnxruntime's graph optimisation; the result's must match.
    """

    feeds: list[Feed] = field(default_factory=list)
    expected: list[dict[str, np.ndarray]] = field(default_factory=list)
    optimize: bool = True

    @classmethod
    def prepare(cls, original: object, data_feeds: Iterable[Feed] | None, optimize: bool = True) -> RuntimeCheck:
        """Run the original (an onnxruntime session) on the candidate feeds; keep those it runs on."""
        check = cls(optimize=optimize)
        for feed in candidate_feeds(original, data_feeds):
            try:
                outputs = _run(original, feed)
            except Exception:  # the original does not run on this feed: it proves nothing about the result
                continue
            check.feeds.append(feed)
            check.expected.append(outputs)
        return check

    def problem(self, candidate: object, exact: bool) -> str | None:
        """Why ``candidate`` (a session) does not stand in for the original on the feeds, or ``None``."""
        for feed, expected in zip(self.feeds, self.expected, strict=True):
            where = ", ".join(f"{name} {list(np.shape(a))}" for name, a in feed.items())
            try:
                got = _run(candidate, feed)
            except Exception as exc:  # onnxruntime raises several unrelated types; all mean the same here
                return f"it fails on {where}: {_first_line(exc)}"
            if list(got) != list(expected):
                return f"its outputs are {list(got)} where the original has {list(expected)}"
            for name, ref in expected.items():
                out = got[name]
                if np.shape(out) != np.shape(ref):
                    return f"output {name} is {list(np.shape(out))} where the original's is {list(np.shape(ref))} " \
                           f"(on {where})"
                if exact and not _close(out, ref):
                    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
                    return f"output {name} changed by {diff:.3g} although only exact removals were made (on {where})"
        return None


def _close(out: np.ndarray, ref: np.ndarray) -> bool:
    if ref.size == 0 or not np.issubdtype(ref.dtype, np.number):
        return bool(np.array_equal(out, ref))
    a, b = out.astype(np.float64), ref.astype(np.float64)
    finite = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), finite):
        return False
    scale = float(np.max(np.abs(b[finite]))) if finite.any() else 0.0
    return float(np.max(np.abs(a[finite] - b[finite]), initial=0.0)) <= EXACT_ATOL + EXACT_RTOL * scale

"""Judge a written model against the original on a corpus model's held-out feeds.

The checks every command's output must pass whatever the command did: onnxruntime loads it, it has the
original's output names, and every output keeps its shape on every feed. Then the facts a user weighs: the
task metric, the largest output difference (lossless steps must be exact), size and latency ratios.
"""

from __future__ import annotations

import lzma
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from onnxcomp.corpus.spec import ModelSpec
from onnxcomp.session import one_line

Feed = dict[str, np.ndarray]


def load_feeds(folder: Path) -> list[Feed]:
    feeds = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as archive:
            feeds.append({name: archive[name] for name in archive.files})
    return feeds


def session(path: Path, threads: int = 1):  # -> ort.InferenceSession
    from onnxcomp.packing.api import open_session

    return open_session(path, "cpu", intra_op_threads=threads)


def run_all(sess, feeds: Sequence[Feed]) -> list[dict[str, np.ndarray]]:
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, feed), strict=True)) for feed in feeds]


@dataclass
class Verdict:
    """What a written model is worth next to the original."""

    loads: bool
    problem: str | None = None
    same_interface: bool | None = None
    max_abs_diff: float | None = None
    metric_value: float | None = None
    metric_passed: bool | None = None
    metric_text: str | None = None
    size_ratio: float | None = None
    latency_ratio: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@cache
def reference_outputs(model: Path, evals: Path) -> tuple[list[dict[str, np.ndarray]],
                                                         tuple[tuple[str, tuple[int, ...]], ...]]:
    feeds = load_feeds(evals)
    outputs = run_all(session(model), feeds)
    return outputs, tuple((name, array.shape) for sample in outputs for name, array in sample.items())


def judge(spec: ModelSpec, model: Path, candidate: Path, evals: Path, *, latency: bool = True) -> Verdict:
    """Load ``candidate``, run it on the feeds in ``evals``, and compare it with ``model`` (the original)."""
    feeds = load_feeds(evals)
    reference, ref_shapes = reference_outputs(model, evals)
    try:
        cand_session = session(candidate)
        outputs = run_all(cand_session, feeds)
    except Exception as exc:  # onnxruntime refusing the model is exactly what this records
        return Verdict(loads=False, problem=one_line(exc, 300))
    shapes = tuple((name, array.shape) for sample in outputs for name, array in sample.items())
    verdict = Verdict(loads=True, same_interface=shapes == ref_shapes,
                      size_ratio=candidate.stat().st_size / model.stat().st_size)
    if not verdict.same_interface:
        verdict.problem = f"outputs differ: {_first_difference(ref_shapes, shapes)}"
        return verdict
    verdict.max_abs_diff = max(_max_abs_diff(r[name], c[name]) for r, c in zip(reference, outputs, strict=True)
                               for name in r)
    try:
        result = spec.metric(reference, outputs)
        verdict.metric_value, verdict.metric_passed = result.value, result.passed
        verdict.metric_text = result.describe()
    except Exception as exc:  # a metric that cannot read the outputs is a finding, not a crash of the run
        verdict.problem = f"metric failed: {one_line(exc, 200)}"
    if latency:
        verdict.latency_ratio = latency_ratio(session(model), cand_session, feeds[0])
    return verdict


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        both_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
        return float(np.nanmax(np.where(both_nan, 0.0, diff), initial=0.0))
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).max(initial=0))


def _first_difference(ref: tuple, cand: tuple) -> str:
    for r, c in zip(ref, cand, strict=False):
        if r != c:
            return f"{r[0]} {r[1]} became {c[0]} {c[1]}"
    return f"{len(ref)} output arrays became {len(cand)}"


def latency_ratio(reference, candidate, feed: Feed, *, rounds: int = 7, budget_s: float = 3.0) -> float:
    """Median of per-round candidate/reference time ratios, runs interleaved so drifts hit both alike."""
    ratios = []
    for sess in (reference, candidate):
        sess.run(None, feed)
    deadline = time.perf_counter() + budget_s
    for _ in range(rounds):
        times = []
        for sess in (reference, candidate):
            start = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / max(times[0], 1e-9))
        if time.perf_counter() > deadline and len(ratios) >= 3:
            break
    return float(np.median(ratios))


def xz_size(path: Path) -> int:
    """Bytes of ``xz -9e`` of the file: the general-purpose compressor a packed file must beat."""
    return len(lzma.compress(path.read_bytes(), preset=9 | lzma.PRESET_EXTREME))

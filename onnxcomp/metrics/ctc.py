"""CTC text recognition: greedy-decode both models' per-frame scores and compare the strings they read.

A CTC recognizer (CRNN, SVTR) emits one score vector per frame; the text is the best class per frame with
repeats merged and blanks dropped. Frame scores can move a lot without changing a character, and a single
flipped frame can add or drop one, so the comparison is on the decoded text: the character error rate (edit
distance over reference length) and the share of lines read exactly the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxcomp.metrics.base import MetricResult, Outputs, check_pairing


def greedy_decode(scores: np.ndarray, *, blank: int = 0) -> list[int]:
    """Best path of one ``[T, C]`` score sequence: argmax per frame, repeats merged, blanks dropped."""
    best = np.asarray(scores).argmax(-1)
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != blank
    return [int(i) for i in best[keep]]


def to_text(indices: Sequence[int], charset: Sequence[str]) -> str:
    """Class indices to a string; ``charset[i]`` is the text of class ``i`` (the blank included, usually ``""``)."""
    return "".join(charset[i] for i in indices)


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_error_rate(truth: Sequence[Sequence[object]], read: Sequence[Sequence[object]]) -> float:
    """Total edit distance over total ground-truth length (strings or index lists, one per line)."""
    errors = sum(edit_distance(t, r) for t, r in zip(truth, read, strict=True))
    return errors / max(1, sum(len(t) for t in truth))


def sequences(array: np.ndarray, *, time_axis: int = -2, class_axis: int = -1) -> np.ndarray:
    """One sample's scores as ``[lines, T, C]``: every index outside the time and class axes is one line."""
    scores = np.moveaxis(np.asarray(array), (time_axis, class_axis), (-2, -1))
    return scores.reshape(-1, *scores.shape[-2:])


def decode_all(samples: Sequence[Outputs], *, output: str | None = None, time_axis: int = -2, class_axis: int = -1,
               blank: int = 0) -> list[list[int]]:
    """Greedy-decode every line of every sample, in order."""
    name = output or next(iter(samples[0]))
    return [greedy_decode(line, blank=blank) for s in samples
            for line in sequences(s[name], time_axis=time_axis, class_axis=class_axis)]


def ctc_cer(reference: Sequence[Outputs], candidate: Sequence[Outputs], *, output: str | None = None,
            time_axis: int = -2, class_axis: int = -1, blank: int = 0, charset: Sequence[str] | None = None,
            ignore: Sequence[int] = (), bar: float = 0.005) -> MetricResult:
    """Character error rate of the candidate's greedy decode against the reference's (primary, lower is better).

    Also reports exact-line agreement and frame-level argmax agreement. With ``charset`` the lines are compared
    as text (two classes may spell the same), and the mismatch examples in ``details`` are readable. Classes in
    ``ignore`` are dropped from both decodes before comparing (e.g. the space of a recognizer that places spaces
    unreliably); the CER counting them is then reported too, as ``cer_with_ignored``.
    """
    check_pairing(reference, candidate)
    name = output or next(iter(reference[0]))
    axes = {"output": name, "time_axis": time_axis, "class_axis": class_axis}
    ref_lines = decode_all(reference, blank=blank, **axes)
    cand_lines = decode_all(candidate, blank=blank, **axes)
    if len(ref_lines) != len(cand_lines):
        raise ValueError(f"reference holds {len(ref_lines)} lines, candidate {len(cand_lines)}")
    dropped = set(ignore)

    def comparable(lines: list[list[int]], drop: set[int]) -> list[Sequence[object]]:
        kept = [[i for i in line if i not in drop] for line in lines]
        return [to_text(line, charset) for line in kept] if charset is not None else list(kept)

    ref_seq, cand_seq = comparable(ref_lines, dropped), comparable(cand_lines, dropped)
    frames = agree = 0
    for ref, cand in zip(reference, candidate, strict=True):
        r = sequences(ref[name], time_axis=time_axis, class_axis=class_axis).argmax(-1)
        c = sequences(cand[name], time_axis=time_axis, class_axis=class_axis).argmax(-1)
        if r.shape == c.shape:
            agree += int((r == c).sum())
        frames += r.size
    exact = [r == c for r, c in zip(ref_seq, cand_seq, strict=True)]
    mismatches = [(r, c) for (r, c), same in zip(zip(ref_seq, cand_seq, strict=True), exact, strict=True)
                  if not same]
    values = {"cer": character_error_rate(ref_seq, cand_seq), "exact_line_agreement": float(np.mean(exact)),
              "frame_agreement": agree / max(1, frames)}
    if dropped:
        values["cer_with_ignored"] = character_error_rate(comparable(ref_lines, set()), comparable(cand_lines, set()))
    return MetricResult("CER of greedy CTC decode vs the original", values, bar, higher_is_better=False,
                        details={"lines": len(ref_seq), "reference_chars": sum(len(s) for s in ref_seq),
                                 "output": name, "mismatches": [list(map(str, m)) for m in mismatches[:5]]})

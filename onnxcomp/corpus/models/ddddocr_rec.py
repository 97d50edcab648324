"""ddddocr's captcha recognizer (CNN + bidirectional LSTM + CTC over 8210 classes), its ``common.onnx``.

ddddocr 1.6.1 ships two recognizers; ``common.onnx`` is the one ``DdddOcr(beta=True)`` loads, decoded with the
package's beta charset (blank at index 0; Chinese characters, ASCII letters and digits). Feeds are rendered
captcha-like strings (4 to 6 letters and digits, tilted and jittered over noise and crossing lines), prepared as
its ``OCREngine`` does: PIL resize to height 64 keeping the aspect ratio (Lanczos), grayscale, scaled to [0, 1].

The graph declares its output as ``[1, seqlen]`` but returns per-frame logits ``[T, 1, 8210]`` (T = W / 8);
the package argmaxes the last axis and CTC-collapses, so the metric decodes the same way. Comparing decoded class
indices is comparing the text, one class being one charset entry.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from onnxcomp.corpus.inputs import text
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.ctc import ctc_cer

WHEEL = Wheel("ddddocr", "1.6.1")
MEMBER = "ddddocr/common.onnx"
HEIGHT = 64
OUTPUT = "387"


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB captcha to the ``[1, 1, 64, W]`` input."""
    image = Image.fromarray(rgb)
    width = int(image.size[0] * (HEIGHT / image.size[1]))
    gray = image.resize((width, HEIGHT), Image.Resampling.LANCZOS).convert("L")
    return (np.asarray(gray, dtype=np.float32) / 255.0)[None, None]


def samples(split: str, count: int) -> list[tuple[str, np.ndarray]]:
    """(ground truth, RGB captcha) pairs."""
    rng = text.rng_for("ddddocr_rec", split)
    pairs = []
    for _ in range(count):
        word = text.random_captcha(rng)
        pairs.append((word, text.render_captcha(word, rng)))
    return pairs


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"input1": preprocess(image)} for _, image in samples(split, count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return ctc_cer(reference, candidate, output=OUTPUT, time_axis=0, class_axis=2)


SPEC = ModelSpec(
    name="ddddocr_rec",
    task="captcha text recognition (CRNN + BiLSTM, CTC)",
    exporter="torch.onnx (TorchScript, PyTorch 1.9)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    calib=8,
    evals=8,
    kind="recurrent",
    notes="opset 12, IR 6; input input1 [1, 1, 64, image_width] (batch fixed to 1, width dynamic); output '387' "
          "DECLARED [1, seqlen] but actually [T, 1, 8210] float logits (T = W/8): shape inference on the declared "
          "output is wrong; one bidirectional LSTM node (hidden 512, W [2, 2048, 512]) fed by a Shape/Gather/"
          "Reshape chain; SiLU spelled Sigmoid+Mul; 9 Constant nodes; 54 MB: the Gemm head [8210, 1024] holds "
          "62% of the weights, the LSTM 31%",
)

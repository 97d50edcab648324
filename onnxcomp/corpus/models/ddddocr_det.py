"""ddddocr's click-captcha character detector (YOLOX-style, one class), as the ddddocr wheel ships it.

Feeds are captcha-like pictures: a crop of a bundled photo, a few letters and digits in the Pillow FreeType font
scattered over it (random size, colour, rotation), plus some noise lines. They are prepared as ddddocr's
``DetectionEngine.preproc``: the image as OpenCV decodes it (BGR), scaled by ``r = min(416 / h, 416 / w)``
(bilinear) into the top-left corner of a 416x416 canvas filled with 114, kept in 0..255 (no normalisation).
The metric decodes as ``get_bbox``: grid offsets and exp sizes times the stride, objectness x class score,
score > 0.1, class-agnostic NMS at IoU 0.45 with ddddocr's inclusive-pixel (+1) areas.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnxcomp.corpus.inputs import photos
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.detection import Detections, decode_yolox, detection_f1

WHEEL = Wheel("ddddocr", "1.6.1")
SIZE = 416
GLYPHS = "ABCDEFGHJKLMNPQRSTUVWXYZabdefghkmnpqrstuy23456789"


def render_captcha(split: str, index: int) -> np.ndarray:
    """One RGB captcha: a photo crop with 3-6 rotated characters that do not overlap much."""
    rng = np.random.default_rng([23, 0 if split == "calib" else 1, index])
    width, height = int(rng.integers(260, 400)), int(rng.integers(140, 240))
    photo = photos.variant(split, index, seed=23)
    page = Image.fromarray(photo).resize((width, height), Image.BILINEAR)
    taken: list[tuple[int, int, int]] = []
    for _ in range(int(rng.integers(3, 7))):
        size = int(rng.integers(30, 52))
        font = ImageFont.load_default(size=size)
        glyph = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(glyph).text((size // 2, size // 3), GLYPHS[int(rng.integers(len(GLYPHS)))], fill=255,
                                   font=font)
        glyph = glyph.rotate(float(rng.uniform(-35, 35)), resample=Image.BILINEAR)
        for _attempt in range(20):
            x, y = int(rng.integers(0, width - size * 2 + 1)), int(rng.integers(0, height - size * 2 + 1))
            if all(abs(x - tx) > (size + ts) * 0.7 or abs(y - ty) > (size + ts) * 0.7 for tx, ty, ts in taken):
                break
        taken.append((x, y, size))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        page.paste(Image.new("RGB", glyph.size, colour), (x, y), glyph)
    draw = ImageDraw.Draw(page)
    for _ in range(int(rng.integers(0, 4))):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(points, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=int(rng.integers(1, 3)))
    return np.asarray(page)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """RGB image to ddddocr's ``[1, 3, 416, 416]`` float32 input (BGR, 0..255, top-left letterbox on 114)."""
    h, w = rgb.shape[:2]
    r = min(SIZE / h, SIZE / w)
    resized = photos.resize_bilinear(rgb[..., ::-1], (int(w * r), int(h * r)))
    canvas = np.full((SIZE, SIZE, 3), 114, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"images": preprocess(render_captcha(split, i))} for i in range(count)]


def decode(sample: Outputs) -> list[Detections]:
    return decode_yolox(sample["output"], input_hw=(SIZE, SIZE), score_threshold=0.1, iou_threshold=0.45, offset=1.0)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return detection_f1(reference, candidate, decode=decode, iou_threshold=0.5, class_aware=False)


SPEC = ModelSpec(
    name="ddddocr_det",
    task="captcha character detection (YOLOX-style, ddddocr)",
    exporter="torch.onnx (TorchScript, PyTorch 1.9)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, "ddddocr/common_det.onnx"),
    inputs=inputs,
    metric=metric,
    holdout=True,
    kind="conv",
    notes="opset 11, IR 6; fixed input images [1, 3, 416, 416] in 0..255 (no normalisation in or before the "
          "graph); output [1, 3549, 6] = 52x52 + 26x26 + 13x13 cells x (dx, dy, log w, log h, objectness, one "
          "class), sigmoids applied in-graph, grid decoding left to the caller; SiLU as Sigmoid*Mul (80), Focus-"
          "style Slice stem, SPP MaxPools, nearest Resize upsampling",
)

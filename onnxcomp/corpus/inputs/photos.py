"""Real photos for the vision models: the images scikit-image ships inside its wheel, cropped, flipped and scaled.

Only the files bundled in the wheel are used (``skimage.data`` fetches the others with pooch, which would need the
network). The photo lists of the two splits are disjoint, and so are the faces of the LFW subset, so calibration
and evaluation never share a sample. Every variant comes from a seeded generator: the same call gives the same
pixels on every machine. ``resize_bilinear`` follows OpenCV's ``INTER_LINEAR`` (half-pixel centres, no
anti-aliasing), which is what the packages resize with, without needing OpenCV.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

#: Bundled photos per split; people are in both (astronaut / camera) so face detectors find something.
PHOTOS = {
    "calib": ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "moon", "grass", "brick", "clock",
              "stereo_motorcycle"),
    "eval": ("camera", "colorwheel", "coins", "hubble_deep_field", "retina", "page", "text", "gravel", "cell",
             "logo"),
}


@cache
def load(name: str) -> np.ndarray:
    """One bundled photo as ``H x W x 3`` uint8 RGB (grey is repeated, alpha dropped)."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def variant(split: str, index: int, *, names: Sequence[str] | None = None, seed: int = 0, min_crop: float = 0.6,
            max_side: int = 800) -> np.ndarray:
    """Image ``index`` of the split as RGB: its photos in turn, whole the first time round, then random crops
    (``min_crop`` to all of each side) and mirror flips; larger than ``max_side`` is scaled down (bilinear)."""
    names = tuple(names or PHOTOS[split])
    rng = np.random.default_rng([seed, _split_key(split), index])
    image = load(names[index % len(names)])
    if index >= len(names):
        h, w = image.shape[:2]
        ch, cw = (int(s * rng.uniform(min_crop, 1.0)) for s in (h, w))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        image = image[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            image = image[:, ::-1]
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = resize_bilinear(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    return np.ascontiguousarray(image)


def variants(split: str, count: int, *, names: Sequence[str] | None = None, seed: int = 0, min_crop: float = 0.6,
             max_side: int = 800) -> list[np.ndarray]:
    """Images ``0 .. count - 1`` of the split (see :func:`variant`)."""
    return [variant(split, i, names=names, seed=seed, min_crop=min_crop, max_side=max_side) for i in range(count)]


@cache
def faces(split: str) -> np.ndarray:
    """The LFW subset's face crops (``N x 25 x 25`` uint8): the first 50 for calib, the other 50 for eval."""
    import skimage.data

    lfw = (skimage.data.lfw_subset()[:100] * 255).round().astype(np.uint8)  # the last 100 are not faces
    return lfw[:50] if split == "calib" else lfw[50:]


def face_mosaic(split: str, index: int, *, size: int = 320, seed: int = 0) -> np.ndarray:
    """A grey ``size x size`` RGB sheet of the split's faces in a 3x3 or 4x4 grid, some mirrored, on a flat tone."""
    rng = np.random.default_rng([seed, _split_key(split), index])
    pool = faces(split)
    grid = 3 + index % 2
    cell = size // grid
    canvas = np.full((size, size), int(rng.integers(60, 200)), np.uint8)
    for slot, face in enumerate(rng.choice(len(pool), grid * grid, replace=False)):
        side = int(cell * rng.uniform(0.75, 0.95))
        tile = resize_bilinear(pool[face], (side, side))
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        row, col = divmod(slot, grid)
        top = row * cell + int(rng.integers(0, cell - side + 1))
        left = col * cell + int(rng.integers(0, cell - side + 1))
        canvas[top : top + side, left : left + side] = tile
    return np.repeat(canvas[..., None], 3, axis=-1)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size = (width, height)`` like ``cv2.resize(..., INTER_LINEAR)``; uint8 in, uint8 out."""
    width, height = size
    src = np.asarray(image, dtype=np.float32)
    rows, wy = _taps(src.shape[0], height)
    cols, wx = _taps(src.shape[1], width)
    shape = (-1,) + (1,) * (src.ndim - 1)
    vertical = src[rows[0]] * wy[0].reshape(shape) + src[rows[1]] * wy[1].reshape(shape)
    shape = (1, -1) + (1,) * (src.ndim - 2)
    out = vertical[:, cols[0]] * wx[0].reshape(shape) + vertical[:, cols[1]] * wx[1].reshape(shape)
    if np.asarray(image).dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.asarray(image).dtype)


def _taps(src: int, dst: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Source indices and weights of each output pixel: centres aligned, edges clamped (OpenCV's rule)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    low = np.floor(pos)
    frac = pos - low
    frac[low < 0] = 0.0
    low = np.clip(low, 0, src - 1).astype(np.int64)
    high = np.minimum(low + 1, src - 1)
    frac[low >= src - 1] = 0.0
    return (low, high), ((1.0 - frac).astype(np.float32), frac.astype(np.float32))


def _split_key(split: str) -> int:
    if split not in PHOTOS:
        raise ValueError(f"split must be 'calib' or 'eval', not {split!r}")
    return 0 if split == "calib" else 1

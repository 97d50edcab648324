"""Rendered text for the OCR models: text lines, captcha strings and document pages.

Everything is drawn with the FreeType font Pillow bundles (``ImageFont.load_default(size=...)``, Aileron), so the
images are the same on any machine with only pip packages. Images are RGB ``uint8`` arrays ``[H, W, 3]``; every
maker takes a ``numpy`` Generator so a corpus split is reproducible. The ground-truth text comes back with the
image, which lets a corpus check that the original model really reads what was drawn.
"""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "the", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "this", "that", "be",
    "are", "was", "it", "or", "an", "not", "have", "has", "can", "will", "new", "all", "one", "two", "more", "time",
    "year", "day", "week", "page", "data", "total", "order", "number", "price", "date", "name", "city", "street",
    "office", "report", "account", "balance", "payment", "invoice", "customer", "service", "address", "phone",
    "email", "model", "version", "system", "value", "table", "store", "open", "close", "north", "south", "river",
    "market", "house", "paper", "window", "light", "water", "green", "blue", "black", "white", "red", "small",
    "large", "first", "last", "next", "only", "good", "best", "free", "fast", "simple", "public", "local", "world",
    "company", "project", "meeting", "morning", "evening", "notice", "please", "thank", "you", "room", "floor",
    "ticket", "train", "station", "hotel", "coffee", "menu", "receipt",
)
#: captcha makers leave out glyphs that are ambiguous even to people: 0/O/o, 1/I/l, and letters whose two cases
#: differ only in size (c, k, p, s, u, v, w, x, z)
CAPTCHA_CHARS = "23456789ABDEFGHJLMNQRTYabdefghijmnqrty"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rng_for(name: str, split: str) -> np.random.Generator:
    """A generator per (model, split): calib and eval draw from unrelated streams, the same on every run."""
    return np.random.default_rng([zlib.crc32(name.encode()), zlib.crc32(split.encode())])


@cache
def font(size: int) -> ImageFont.FreeTypeFont:
    face = ImageFont.load_default(size=size)
    if not isinstance(face, ImageFont.FreeTypeFont):  # Pillow without FreeType falls back to a bitmap font
        raise RuntimeError("Pillow was built without FreeType: cannot render text at a chosen size")
    return face


def _token(rng: np.random.Generator) -> str:
    kind = rng.choice(6, p=[0.7, 0.08, 0.06, 0.06, 0.05, 0.05])
    if kind == 0:
        word = str(rng.choice(WORDS))
        return word.capitalize() if rng.random() < 0.3 else word.upper() if rng.random() < 0.05 else word
    if kind == 1:
        return str(rng.integers(0, 100000))
    if kind == 2:
        return f"${rng.integers(1, 5000)}.{rng.integers(0, 100):02d}"
    if kind == 3:
        return f"{rng.integers(2000, 2030)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == 4:
        return f"{rng.integers(1, 29)} {rng.choice(_MONTHS)}"
    return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}"


def random_line(rng: np.random.Generator, words: tuple[int, int] = (2, 7)) -> str:
    """A short line of English words, numbers, prices, dates and times, as on a receipt or a form."""
    text = " ".join(_token(rng) for _ in range(int(rng.integers(words[0], words[1] + 1))))
    return text + str(rng.choice(list(".:,;"))) if rng.random() < 0.15 else text


def random_captcha(rng: np.random.Generator, length: tuple[int, int] = (4, 6)) -> str:
    return "".join(rng.choice(list(CAPTCHA_CHARS), size=int(rng.integers(length[0], length[1] + 1))))


def _colors(rng: np.random.Generator, contrast: int = 110) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A (foreground, background) pair whose grey levels differ by at least ``contrast``."""
    while True:
        fg, bg = rng.integers(0, 256, size=(2, 3))
        if abs(int(bg.mean()) - int(fg.mean())) >= contrast:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def render_line(text: str, rng: np.random.Generator, size: int = 32, color: bool = True) -> np.ndarray:
    """One line of text on a plain background, cropped with a small margin as a detector's box would be."""
    face = font(size)
    fg, bg = _colors(rng) if color else ((20, 20, 20), (245, 245, 240))
    left, top, right, bottom = face.getbbox(text)
    pad_x, pad_y = int(rng.integers(2, size // 2 + 3)), int(rng.integers(2, size // 4 + 3))
    image = Image.new("RGB", (right - left + 2 * pad_x, bottom - top + 2 * pad_y), bg)
    ImageDraw.Draw(image).text((pad_x - left, pad_y - top), text, font=face, fill=fg,
                               stroke_width=int(rng.random() < 0.2), stroke_fill=fg)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(0.0, 6.0), size=pixels.shape)  # sensor/scan noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_captcha(text: str, rng: np.random.Generator, width: int = 0, height: int = 0,
                   tilt: float = 20.0) -> np.ndarray:
    """A captcha-like image: jittered, tilted characters over a noisy background with crossing lines."""
    size = int(rng.integers(30, 44))
    glyphs = []
    for char in text:
        fg, _ = _colors(rng, 0)
        fg = tuple(v // 2 for v in fg)  # dark strokes on a light background
        tile = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((size // 2, size // 3), char, font=font(size), fill=(*fg, 255))
        glyphs.append(tile.rotate(float(rng.uniform(-tilt, tilt)), resample=Image.Resampling.BICUBIC))
    step = int(size * 0.72)
    width = width or step * len(text) + size
    height = height or int(size * 1.6)
    base = rng.integers(170, 256, size=3)
    noise = rng.normal(0.0, 18.0, size=(height, width, 3))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    x = int(rng.integers(0, max(1, width - step * len(text) - size // 2)))
    for tile in glyphs:
        y = int(rng.integers(-size // 3, max(-size // 3 + 1, height - int(size * 1.5))))
        image.paste(tile, (x - size // 3, y), tile)
        x += step + int(rng.integers(-3, 4))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(points, fill=tuple(int(v) for v in rng.integers(60, 200, size=3)), width=int(rng.integers(1, 3)))
    return np.asarray(image)


def render_page(rng: np.random.Generator, width: int, height: int, scene: bool = False) -> tuple[np.ndarray, list[str]]:
    """A document page (title and paragraphs on paper) or, with ``scene``, a few colored signs on a backdrop.

    Returns the image and the lines drawn on it, top to bottom.
    """
    if scene:
        backdrop = rng.integers(0, 256, size=3)
        ramp = np.linspace(0.7, 1.1, height)[:, None, None]
        image = Image.fromarray(np.clip(backdrop * ramp + np.zeros((1, width, 3)), 0, 255).astype(np.uint8))
    else:
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(232, 256, size=3)))
    draw = ImageDraw.Draw(image)
    lines: list[str] = []
    y = int(rng.integers(height // 30, height // 10))
    margin = int(rng.integers(width // 20, width // 8))
    first = True
    while True:
        size = int(rng.integers(28, 44) if first or scene else rng.integers(14, 26))
        text = random_line(rng, (1, 3) if first or scene else (3, 9))
        face = font(size)
        while face.getlength(text) > width - 2 * margin and " " in text:
            text = text.rsplit(" ", 1)[0]
        if y + size * 1.4 > height - height // 20:
            break
        fg, bg = _colors(rng)
        x = margin if not scene else int(rng.integers(margin // 2, max(margin, width - int(face.getlength(text)))))
        if scene:  # a sign: text on its own colored plate
            left, top, right, bottom = draw.textbbox((x, y), text, font=face)
            draw.rectangle((left - 8, top - 6, right + 8, bottom + 6), fill=bg)
        draw.text((x, y), text, font=face, fill=fg if scene else tuple(v // 4 for v in fg))
        lines.append(text)
        y += int(size * (rng.uniform(1.8, 3.0) if first or scene else rng.uniform(1.3, 1.9)))
        first = False
    return np.asarray(image), lines

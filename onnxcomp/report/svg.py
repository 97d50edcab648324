"""Small inline-SVG charts for the HTML report: vertical bars, horizontal bars and overlaid histograms.

Hand-written rather than a plotting library: the page must be one file with no script and no network, and
three chart shapes cover every plot the report needs. Every chart is an ``<svg class="plot">`` with a
``data-plot`` name (tests find the plots by it), a ``<title>`` for accessibility and a ``<rect>`` per bar.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Bar", "Series", "bar_chart", "hbar_chart", "histogram_chart"]

PALETTE = ("#3b6ea5", "#d9822b", "#5a9e4b", "#b04a5a", "#7a5ea8")
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value, the text shown at its end, and an optional colour index."""

    label: str
    value: float
    text: str = ""
    color: int = 0


@dataclass(frozen=True)
class Series:
    """One histogram: bin counts over shared edges."""

    name: str
    counts: Sequence[float]


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _open(name: str, title: str, width: int, height: int) -> list[str]:
    return [f'<svg class="plot" data-plot="{_esc(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
            f"<title>{_esc(title)}</title>"]


def bar_chart(name: str, title: str, bars: Sequence[Bar], *, width: int = 640, height: int = 260) -> str:
    """Vertical bars with their label underneath and their text on top (e.g. size by stage)."""
    parts = _open(name, title, width, height)
    top, bottom, left = 24, 40, 12
    plot_h = height - top - bottom
    peak = max((b.value for b in bars), default=0) or 1.0
    slot = (width - 2 * left) / max(1, len(bars))
    for i, bar in enumerate(bars):
        h = max(1.0, plot_h * bar.value / peak)
        x = left + i * slot + slot * 0.15
        y = top + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                     f'fill="{PALETTE[bar.color % len(PALETTE)]}"><title>{_esc(bar.label)}: {_esc(bar.text)}'
                     "</title></rect>")
        cx = x + slot * 0.35
        parts.append(f'<text x="{cx:.1f}" y="{y - 4:.1f}" text-anchor="middle" {_FONT}>{_esc(bar.text)}</text>')
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16:.1f}" text-anchor="middle" {_FONT}>'
                     f"{_esc(bar.label)}</text>")
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#888"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def hbar_chart(name: str, title: str, bars: Sequence[Bar], *, maximum: float | None = None, width: int = 640,
               row: int = 18, label_width: int = 170) -> str:
    """Horizontal bars, one row each, label on the left and text on the right (rankings, per-layer shares)."""
    height = 16 + row * max(1, len(bars)) + 8
    parts = _open(name, title, width, height)
    peak = maximum if maximum is not None else (max((b.value for b in bars), default=0) or 1.0)
    plot_w = width - label_width - 90
    for i, bar in enumerate(bars):
        y = 12 + i * row
        w = max(0.0, plot_w * min(bar.value, peak) / peak) if peak else 0.0
        parts.append(f'<text x="{label_width - 6}" y="{y + row * 0.65:.1f}" text-anchor="end" {_FONT}>'
                     f"{_esc(_clip(bar.label, 28))}</text>")
        parts.append(f'<rect x="{label_width}" y="{y + 2}" width="{max(w, 1.0):.1f}" height="{row - 5}" '
                     f'fill="{PALETTE[bar.color % len(PALETTE)]}"><title>{_esc(bar.label)}: {_esc(bar.text)}'
                     "</title></rect>")
        parts.append(f'<text x="{label_width + w + 5:.1f}" y="{y + row * 0.65:.1f}" {_FONT}>{_esc(bar.text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def histogram_chart(name: str, title: str, edges: Sequence[float], series: Sequence[Series], *,
                    axis_label: Callable[[float], str] = lambda v: f"{v:g}", width: int = 640,
                    height: int = 220) -> str:
    """Overlaid histograms over shared bin edges, each series in its own colour with a legend."""
    parts = _open(name, title, width, height)
    top, bottom, left, right = 22, 36, 12, 12
    plot_w, plot_h = width - left - right, height - top - bottom
    bins = max(1, len(edges) - 1)
    peak = max((max(s.counts, default=0) for s in series), default=0) or 1
    step = plot_w / bins
    for k, s in enumerate(series):
        colour = PALETTE[k % len(PALETTE)]
        for i, count in enumerate(s.counts):
            if count <= 0:
                continue
            h = max(1.0, plot_h * count / peak)
            parts.append(f'<rect x="{left + i * step:.1f}" y="{top + plot_h - h:.1f}" width="{max(step - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="{colour}" fill-opacity="0.6"><title>{_esc(s.name)} '
                         f"[{axis_label(edges[i])}, {axis_label(edges[i + 1])}): {count:g}</title></rect>")
        parts.append(f'<rect x="{left + 8 + 130 * k}" y="6" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{left + 22 + 130 * k}" y="15" {_FONT}>{_esc(_clip(s.name, 18))}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>')
    for i in range(0, bins + 1, max(1, bins // 6)):
        x = left + i * step
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" {_FONT}>'
                     f"{_esc(axis_label(edges[i]))}</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]

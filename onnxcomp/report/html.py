"""The HTML report: one self-contained page rendered from the JSON document.

No script, no external stylesheet, font or image: inline CSS and inline SVG only, so the page opens offline
and shows the same thing everywhere. Each plot section says in words why it is empty when it is (no data,
nothing quantized), rather than leaving a blank box.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from onnxcomp.report.svg import Bar, Series, bar_chart, hbar_chart, histogram_chart

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top} th{background:#f4f4f4}
.verdict{padding:8px 12px;border-radius:4px;font-weight:600;display:inline-block}
.ok{background:#e2f3e0;color:#245c1d} .bad{background:#fbe0e0;color:#8a1f1f} .unknown{background:#eee}
.warn{background:#fff4d6;border:1px solid #e0b44c;padding:6px 10px;border-radius:4px}
.empty{color:#777;font-style:italic} .muted{color:#666;font-size:13px} svg.plot{display:block;margin:6px 0}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _kib(size: float | None) -> str:
    return "n/a" if size is None else f"{size / 1024:,.1f} KiB"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 5) -> str:
    return "n/a" if value is None else (f"{value:.{digits}g}" if isinstance(value, float) else str(value))


def _header(doc: dict[str, Any]) -> str:
    budget, data = doc["budget"], doc["data"]
    if budget["met"] is None:
        verdict = f'<span class="verdict unknown">Budget ({_esc(budget["description"])}) not measured: no data</span>'
    elif budget["met"]:
        verdict = f'<span class="verdict ok">Budget kept: {_esc(budget["description"])}</span>'
    else:
        verdict = (f'<span class="verdict bad">Budget NOT kept ({_esc(budget["description"])}): '
                   f'{_esc("; ".join(budget["failures"]))}</span>')
    sizes = doc["sizes"]
    lines = [f"<h1>onnxcomp optimize: {_esc(doc.get('input', 'model'))}</h1>",
             f'<p class="muted">output {_esc(doc.get("output") or "not written")}; preset/recipe '
             f'{_esc(doc.get("recipe", "n/a"))}; {doc["seconds"]:.1f} s</p>', f"<p>{verdict}</p>",
             f"<p>Size {_kib(sizes[0]['model_bytes'])} → {_kib(sizes[-1]['model_bytes'])}; "
             f"data: {_esc(data['description'] or 'none')}</p>"]
    if data["random"]:
        lines.append('<p class="warn">Measured on <b>random inputs</b>: these are NOT representative of real '
                     "data, so the budget verdict says little about accuracy on real inputs.</p>")
    if doc["notes"]:
        lines.append("<ul>" + "".join(f"<li>{_esc(n)}</li>" for n in doc["notes"]) + "</ul>")
    return "\n".join(lines)


def _stages(doc: dict[str, Any]) -> str:
    rows = ["<tr><th>#</th><th>pass</th><th>status</th><th>why</th><th>cosine</th><th>top-1 agr.</th>"
            "<th>model size</th><th>seconds</th></tr>"]
    for stage in doc["stages"]:
        ev = stage.get("evaluation") or {}
        rows.append(f"<tr><td>{stage['index'] + 1}</td><td>{_esc(stage['pass'])}</td><td>{_esc(stage['status'])}"
                    f"</td><td>{_esc(stage.get('reason') or '')}</td><td>{_num(ev.get('cosine'), 7)}</td>"
                    f"<td>{_num(ev.get('top1_agreement'), 4)}</td><td>{_kib(stage['model_bytes'])}</td>"
                    f"<td>{stage['seconds']:.2f}</td></tr>")
    return "<h2>Steps</h2><table>" + "".join(rows) + "</table>"


def _size_plot(doc: dict[str, Any]) -> str:
    bars = [Bar(row["stage"], row["model_bytes"], _kib(row["model_bytes"]), 1 if row["stage"] == "pack" else 0)
            for row in doc["sizes"]]
    return "<h2>Size by stage</h2>" + bar_chart("size-by-stage", "Model size after each kept stage", bars)


def _layer_plots(doc: dict[str, Any]) -> str:
    layers = doc["layers"]
    if not layers:
        return '<h2>Layers</h2><p class="empty">No weighted Conv/Gemm/MatMul layers.</p>'
    sparsity = [Bar(r["layer"], r["sparsity_after"] or 0.0,
                    f"{_pct(r['sparsity_after'])} zeros, {_num(r['distinct_after'])} values", 2) for r in layers]
    channels = [Bar(r["layer"], (r["channels_after"] or 0) / r["channels_before"] if r["channels_before"] else 0.0,
                    f"{_num(r['channels_after'])}/{r['channels_before']} kept", 0) for r in layers]
    return ("<h2>Per-layer sparsity</h2>" + hbar_chart("layer-sparsity", "Share of zero weights per layer",
                                                       sparsity, maximum=1.0)
            + "<h2>Channels kept per layer</h2>" + hbar_chart("channels-kept", "Output channels kept per layer",
                                                               channels, maximum=1.0))


def _error_plots(doc: dict[str, Any]) -> str:
    histograms = doc["error_histograms"]
    if not histograms:
        return '<h2>Output error distribution</h2><p class="empty">Not measured (no data).</p>'
    parts = ["<h2>Output error distribution</h2><p class='muted'>|optimized − original| per element on the "
             "data, log scale; exact matches are counted separately.</p>"]
    for name, h in histograms.items():
        parts.append(f"<p class='muted'>{_esc(name)}: {h['zeros']} exact, {h['below_range']} below 1e-9, "
                     f"{h['above_range']} above 1e3</p>")
        parts.append(histogram_chart(f"error-{name}", f"Absolute error of output {name}", h["log10_edges"],
                                     [Series(name, h["counts"])], axis_label=lambda v: f"1e{v:g}"))
    return "".join(parts)


def _latency_plot(doc: dict[str, Any]) -> str:
    latency = doc.get("latency")
    if not latency:
        return '<h2>Latency</h2><p class="empty">Not measured (no data).</p>'
    samples: dict[str, list[float]] = latency["samples_ms"]
    low = min(min(v) for v in samples.values())
    # A descheduled run can take 30x the median; past 3x the slower median it shares the last bin.
    high = min(max(max(v) for v in samples.values()), 3 * max(latency[name]["p50_ms"] for name in samples))
    bins = 30
    width = (high - low) / bins or 1e-6
    edges = [low + i * width for i in range(bins + 1)]
    series = [Series(name, _bin(values, low, width, bins)) for name, values in samples.items()]
    p50 = ", ".join(f"{name} p50 {latency[name]['p50_ms']:.4g} ms" for name in samples)
    return (f"<h2>Latency</h2><p class='muted'>{p50}; interleaved runs on one batch. Measured on whatever else "
            "the machine was doing: compare on a quiet machine before drawing conclusions.</p>"
            + histogram_chart("latency", "Latency distribution before and after (ms)", edges, series,
                              axis_label=lambda v: f"{v:.3g}"))


def _bin(values: list[float], low: float, width: float, bins: int) -> list[int]:
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int((value - low) / width)))] += 1
    return counts


def _sensitivity_plot(doc: dict[str, Any]) -> str:
    ranking = doc["sensitivity"]
    if not ranking:
        quantize = [s for s in doc["stages"] if s["pass"] == "quantize"]
        why = ("int8 met the budget with every kernel quantized, so no ranking was needed" if quantize and
               any(s["status"] != "skipped" for s in quantize) else "quantization did not run")
        return f'<h2>Quantization sensitivity</h2><p class="empty">No ranking: {why}.</p>'
    bars = [Bar(r["node"], r["error"], f"{r['error']:.3g}", 3) for r in ranking[:30]]
    return ("<h2>Quantization sensitivity</h2><p class='muted'>Error when quantizing all kernels but this one "
            "(1 − cosine + disagreement); the most sensitive go back to float first.</p>"
            + hbar_chart("sensitivity", "Quantization sensitivity ranking", bars))


_SECTIONS: tuple[Callable[[dict[str, Any]], str], ...] = (
    _header, _stages, _size_plot, _layer_plots, _error_plots, _latency_plot, _sensitivity_plot,
)


def render_html(document: dict[str, Any]) -> str:
    """The page for a report document (:func:`onnxcomp.report.build_document`)."""
    body = "\n".join(section(document) for section in _SECTIONS)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>onnxcomp report: {_esc(document.get('input', 'model'))}</title>"
            f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n")

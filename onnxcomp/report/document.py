"""The JSON report of ``onnxcomp optimize``: one document with every fact the HTML page plots.

Sections: ``budget`` (what was asked and whether the result keeps it), ``data`` (and whether it is
representative), ``stages`` (one per step: kept / backed-off / reverted / skipped / unchanged, with the reason
and each attempt's measurement), ``sizes`` (bytes per stage, for the size plot), ``parity`` (the checker's
full report of the final model against the original), ``error_histograms``, ``latency`` (samples and
percentiles before and after), ``layers`` (sparsity, distinct values, channels), ``sensitivity`` (quantization's
ranking), ``pack`` and ``notes``. Non-finite floats become null or "inf" so the document is strict JSON.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onnxcomp.optimize import OptimizeResult

__all__ = ["build_document", "jsonable", "summary_lines"]

REPORT_VERSION = 1


def jsonable(value: Any) -> Any:
    """``value`` with tuples as lists, dataclasses via ``to_dict``, callables named and non-finite floats safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if callable(value):
        return getattr(value, "__name__", repr(value))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return value


def _sizes(result: OptimizeResult) -> list[dict[str, Any]]:
    rows = [{"stage": "original", **result.original}]
    for stage in result.stages:
        if stage.status in ("kept", "backed-off"):
            rows.append({"stage": stage.pass_name, "weight_bytes": stage.weight_bytes,
                         "model_bytes": stage.model_bytes})
    if result.pack_report is not None:
        rows.append({"stage": "pack", "weight_bytes": None, "model_bytes": result.pack_report["packed_bytes"]})
    return rows


def _latency(samples: dict[str, list[float]] | None) -> dict[str, Any] | None:
    if not samples:
        return None
    summary: dict[str, Any] = {"samples_ms": samples}
    for name, values in samples.items():
        ordered = sorted(values)
        summary[name] = {f"p{q}_ms": ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
                         for q in (50, 90, 99)}
    names = list(samples)
    first, last = summary[names[0]]["p50_ms"], summary[names[-1]]["p50_ms"]
    summary["ratio_p50"] = last / first if first else None
    return summary


def build_document(result: OptimizeResult) -> dict[str, Any]:
    """The whole report as strict-JSON-ready data."""
    final = result.final
    document = {
        "report_version": REPORT_VERSION,
        "budget": {**result.budget.to_dict(), "description": result.budget.describe(), "met": result.budget_met,
                   "failures": final.failures(result.budget) if final else []},
        "data": {"description": result.data, "random": result.data_is_random,
                 "representative": result.data is not None and not result.data_is_random},
        "notes": result.notes,
        "stages": [stage.to_dict() for stage in result.stages],
        "sizes": _sizes(result),
        "final": final.summary() if final else None,
        "parity": final.parity.to_dict() if final else None,
        "error_histograms": {name: h.to_dict() for name, h in final.histograms.items()} if final else {},
        "latency": _latency(result.latency),
        "layers": result.layers,
        "sensitivity": result.sensitivity,
        "pack": result.pack_report,
        "seconds": result.seconds,
    }
    return jsonable(document)


def _kib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 1024:,.1f} KiB"


def summary_lines(document: dict[str, Any]) -> list[str]:
    """A few lines for the terminal: each stage, sizes, the budget verdict and latency."""
    lines = []
    for stage in document["stages"]:
        reason = f" ({stage['reason']})" if stage.get("reason") else ""
        lines.append(f"  {stage['index'] + 1}. {stage['pass']:<9} {stage['status']}{reason}")
    sizes = document["sizes"]
    lines.append(f"size: {_kib(sizes[0]['model_bytes'])} -> {_kib(sizes[-1]['model_bytes'])} "
                 f"({sizes[0]['model_bytes'] / max(1, sizes[-1]['model_bytes']):.2f}x smaller, "
                 f"last stage: {sizes[-1]['stage']})")
    budget, final = document["budget"], document.get("final")
    if final:
        verdict = "kept" if budget["met"] else "NOT kept: " + "; ".join(budget["failures"])
        accuracy = ""
        if final.get("accuracy_reference") is not None:
            accuracy = f", accuracy {final['accuracy_reference']:.4f} -> {final['accuracy_candidate']:.4f}"
        cosine = final["cosine"]
        top1 = final["top1_agreement"]
        lines.append(f"budget ({budget['description']}) {verdict}: cosine "
                     f"{'n/a' if cosine is None else format(cosine, '.5f')}, top-1 agreement "
                     f"{'n/a' if top1 is None else format(top1, '.4f')}{accuracy}")
    else:
        lines.append(f"budget ({budget['description']}): not measured (no --data)")
    latency = document.get("latency")
    if latency:
        names = [k for k in latency["samples_ms"]]
        lines.append(f"latency p50: {latency[names[0]]['p50_ms']:.4g} ms -> {latency[names[-1]]['p50_ms']:.4g} ms "
                     f"(interleaved runs on this machine; compare on a quiet one)")
    lines += [f"note: {note}" for note in document["notes"]]
    return lines

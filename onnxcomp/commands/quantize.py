"""``onnxcomp quantize``: static int8 (QDQ) quantization calibrated on data, with an accuracy budget."""

from __future__ import annotations

import math
import sys

import click

from onnxcomp import io
from onnxcomp.commands.common import (
    data_options,
    emit_json,
    json_option,
    open_data_for,
    output_options,
    prepare_output,
    render_pass_report,
    say,
    write_model,
)
from onnxcomp.errors import InputError
from onnxcomp.pass_base import PassContext
from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass


@click.command("quantize")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@output_options
@data_options
@click.option("--method", type=click.Choice(["minmax", "percentile", "entropy", "mse"]), default="minmax",
              show_default=True, help="How activation ranges are chosen from the calibration statistics.")
@click.option("--percentile", type=click.FloatRange(50, 100), default=99.99, show_default=True,
              help="Share of values kept by --method percentile.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True, help="Weight scales per channel.")
@click.option("--activations", type=click.Choice(["auto", "uint8", "int8"]), default="auto", show_default=True,
              help="Activation type; auto = on cpu the faster of uint8/int8 as timed here (uint8 when the model "
              "is too slow to time), symmetric int8 on cuda.")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Which runtime's integer kernels the format aims at.")
@click.option("--max-drop", type=click.FloatRange(0, 1), help="Budget: max top-1 accuracy drop (labels) or "
              "disagreement (no labels) vs float, as a fraction.")
@click.option("--min-cosine", type=click.FloatRange(-1, 1), help="Budget: min cosine of every output vs float.")
@click.option("--min-top1", type=click.FloatRange(0, 1), help="Budget: min top-1 agreement with float.")
@click.option("--exclude", metavar="REGEX", help="Nodes (name or op type) that stay float.")
@click.option("--bias-correction/--no-bias-correction", default=True, show_default=True,
              help="Correct each channel's bias for the mean error weight rounding causes.")
@click.option("--speed-aware", is_flag=True, help="Return to float the kernels whose int8 form does not pay "
              "(timed on this machine); the result is never slower than fp32 here.")
@click.option("--require-speedup", is_flag=True, help="Exit 1 and write nothing when int8 is slower than fp32.")
@json_option
def command(model_path: str, output: str, force: bool, data_spec: str | None, shapes: tuple[str, ...],
            batch_size: int, method: str, percentile: float, per_channel: bool, activations: str, target: str,
            max_drop: float | None, min_cosine: float | None, min_top1: float | None, exclude: str | None,
            bias_correction: bool, speed_aware: bool, require_speedup: bool, as_json: bool) -> None:
    """Quantize MODEL to int8 QDQ, calibrated on --data, and write it to -o.

    Exits 0 when written, 1 when --require-speedup finds int8 slower (nothing written), 2 on bad input.
    """
    if not data_spec:
        raise InputError("quantize needs --data (a .npz, a folder of .npz, module:function, or random[:N])")
    if sum(x is not None for x in (max_drop, min_cosine, min_top1)) > 1:
        raise InputError("give at most one of --max-drop, --min-cosine, --min-top1")
    prepare_output(model_path, output, force)
    model = io.load(model_path)
    source = open_data_for(model, data_spec, shapes, batch_size)
    config = QuantizeConfig(method=method, percentile=percentile, per_channel=per_channel, activations=activations,
                            target=target, exclude=exclude, max_drop=max_drop, min_cosine=min_cosine,
                            min_top1=min_top1, bias_correction=bias_correction, speed_aware=speed_aware,
                            measure_target=True)
    report = QuantizePass(config, PassContext(data=source))(model).report
    target_facts = report.summary.get("target") or {}
    refused = require_speedup and bool(target_facts.get("slower"))
    for warning in report.summary.get("warnings", []):
        say(f"onnxcomp: WARNING: {warning}")
    written = None
    if refused:
        say("onnxcomp: --require-speedup: the int8 model is slower than fp32; nothing written")
    elif report.modified:
        written = str(write_model(model, model_path, output, force))
    else:
        reason = next((s.reason for s in report.skipped if s.target == "model"), "nothing quantizable")
        say(f"onnxcomp: {reason}; no model written")
    if as_json:
        emit_json({"report": _jsonable(report.to_dict()), "written": written, "refused": refused})
    else:
        say(render_pass_report(report))
        for line in _facts(report.summary):
            say(line)
        if written:
            say(f"wrote {written}")
    sys.exit(1 if refused else 0)


def _facts(summary: dict) -> list[str]:
    """Budget and target lines the generic pass rendering leaves out (they are nested)."""
    lines = []
    budget = summary.get("budget")
    if budget:
        initial, final = budget["initial"], budget.get("final") or {}
        lines.append(f"  budget: {'met' if budget['met'] else 'NOT met'}; cosine {initial['cosine']:.5f} -> "
                     f"{final.get('cosine', float('nan')):.5f}, drop {initial['drop']} -> {final.get('drop')}")
        for entry in budget["ranking"][:10]:
            lines.append(f"  sensitivity {entry['node']}: {entry['error']:.3g}")
        lines.append(f"  kept float: {', '.join(summary.get('float_nodes') or []) or 'none'}")
    choice = summary.get("activation_choice") or {}
    if choice.get("measured"):
        timings = ", ".join(f"{k} {v:.3g} ms" for k, v in choice["p50_ms"].items())
        lines.append(f"  activations: {choice['chosen']} (measured p50: {timings})")
    speed = summary.get("speed")
    if speed:
        verdict = "int8 pays" if speed["int8_pays"] else "int8 does NOT pay here: every kernel kept float"
        lines.append(f"  speed-aware: {verdict}; returned to float for speed: "
                     f"{', '.join(speed['returned']) or 'none'}")
    target = summary.get("target")
    if target:
        speedup = target.get("speedup")
        lines.append(f"  integer kernels: {target['integer_kernels']} of {target['quantized_kernels']} quantized; "
                     f"int8 {target.get('latency_int8_ms')} ms vs fp32 {target.get('latency_fp32_ms')} ms p50"
                     + (f" (speedup {speedup:.2f}x)" if speedup else ""))
    return lines


def _jsonable(value: object) -> object:
    """The report with callables (a metric given through the API) and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if callable(value):
        return getattr(value, "__name__", repr(value))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""``onnxcomp optimize``: a preset or recipe run within an accuracy budget, with JSON and HTML reports."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from onnxcomp import io
from onnxcomp.commands.common import data_options, emit_json, json_option, open_data_for, say, write_model
from onnxcomp.errors import EXIT_GATE_FAILED, InputError
from onnxcomp.optimize import OptimizeOptions, OptimizeResult, optimize
from onnxcomp.presets import DEFAULT_PRESET, PRESETS, preset_recipe
from onnxcomp.recipe import Budget, Recipe
from onnxcomp.report import render_html, summary_lines
from onnxcomp.torch_exec import require_torch


def default_output(model_path: str, packed: bool) -> Path:
    """``MODEL.opt.onnx`` (or ``.opt.onnxc``) beside the input."""
    path = Path(model_path)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(f"{stem}.opt.{'onnxc' if packed else 'onnx'}")


def _budget(max_drop: float | None, min_cosine: float | None, min_top1: float | None) -> Budget | None:
    given = [x for x in (max_drop, min_cosine, min_top1) if x is not None]
    if len(given) > 1:
        raise InputError("give at most one of --max-drop, --min-cosine, --min-top1")
    return Budget(min_cosine=min_cosine, min_top1=min_top1, max_drop=max_drop) if given else None


@click.command("optimize")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the result (default MODEL.opt.onnx, or .opt.onnxc when packed).")
@click.option("--force", is_flag=True, help="Allow the output to overwrite the input model.")
@data_options
@click.option("--eval-data", "eval_spec", metavar="D",
              help="Held-out data to measure the budget on (default: --data). Recommended: calibration data from "
                   "the training set overstates top-1 agreement on unseen inputs.")
@click.option("--preset", type=click.Choice(list(PRESETS)), help=f"Pass list to run (default {DEFAULT_PRESET}).")
@click.option("--recipe", "recipe_path", type=click.Path(dir_okay=False), help="A YAML recipe instead of a preset.")
@click.option("--save-recipe", "save_recipe", type=click.Path(dir_okay=False),
              help="Also write the recipe that runs (a preset's, to start your own from) as YAML.")
@click.option("--recover", is_flag=True,
              help="Win back accuracy by distillation from the original (needs torch): pruning becomes a gradual "
                   "prune/distill spiral and clustering is followed by distillation of the centroids.")
@click.option("--max-drop", type=float, help="Budget: max top-1 accuracy drop (labels) or disagreement, as a fraction.")
@click.option("--min-cosine", type=float, help="Budget: min cosine similarity of every output to the original.")
@click.option("--min-top1", type=float, help="Budget: min top-1 agreement with the original.")
@click.option("--target", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the model will run: sessions and the int8 format follow it.")
@click.option("--pack", is_flag=True, help="Write a packed .onnxc (the size preset always packs).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write a self-contained HTML report.")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed runs per model for latency comparisons.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary.")
@json_option
def command(model_path: str, output: str | None, force: bool, data_spec: str | None, shapes: tuple[str, ...],
            batch_size: int, eval_spec: str | None, preset: str | None, recipe_path: str | None,
            save_recipe: str | None, recover: bool, max_drop: float | None,
            min_cosine: float | None, min_top1: float | None, target: str, pack: bool, report_path: str | None,
            runs: int, quiet: bool, as_json: bool) -> None:
    """Make MODEL smaller and faster within an accuracy budget measured on --data.

    The default budget is cosine ≥ 0.99 and top-1 agreement ≥ 99% against the original on the data; a step that
    breaks it is backed off or reverted. Exits 0 when written within budget, 1 when the final model misses the
    budget (it is still written, to inspect), 2 on bad input.
    """
    if preset and recipe_path:
        raise InputError("give either --preset or --recipe, not both")
    if recover:
        require_torch("--recover")
    budget = _budget(max_drop, min_cosine, min_top1)
    recipe = Recipe.load(recipe_path) if recipe_path else preset_recipe(preset or DEFAULT_PRESET)
    if recover:
        recipe = recipe.with_recovery()
    packed = pack or recipe.pack
    if packed and output and Path(output).suffix == ".onnx":
        raise InputError(f"{output}: a packed model is an .onnxc container, not ONNX; name the output *.onnxc")
    out = io.check_output_path(output or default_output(model_path, packed), inputs=(model_path,), overwrite=force)
    report_out = io.check_output_path(report_path, inputs=(model_path, out)) if report_path else None
    if save_recipe:
        recipe.save(io.check_output_path(save_recipe, inputs=(model_path, out)))
    model = io.load(model_path)
    data = open_data_for(model, data_spec, shapes, batch_size) if data_spec else None
    if eval_spec and not data_spec:
        raise InputError("--eval-data needs --data too (calibration data for the passes)")
    eval_data = open_data_for(model, eval_spec, shapes, batch_size) if eval_spec else None
    if data is None and not quiet:
        say("onnxcomp: no --data: steps that need data or change outputs are skipped (see the notes)")
    options = OptimizeOptions(budget=budget, target=target, pack=packed, latency_runs=runs, progress=not quiet)
    result = optimize(model, recipe, data, options, eval_data=eval_data)
    _write(result, model_path, out, force)
    document = {"input": model_path, "output": str(out), "recipe": recipe_path or preset or DEFAULT_PRESET,
                **result.to_dict()}
    if report_out is not None:
        with io.atomic_write(report_out, "w") as handle:
            handle.write(render_html(document))
        _readable(report_out)
    if as_json:
        emit_json(document)
    elif not quiet:
        for line in summary_lines(document):
            say(line)
        say(f"wrote {out}" + (f" and {report_out}" if report_out else ""))
    sys.exit(EXIT_GATE_FAILED if result.budget_met is False else 0)


def _write(result: OptimizeResult, model_path: str, out: Path, force: bool) -> None:
    """The model as ONNX, or the packed container when the run packed it (atomically, either way)."""
    if result.packed is None:
        write_model(result.model, model_path, str(out), force)
        return
    with io.atomic_write(out) as handle:
        handle.write(result.packed)
    _readable(out)


def _readable(path: Path) -> None:
    """Give a file written through a private temporary file the usual permissions (umask applied)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)

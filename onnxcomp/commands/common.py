"""What several commands share: options defined once, data opening, model writing and rendering."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.data import DataSource, input_specs, open_data, parse_shapes
from onnxcomp.pass_base import CompressionPass, PassReport

F = TypeVar("F", bound=Callable[..., Any])


def emit_json(document: dict[str, Any]) -> None:
    """Print the one JSON document a ``--json`` run promises on stdout (NaN/inf are not JSON: refuse them)."""
    click.echo(json.dumps(document, indent=2, allow_nan=False))


def say(text: str) -> None:
    """Human output goes to stderr, so stdout stays clean for ``--json`` and pipes."""
    click.echo(text, err=True)


def _stack(func: F, options: Sequence[Callable[[F], F]]) -> F:
    for option in reversed(options):
        func = option(func)
    return func


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(func)


def data_options(func: F) -> F:
    """--data, --shape, --batch-size: how feeds are made, for every command that runs the model."""
    return _stack(func, [
        click.option("--data", "data_spec", metavar="D",
                     help="A .npz (keys = input names), a folder of .npz, package.module:function, "
                          "or random[:N] (warns: not representative)."),
        click.option("--shape", "shapes", multiple=True, metavar="NAME=DxD...",
                     help="Concrete shape for an input's dynamic axes (random data, MACs)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Samples per run when the data stacks samples on a dynamic batch axis."),
    ])


def output_options(func: F) -> F:
    """-o/--output and --force, for every command that writes a model."""
    return _stack(func, [
        click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
                     help="Where to write the result (never the input, unless --force)."),
        click.option("--force", is_flag=True, help="Allow the output to overwrite the input model."),
    ])


def open_data_for(model: ir.Model, data_spec: str, shapes: tuple[str, ...] = (), batch_size: int = 1,
                  ) -> DataSource:
    """Open ``--data`` for ``model``, turning the random-data warning into a line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_data(data_spec, input_specs(model), shapes=parse_shapes(shapes), batch_size=batch_size)
    for warning in caught:
        say(f"onnxcomp: warning: {warning.message}")
    return source


def prepare_output(model_path: str, output: str, force: bool) -> Path:
    """Check the output path before any work, so a long run never ends in 'cannot write'."""
    return io.check_output_path(output, inputs=(model_path,), overwrite=force)


def write_model(model: ir.Model, model_path: str, output: str, force: bool) -> Path:
    """Save atomically next to the requested path; never over the input without --force."""
    return io.save(model, output, source=model_path, overwrite=force)


def apply_and_write(compression_pass: CompressionPass, model: ir.Model, model_path: str, output: str, force: bool,
                    as_json: bool) -> PassReport:
    """Run one pass on ``model``, write the result, and render what it did (the shape of every pass command)."""
    report = compression_pass(model).report
    written = write_model(model, model_path, output, force)
    for warning in report.summary.get("warnings", []):
        say(f"onnxcomp: warning: {warning}")
    if as_json:
        emit_json({"input": model_path, "output": str(written), "report": report.to_dict()})
    else:
        say(render_pass_report(report))
        say(f"wrote {written}")
    return report


def render_pass_report(report: PassReport, *, limit: int = 20) -> str:
    """A compact text rendering of any pass's report: sizes, summary, what changed, what was left alone."""
    lines = [f"{report.name}: {'modified' if report.modified else 'no change'} in {report.seconds:.2f} s, "
             f"weights {_kib(report.weight_bytes_before)} -> {_kib(report.weight_bytes_after)}"]
    lines += [f"  {key}: {value}" for key, value in report.summary.items() if not isinstance(value, list | dict)]
    for entry in report.changed[:limit]:
        lines.append("  changed " + ", ".join(f"{k}={_short(v)}" for k, v in entry.items()))
    if len(report.changed) > limit:
        lines.append(f"  ... {len(report.changed) - limit} more changed (see --json)")
    for skipped in report.skipped[:limit]:
        lines.append(f"  left alone {skipped.target}: {skipped.reason}")
    if len(report.skipped) > limit:
        lines.append(f"  ... {len(report.skipped) - limit} more left alone (see --json)")
    return "\n".join(lines)


def _kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

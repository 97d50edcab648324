"""The ``onnxcomp`` command line: parses options, calls the library, renders its results.

It holds no logic of its own. Human-readable output and progress go to stderr; ``--json`` prints exactly one
JSON document on stdout. Exit codes: 0 ok, 1 a gate failed, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import click

from onnxcomp import io
from onnxcomp.data import DataSource, input_specs, open_data, parse_shapes
from onnxcomp.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, OnnxcompError

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(document: dict[str, Any]) -> None:
    click.echo(json.dumps(document, indent=2, allow_nan=False))


def _say(text: str) -> None:
    click.echo(text, err=True)


# -- options shared by several commands (defined once) ---------------------------------------------------


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")(func)


def data_options(func: F) -> F:
    """--data, --shape, --batch-size: how feeds are made, for every command that runs the model."""
    options = [
        click.option("--data", "data_spec", metavar="D",
                     help="A .npz (keys = input names), a folder of .npz, package.module:function, "
                          "or random[:N] (warns: not representative)."),
        click.option("--shape", "shapes", multiple=True, metavar="NAME=DxD...",
                     help="Concrete shape for an input's dynamic axes (random data, MACs)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Samples per run when the data stacks samples on a dynamic batch axis."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _open_data_for(model_path: str, data_spec: str, shapes: tuple[str, ...], batch_size: int) -> DataSource:
    model = io.load(model_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_data(data_spec, input_specs(model), shapes=parse_shapes(shapes), batch_size=batch_size)
    for warning in caught:
        _say(f"onnxcomp: warning: {warning.message}")
    return source


# -- commands ---------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxcomp")
def cli() -> None:
    """Compress ONNX models and check the result with onnxruntime."""


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DxD...",
              help="Concrete input shape for MACs (dynamic batch axes default to 1).")
@json_option
def inspect(model: str, shapes: tuple[str, ...], as_json: bool) -> None:
    """Describe MODEL: opset, inputs/outputs, ops, weights (bytes, sparsity) and MACs."""
    from onnxcomp.summary import render_text, summarize

    summary = summarize(io.load(model), parse_shapes(shapes) or None)
    if as_json:
        _emit_json(summary.to_dict())
    else:
        _say(render_text(summary))


@cli.command()
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@data_options
@click.option("--provider", "providers", multiple=True, default=("cpu",), show_default=True,
              type=click.Choice(["cpu", "cuda"]), help="Execution provider(s) to compare on; repeatable.")
@click.option("--atol", type=float, help="Max absolute error (with --rtol: |a-b| <= atol + rtol*|ref|).")
@click.option("--rtol", type=float, help="Max relative error.")
@click.option("--min-cosine", type=float, default=0.99, show_default=True,
              help="Min cosine similarity per output (0 disables).")
@click.option("--min-top1", type=float, default=0.99, show_default=True,
              help="Min top-1 agreement on score outputs (0 disables).")
@click.option("--latency", is_flag=True, help="Also measure latency (interleaved runs).")
@click.option("--max-slowdown", type=float, metavar="R",
              help="Fail when candidate p50 latency exceeds R x the reference's (implies --latency).")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs per model.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: runtime's).")
@json_option
def check(reference: str, candidate: str, data_spec: str | None, shapes: tuple[str, ...], batch_size: int,
          providers: tuple[str, ...], atol: float | None, rtol: float | None, min_cosine: float,
          min_top1: float, latency: bool, max_slowdown: float | None, runs: int, threads: int | None,
          as_json: bool) -> None:
    """Compare CANDIDATE against REFERENCE with onnxruntime: parity per output, and latency.

    Exits 0 when every gate passes, 1 when one fails.
    """
    from onnxcomp.check.parity import ParityThresholds
    from onnxcomp.check.report import run_check

    if not data_spec:
        raise click.UsageError("check needs --data (a .npz, a folder of .npz, module:function, or random[:N])")
    io.load(candidate)  # fail early, with one line, on a missing or broken candidate
    source = _open_data_for(reference, data_spec, shapes, batch_size)
    thresholds = ParityThresholds(atol=atol, rtol=rtol, min_cosine=min_cosine or None, min_top1=min_top1 or None)
    report = run_check(
        reference, candidate, source.feeds,
        providers=tuple(dict.fromkeys(providers)),
        thresholds=thresholds,
        latency=latency or max_slowdown is not None,
        max_slowdown=max_slowdown,
        latency_runs=runs,
        intra_op_threads=threads,
        data_description=source.description,
    )
    if as_json:
        _emit_json(report.to_dict())
    else:
        _say(report.render_text())
    sys.exit(report.exit_code)


# -- entry point ------------------------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; our errors become one line on stderr.

    Anything that is not an :class:`OnnxcompError` is a bug: exit 3, with the traceback only when
    ``ONNXCOMP_DEBUG`` is set.
    """
    try:
        result = cli.main(args=argv, prog_name="onnxcomp", standalone_mode=False)
    except click.ClickException as exc:  # usage errors: one line too, with where to look for help
        _say(f"onnxcomp: error: {exc.format_message()} (see 'onnxcomp --help')")
        return exc.exit_code
    except click.exceptions.Abort:
        _say("onnxcomp: aborted; nothing was written")
        return EXIT_BAD_INPUT
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    except OnnxcompError as exc:
        _say(f"onnxcomp: error: {exc}")
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("ONNXCOMP_DEBUG"):
            traceback.print_exc()
        detail = str(exc).splitlines()[0] if str(exc) else ""
        _say(f"onnxcomp: internal error: {type(exc).__name__}: {detail} "
             "(set ONNXCOMP_DEBUG=1 for the traceback, and please report it)")
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())

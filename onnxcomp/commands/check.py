"""``onnxcomp check``: parity and latency of a candidate against a reference, as a release gate."""

from __future__ import annotations

import sys
from typing import Any

import click
from click.core import ParameterSource

from onnxcomp import io
from onnxcomp.check.parity import ParityThresholds
from onnxcomp.check.report import run_check
from onnxcomp.commands.common import data_options, emit_json, json_option, open_data_for, say
from onnxcomp.config import CheckConfig, load_check_config

#: The default gates: what a user would accept from a compressed model without saying otherwise.
DEFAULT_MIN_COSINE = 0.99
DEFAULT_MIN_TOP1 = 0.99


@click.command("check")
@click.argument("reference", type=click.Path(dir_okay=False))
@click.argument("candidate", type=click.Path(dir_okay=False))
@data_options
@click.option("--provider", "providers", multiple=True, default=("cpu",), show_default=True,
              type=click.Choice(["cpu", "cuda"]), help="Execution provider(s) to compare on; repeatable.")
@click.option("--atol", type=float, help="Max absolute error (with --rtol: |a-b| <= atol + rtol*|ref|).")
@click.option("--rtol", type=float, help="Max relative error.")
@click.option("--min-cosine", type=float, default=DEFAULT_MIN_COSINE, show_default=True,
              help="Min cosine similarity per output (0 disables).")
@click.option("--min-top1", type=float,
              help=f"Min top-1 agreement on score outputs (0 disables). Default {DEFAULT_MIN_TOP1}, applied "
                   "only where an output holds scores; when given, a model without score outputs fails.")
@click.option("--latency", is_flag=True, help="Also measure latency (interleaved runs).")
@click.option("--max-slowdown", type=float, metavar="R",
              help="Fail when candidate p50 latency exceeds R x the reference's (implies --latency).")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Timed runs per model.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: runtime's).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Read gate settings from FILE (TOML) instead of [tool.onnxcomp.check] in the nearest "
                   "pyproject.toml; command-line options win over either.")
@json_option
@click.pass_context
def command(ctx: click.Context, reference: str, candidate: str, data_spec: str | None, shapes: tuple[str, ...],
            batch_size: int, providers: tuple[str, ...], atol: float | None, rtol: float | None, min_cosine: float,
            min_top1: float, latency: bool, max_slowdown: float | None, runs: int, threads: int | None,
            config_path: str | None, as_json: bool) -> None:
    """Compare CANDIDATE against REFERENCE with onnxruntime: parity per output, and latency.

    Gate settings can live in [tool.onnxcomp.check] of pyproject.toml (or --config FILE). Exits 0 when every
    gate passes, 1 when one fails, 2 on bad input.
    """
    settings = _settings(ctx, load_check_config(config_path))
    data_spec, batch_size, providers = settings["data_spec"], settings["batch_size"], settings["providers"]
    atol, rtol, min_cosine, min_top1 = settings["atol"], settings["rtol"], settings["min_cosine"], settings["min_top1"]
    latency, max_slowdown, runs, threads = settings["latency"], settings["max_slowdown"], settings["runs"], \
        settings["threads"]
    if not data_spec:
        raise click.UsageError("check needs --data (a .npz, a folder of .npz, module:function, or random[:N])")
    io.load(candidate)  # fail early, with one line, on a missing or broken candidate
    source = open_data_for(io.load(reference), data_spec, shapes, batch_size)
    thresholds = ParityThresholds(atol=atol, rtol=rtol, min_cosine=min_cosine or None,
                                  min_top1=(DEFAULT_MIN_TOP1 if min_top1 is None else min_top1) or None,
                                  min_snr_db=settings["min_snr_db"], require_top1=min_top1 is not None)
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
        emit_json(report.to_dict())
    else:
        say(report.render_text())
    sys.exit(report.exit_code)


#: Command-line parameter -> the CheckConfig field that supplies it when the option was not given.
_FROM_CONFIG = {"data_spec": "data", "batch_size": "batch_size", "providers": "providers", "atol": "atol",
                "rtol": "rtol", "min_cosine": "min_cosine", "min_top1": "min_top1", "latency": "latency",
                "max_slowdown": "max_slowdown", "runs": "runs", "threads": "threads"}


def _settings(ctx: click.Context, config: CheckConfig) -> dict[str, Any]:
    """Each option's value: from the command line when given there, else the config file, else the default."""
    values: dict[str, Any] = {"min_snr_db": config.min_snr_db}
    for parameter, key in _FROM_CONFIG.items():
        given = ctx.get_parameter_source(parameter) not in (ParameterSource.DEFAULT, None)
        from_file = getattr(config, key)
        values[parameter] = ctx.params[parameter] if given or from_file is None else from_file
    return values

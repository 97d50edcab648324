"""``onnxcomp channels``: remove whole channels (structured pruning) from an ONNX model."""

from __future__ import annotations

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
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass


def _layer_ratios(items: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    pairs = []
    for item in items:
        pattern, sep, value = item.rpartition("=")
        try:
            pairs.append((pattern, float(value)))
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--layer-ratio takes REGEX=RATIO, got {item!r}")
    return tuple(pairs)


def _table(report_summary: dict) -> list[str]:
    lines = [f"  {'group':48s} {'before':>6s} {'after':>6s} {'frozen':>6s}"]
    for row in report_summary.get("group_table", []):
        lines.append(f"  {row['group'][:48]:48s} {row['channels_before']:6d} {row['channels_after']:6d} "
                     f"{row['frozen']:6d}{'  excluded' if row['excluded'] else ''}")
    return lines


@click.command("channels")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--ratio", type=float, default=0.25, show_default=True,
              help="Share of each channel group to remove, in [0, 1) (upper bound with --max-drop).")
@click.option("--criterion", type=click.Choice(["auto", "l1", "l2", "bn", "activation"]), default="auto",
              show_default=True,
              help="Importance: effective filter L1/L2 norm, BatchNorm |gamma|, or mean |x - E[x]| on --data; "
                   "auto = activation with --data, else l1. With --data removed channels' means go into the "
                   "next layer's bias.")
@click.option("--round-to", type=click.IntRange(min=1), default=None,
              help="Keep channel counts at multiples of this (1 = exact ratio, often slower). Default: the block "
                   "of onnxruntime's CPU convolutions here (16 with AVX-512, else 8).")
@click.option("--exclude", metavar="REGEX", help="Leave groups with a layer whose name matches alone.")
@click.option("--layer-ratio", "layer_ratios", multiple=True, metavar="REGEX=RATIO",
              help="Ratio for groups with a matching layer name; repeatable.")
@data_options
@click.option("--max-drop", type=float, metavar="X",
              help="With --data: largest top-1 disagreement allowed; the ratio is searched up to --ratio.")
@click.option("--write-unchanged", is_flag=True, help="Write the output even when no channel could be removed.")
@json_option
def command(model: str, output: str, force: bool, ratio: float, criterion: str, round_to: int | None,
            exclude: str | None,
            layer_ratios: tuple[str, ...], data_spec: str | None, shapes: tuple[str, ...], batch_size: int,
            max_drop: float | None, write_unchanged: bool, as_json: bool) -> None:
    """Remove whole channels from MODEL (coupled tensors, weights and shapes rewritten); write to -o."""
    config = ChannelRemovalConfig(ratio=ratio, criterion=criterion, round_to=round_to,  # type: ignore[arg-type]
                                  exclude=exclude, layer_ratios=_layer_ratios(layer_ratios), max_drop=max_drop)
    if config.needs_data and not data_spec:
        raise InputError("--max-drop and --criterion activation need --data")
    prepare_output(model, output, force)
    loaded = io.load(model)
    data = open_data_for(loaded, data_spec, shapes, batch_size) if data_spec else None
    report = ChannelRemovalPass(config, PassContext(data=data))(loaded).report
    summary = report.summary
    if exclude and not summary["groups_excluded"]:
        say(f"onnxcomp: warning: --exclude {exclude!r} matches no layer that produces channels")
    written = None
    if summary["nothing_removed"]:
        say("onnxcomp: nothing could be removed (every group frozen or at its floor); "
            + ("writing the model unchanged" if write_unchanged else "no output written (see --write-unchanged)"))
    if not summary["nothing_removed"] or write_unchanged:
        written = str(write_model(loaded, model, output, force))
    if as_json:
        emit_json({"input": model, "output": written, "report": report.to_dict()})
        return
    say(render_pass_report(report))
    say("\n".join(_table(summary)))
    if written:
        say(f"wrote {written}")

"""``onnxcomp pack``: store a model's weights losslessly in one entropy-coded ``.onnxc`` file."""

from __future__ import annotations

import click

from onnxcomp.commands.common import emit_json, json_option, output_options, say
from onnxcomp.packing import PackReport, pack_file


@click.command("pack")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--show", type=click.IntRange(min=0), default=10, show_default=True,
              help="Tensors to list in the human summary (largest first).")
@json_option
def command(model: str, output: str, force: bool, show: int, as_json: bool) -> None:
    """Pack MODEL (and its external data) into one .onnxc file; `onnxcomp unpack` restores it exactly."""
    report = pack_file(model, output, overwrite=force)
    if as_json:
        emit_json(report.to_dict())
    else:
        say(render(report, output, show))


def render(report: PackReport, output: str, show: int) -> str:
    """Sizes, then the largest tensors with codec, bits/weight and the entropy bound."""
    lines = [f"packed {output}: {report.source_bytes:,} -> {report.packed_bytes:,} bytes "
             f"({report.ratio:.2f}x) in {report.seconds:.2f} s",
             f"  graph {report.graph_bytes:,} -> {report.graph_packed_bytes:,} bytes ({report.graph_codec}); "
             f"weights {report.weight_bytes:,} -> {report.weight_packed_bytes:,} bytes "
             f"(entropy bound {report.entropy_bytes:,.0f})"]
    for block in sorted(report.tensors, key=lambda b: -b.bytes)[:show]:
        entropy = 8 * block.entropy_bytes / block.elements if block.elements else 0.0
        lines.append(f"  {block.name}: {block.codec}, {block.bits_per_weight:.2f} bits/weight "
                     f"(bound {entropy:.2f}), {block.bytes:,} -> {block.packed_bytes:,} bytes")
    if len(report.tensors) > show:
        lines.append(f"  ... {len(report.tensors) - show} more tensors (see --json)")
    return "\n".join(lines)

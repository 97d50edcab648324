"""``onnxcomp cluster``: share weights through per-tensor or per-channel k-means (or binarize / ternarize)."""

from __future__ import annotations

import click

from onnxcomp import io
from onnxcomp.commands.common import (
    apply_and_write,
    json_option,
    output_options,
    prepare_output,
)
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass


@click.command("cluster")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--bits", type=int, default=5, show_default=True,
              help="At most 2^bits distinct values per group, zero included when present; 1 binarizes.")
@click.option("--per-channel", is_flag=True, help="One codebook per output channel instead of per tensor.")
@click.option("--ternary", is_flag=True, help="With --bits 2: {-a, 0, +a} per output channel.")
@click.option("--conv-bits", type=int, metavar="N", help="Budget for Conv/ConvTranspose weights (default: --bits).")
@click.option("--exclude", multiple=True, metavar="REGEX",
              help="Leave weights whose name or consumer node name matches alone; repeatable.")
@click.option("--min-size", type=click.IntRange(min=0), default=128, show_default=True,
              help="Leave tensors with fewer elements alone.")
@json_option
def command(model: str, output: str, force: bool, bits: int, per_channel: bool, ternary: bool,
            conv_bits: int | None, exclude: tuple[str, ...], min_size: int, as_json: bool) -> None:
    """Cluster the Conv/Gemm/MatMul weights of MODEL to a few shared values; write the result to -o."""
    config = ClusterConfig(bits=bits, per_channel=per_channel, ternary=ternary, conv_bits=conv_bits,
                           exclude=exclude, min_size=min_size)
    prepare_output(model, output, force)
    loaded = io.load(model)
    apply_and_write(ClusterPass(config), loaded, model, output, force, as_json)

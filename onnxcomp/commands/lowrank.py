"""``onnxcomp lowrank``: factorize Gemm/MatMul/Conv weights by truncated SVD where it saves MACs."""

from __future__ import annotations

import click

from onnxcomp import io
from onnxcomp.commands.common import (
    apply_and_write,
    json_option,
    open_data_for,
    output_options,
    prepare_output,
)
from onnxcomp.errors import InputError
from onnxcomp.pass_base import PassContext


@click.command("lowrank")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--energy", type=float, metavar="E",
              help="Keep the smallest rank holding this fraction of the squared singular values (default 0.9).")
@click.option("--rank", type=click.IntRange(min=1), metavar="R", help="A fixed rank for every layer instead.")
@click.option("--min-saving", type=float, default=0.1, show_default=True,
              help="Factorize a layer only when it saves at least this fraction of its MACs.")
@click.option("--min-size", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Leave weights with fewer elements alone.")
@click.option("--op", "ops", multiple=True, type=click.Choice(["Gemm", "MatMul", "Conv"]),
              help="Only these op types (repeatable; default all three).")
@click.option("--exclude", multiple=True, metavar="REGEX", help="Leave matching weights/nodes alone; repeatable.")
@click.option("--distill-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Distil the factorized model from the original afterwards (needs --data and torch).")
@click.option("--data", "data_spec", metavar="D", help="Samples for --distill-epochs.")
@json_option
def command(model: str, output: str, force: bool, energy: float | None, rank: int | None, min_saving: float,
            min_size: int, ops: tuple[str, ...], exclude: tuple[str, ...], distill_epochs: int,
            data_spec: str | None, as_json: bool) -> None:
    """Replace weights of MODEL by two thinner SVD factors where that saves MACs; write the result to -o."""
    from onnxcomp.passes.low_rank import LowRankConfig, LowRankPass

    if energy is not None and rank is not None:
        raise InputError("give either --energy or --rank, not both")
    if distill_epochs:
        from onnxcomp.torch_exec import require_torch

        require_torch("onnxcomp lowrank --distill-epochs")
        if data_spec is None:
            raise InputError("--distill-epochs needs --data")
    config = LowRankConfig(energy=energy if energy is not None else 0.9, rank=rank, min_saving=min_saving,
                           min_size=min_size, ops=ops or ("Gemm", "MatMul", "Conv"), exclude=exclude,
                           distill_epochs=distill_epochs)
    prepare_output(model, output, force)
    loaded = io.load(model)
    data = open_data_for(loaded, data_spec, batch_size=32) if data_spec is not None else None
    apply_and_write(LowRankPass(config, PassContext(data=data)), loaded, model, output, force, as_json)

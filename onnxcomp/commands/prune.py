"""``onnxcomp prune``: zero the smallest weights of linear layers (magnitude pruning)."""

from __future__ import annotations

import click

from onnxcomp import io
from onnxcomp.commands.common import (
    apply_and_write,
    json_option,
    output_options,
    prepare_output,
)
from onnxcomp.errors import InputError
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass, parse_nm


def _config(sparsity: float | None, scope: str, nm: str | None, threshold: float | None, normalize: bool,
            exclude: tuple[str, ...], keep_first_last: bool, min_size: int) -> MagnitudePruneConfig:
    given = [flag for flag, value in (("--sparsity", sparsity), ("--threshold", threshold), ("--nm", nm))
             if value is not None]
    if len(given) != 1:
        raise InputError("give exactly one of --sparsity, --threshold or --nm"
                         + (f" (got {', '.join(given)})" if given else ""))
    return MagnitudePruneConfig(
        sparsity=sparsity if sparsity is not None else 0.0,
        scope=scope,  # type: ignore[arg-type]
        threshold=threshold,
        nm=parse_nm(nm) if nm is not None else None,
        normalize=normalize,
        exclude=exclude,
        keep_first_last=keep_first_last,
        min_size=min_size,
    )


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--sparsity", type=float, metavar="S", help="Fraction of eligible weights to zero, in [0, 1).")
@click.option("--scope", type=click.Choice(["global", "tensor"]), default="global", show_default=True,
              help="global: one magnitude ranking across tensors; tensor: each tensor reaches the target.")
@click.option("--nm", metavar="N:M", help="At most N non-zeros in every M weights along the reduction axis (2:4).")
@click.option("--threshold", type=float, metavar="T", help="Zero every eligible weight with |w| < T.")
@click.option("--normalize/--no-normalize", default=False, show_default=True,
              help="Global scope: rank |w| divided by each tensor's RMS.")
@click.option("--exclude", multiple=True, metavar="REGEX",
              help="Leave weights whose name or consumer node name matches alone; repeatable.")
@click.option("--keep-first-last/--no-keep-first-last", default=True, show_default=True,
              help="Prune the first and last weight layer to half the target (dense under --nm).")
@click.option("--min-size", type=click.IntRange(min=0), default=128, show_default=True,
              help="Leave tensors with fewer elements alone.")
@json_option
def command(model: str, output: str, force: bool, sparsity: float | None, scope: str, nm: str | None,
            threshold: float | None, normalize: bool, exclude: tuple[str, ...], keep_first_last: bool,
            min_size: int, as_json: bool) -> None:
    """Zero the smallest-magnitude weights of Conv/Gemm/MatMul layers in MODEL; write the result to -o."""
    config = _config(sparsity, scope, nm, threshold, normalize, exclude, keep_first_last, min_size)
    prepare_output(model, output, force)
    loaded = io.load(model)
    apply_and_write(MagnitudePrunePass(config), loaded, model, output, force, as_json)

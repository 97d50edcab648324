"""``onnxcomp inspect``: what is in a model, as the library's summary renders it."""

from __future__ import annotations

import click

from onnxcomp import io
from onnxcomp.commands.common import emit_json, json_option, say
from onnxcomp.data import parse_shapes
from onnxcomp.summary import render_text, summarize


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DxD...",
              help="Concrete input shape for MACs (dynamic batch axes default to 1).")
@json_option
def command(model: str, shapes: tuple[str, ...], as_json: bool) -> None:
    """Describe MODEL: opset, inputs/outputs, ops, weights (bytes, sparsity) and MACs."""
    summary = summarize(io.load(model), parse_shapes(shapes) or None)
    if as_json:
        emit_json(summary.to_dict())
    else:
        say(render_text(summary))

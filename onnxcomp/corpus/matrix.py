"""Every command on every corpus model: the runs, their exit codes, and what the written models are worth.

Each command runs as a user would run it, in its own process (``onnxcomp ...``), so exit codes, hangs and
peak memory are the real ones. What a command writes is then judged by :mod:`onnxcomp.corpus.evaluate`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from onnxcomp.corpus.evaluate import Verdict, judge, xz_size
from onnxcomp.corpus.spec import ModelSpec


@dataclass(frozen=True)
class Paths:
    model: Path
    calib: Path
    eval: Path
    work: Path

    def out(self, name: str) -> Path:
        return self.work / name


@dataclass(frozen=True)
class Command:
    """One command line of the matrix.

    ``lossless`` outputs must reproduce the original's outputs within ``tolerance``; ``after`` names a
    command whose output this one reads (``unpack`` reads what ``pack`` wrote).
    """

    name: str
    argv: Callable[[Paths], list[str]]
    output: str | None = None
    lossless: bool = False
    tolerance: float = 0.0
    after: str | None = None
    timeout: int = 600


def _optimize(preset: str) -> Command:
    suffix = "onnxc" if preset == "size" else "onnx"
    out = f"optimize_{preset}.{suffix}"
    return Command(f"optimize:{preset}", lambda p: ["optimize", str(p.model), "--data", str(p.calib), "--eval-data",
                                                    str(p.eval), "--preset", preset, "-o", str(p.out(out)), "-q"],
                   out, timeout=900)


COMMANDS: tuple[Command, ...] = (
    Command("inspect", lambda p: ["inspect", str(p.model)]),
    Command("check", lambda p: ["check", str(p.model), str(p.model), "--data", str(p.eval)]),
    Command("prune", lambda p: ["prune", str(p.model), "-o", str(p.out("prune.onnx")), "--sparsity", "0.5"],
            "prune.onnx"),
    Command("cluster", lambda p: ["cluster", str(p.model), "-o", str(p.out("cluster.onnx")), "--bits", "6"],
            "cluster.onnx"),
    Command("channels:0", lambda p: ["channels", str(p.model), "-o", str(p.out("channels0.onnx")), "--ratio", "0",
                                     "--write-unchanged"], "channels0.onnx", lossless=True, tolerance=1e-5),
    Command("channels:0.25", lambda p: ["channels", str(p.model), "-o", str(p.out("channels25.onnx")), "--ratio",
                                        "0.25", "--data", str(p.calib), "--write-unchanged"], "channels25.onnx"),
    Command("quantize", lambda p: ["quantize", str(p.model), "-o", str(p.out("quantize.onnx")), "--data",
                                   str(p.calib)], "quantize.onnx"),
    Command("pack", lambda p: ["pack", str(p.model), "-o", str(p.out("pack.onnxc"))], "pack.onnxc", lossless=True),
    Command("unpack", lambda p: ["unpack", str(p.out("pack.onnxc")), "-o", str(p.out("unpack.onnx"))],
            "unpack.onnx", lossless=True, after="pack"),
    _optimize("balanced"),
    _optimize("speed"),
    _optimize("size"),
    Command("lowrank", lambda p: ["lowrank", str(p.model), "-o", str(p.out("lowrank.onnx"))], "lowrank.onnx"),
    Command("distill", lambda p: ["distill", str(p.out("prune.onnx")), "--teacher", str(p.model), "--data",
                                  str(p.calib), "--epochs", "1", "-q", "-o", str(p.out("distill.onnx"))],
            "distill.onnx", after="prune"),
)


@dataclass
class Run:
    """One command on one model."""

    model: str
    command: str
    exit_code: int | None
    seconds: float
    peak_rss_mb: float
    timed_out: bool = False
    stderr_tail: str = ""
    verdict: Verdict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No internal error, no hang, and whatever was written runs with the original's interface."""
        if self.timed_out or self.exit_code in (3, None) or self.exit_code < 0:
            return False
        if self.verdict is not None and not (self.verdict.loads and self.verdict.same_interface):
            return False
        return not any(note.startswith("LOSSY") or note.startswith("LARGER") for note in self.notes)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def onnxcomp_argv() -> list[str]:
    """The CLI of the running interpreter's environment (the venv's ``onnxcomp``)."""
    script = Path(sys.executable).with_name("onnxcomp")
    return [str(script)] if script.exists() else [sys.executable, "-m", "onnxcomp.cli"]


def run_command(argv: list[str], timeout: int, env: dict[str, str] | None = None) -> tuple[int | None, float, float,
                                                                                            bool, str]:
    """Run one process; return exit code, seconds, peak RSS (MB), whether it timed out, and its stderr tail.

    Peak RSS is the child's ``VmHWM`` (high-water mark), sampled while it runs: ``wait4``'s ``ru_maxrss``
    would include the pages of this (large) parent process that the child inherited before ``exec``.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
        deadline = started + timeout
        timed_out = False
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, _ = os.wait4(proc.pid, 0)
                timed_out = True
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    code = None if timed_out else proc.returncode
    return code, time.perf_counter() - started, peak_kb / 1024, timed_out, " | ".join(tail)[-400:]


def _high_water_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_model(spec: ModelSpec, model_dir: Path, work: Path, *, commands: tuple[Command, ...] = COMMANDS,
              latency: bool = True, threads: int = 1, feeds: int | None = None) -> list[Run]:
    """Every command on one model; a command whose input another one writes waits for it.

    ``feeds`` keeps only the first N calibration and evaluation feeds: the smoke tests look for crashes and
    broken outputs, which a few feeds find as well as all of them, at a fraction of the time.
    """
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    calib, evals = model_dir / "calib", model_dir / "eval"
    if feeds is not None:
        calib, evals = _first_feeds(calib, work / "calib", feeds), _first_feeds(evals, work / "eval", feeds)
    paths = Paths(model_dir / "model.onnx", calib, evals, work)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ONNXCOMP_THREADS": str(threads)}
    runs: list[Run] = []
    written: set[str] = set()
    for command in commands:
        if command.after and command.after not in written:
            runs.append(Run(spec.name, command.name, None, 0.0, 0.0, notes=[f"skipped: {command.after} wrote nothing"]))
            continue
        code, seconds, rss, timed_out, tail = run_command(onnxcomp_argv() + command.argv(paths), command.timeout, env)
        run = Run(spec.name, command.name, code, round(seconds, 2), round(rss, 1), timed_out, tail)
        out = paths.out(command.output) if command.output else None
        if out is not None and out.exists() and code in (0, 1):
            written.add(command.name)
            run.verdict = judge(spec, paths.model, out, paths.eval, latency=latency and not command.lossless)
            _lossless_notes(run, command)
            if command.name == "pack":
                xz = xz_size(paths.model)
                run.notes.append(f"packed/xz {out.stat().st_size / xz:.3f}")
                if out.stat().st_size > xz:
                    run.notes.append(f"LARGER than xz -9e ({out.stat().st_size} > {xz} bytes)")
        runs.append(run)
    return runs


def _first_feeds(source: Path, target: Path, count: int) -> Path:
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.npz"))[:count]:
        shutil.copyfile(path, target / path.name)
    return target


def _lossless_notes(run: Run, command: Command) -> None:
    verdict = run.verdict
    if not command.lossless or verdict is None or not verdict.loads or not verdict.same_interface:
        return
    if verdict.max_abs_diff is not None and verdict.max_abs_diff > command.tolerance:
        run.notes.append(f"LOSSY: max |diff| {verdict.max_abs_diff:.3g} > {command.tolerance:g}")

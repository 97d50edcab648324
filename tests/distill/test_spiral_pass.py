"""The prune/distill spiral: gradual schedule, sparsest model within budget, untouched model when none is."""

from __future__ import annotations

import numpy as np
import pytest
from onnxcomp.passes.distill import DistillConfig
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass
from onnxcomp.passes.spiral import SpiralConfig, SpiralPass, gradual_schedule
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.data import input_specs, open_data
from onnxcomp.errors import MissingRequirementError
from onnxcomp.pass_base import PassContext
from onnxcomp.session import create_session
from onnxcomp.weights import iter_weights

pytest.importorskip("torch")


def _test_accuracy(model) -> float:
    test = np.load(FIXTURES / "lenet300.test.npz")
    scores = create_session(io.serialize(model)).run(None, {"input": test["input"]})[0]
    return float(np.mean(scores.argmax(1) == test["labels"]))


def _context(model) -> PassContext:
    return PassContext(data=open_data(str(FIXTURES / "lenet300.calib.npz"), input_specs(model), batch_size=64))


def test_schedule_is_gradual_and_ends_at_the_target():
    schedule = gradual_schedule(0.9, 4)
    assert schedule[-1] == 0.9 and schedule == sorted(schedule)
    assert schedule[0] - 0 > schedule[-1] - schedule[-2]  # fast first, slow near the target


def test_spiral_beats_one_shot_pruning_at_the_same_sparsity():
    model = io.load(fixture_path("lenet300"))
    config = SpiralConfig(target_sparsity=0.95, steps=2, epochs_per_step=2, max_drop=0.05, stop_on_miss=False,
                          distill=DistillConfig(lr=5e-3))
    report = SpiralPass(config, _context(model))(model).report
    chosen = report.summary["chosen_sparsity"]
    assert chosen is not None and report.modified
    assert [r["sparsity"] for r in report.summary["rounds"]] == gradual_schedule(0.95, 2)
    one_shot = io.load(fixture_path("lenet300"))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=chosen))(one_shot)
    zeros = [np.count_nonzero(r.numpy() == 0) for r in iter_weights(model)]
    assert zeros == [np.count_nonzero(r.numpy() == 0) for r in iter_weights(one_shot)]  # same sparsity
    assert _test_accuracy(model) >= _test_accuracy(one_shot) + 0.02


def test_spiral_leaves_the_model_alone_when_no_round_meets_the_budget():
    model = io.load(fixture_path("lenet300"))
    before = [r.numpy().copy() for r in iter_weights(model)]
    config = SpiralConfig(target_sparsity=0.99, steps=1, epochs_per_step=0, max_drop=0.0)
    report = SpiralPass(config, _context(model))(model).report
    assert report.summary["chosen_sparsity"] is None and not report.modified
    for ref, array in zip(iter_weights(model), before, strict=True):
        np.testing.assert_array_equal(ref.numpy(), array)


def test_spiral_needs_data():
    with pytest.raises(MissingRequirementError, match="data"):
        SpiralPass(SpiralConfig())(io.load(fixture_path("lenet300")))

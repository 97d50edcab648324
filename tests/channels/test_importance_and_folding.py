"""Importance criteria and mean folding on the trained BN fixtures.

The first test is the correctness check behind the accuracy numbers: channels whose *effective*
contribution is made negligible by hand (BN gamma scaled to ~0, beta to 0) are the ones the ``bn``
criterion removes, and removing them leaves the outputs unchanged, so a collapse at a real ratio comes
from what is removed, not from how the graph is rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from channel_support import run, sample_inputs
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.channels.analyze import analyze, channel_groups, infer_shapes
from onnxcomp.channels.graph import UNTRACKED, constant_array
from onnxcomp.channels.rewrite import int_attr
from onnxcomp.data import input_specs, open_data
from onnxcomp.pass_base import PassContext


def _scale_bn(model: ir.Model, share: float, gamma: float, beta: float | None) -> int:
    """Scale BN gamma (and beta, unless ``None``) of a random ``share`` of every group's channels."""
    infer_shapes(model)
    analysis = analyze(model)
    rng = np.random.default_rng(0)
    chosen: set[int] = set()
    for group in channel_groups(analysis):
        count = int(len(group.roots) * share)
        if 0 < count <= len(group.removable):
            chosen |= set(rng.choice(group.removable, count, replace=False).tolist())
    for node in [n for n in model.graph if n.op_type == "BatchNormalization"]:
        track = analysis.track(node.inputs[0])
        index = [i for i, s in enumerate(track.slots.tolist()) if s != UNTRACKED and analysis.root(s) in chosen]
        for position, factor in ((1, gamma), (2, beta)):
            if index and factor is not None:
                array = constant_array(node.inputs[position]).copy()
                array[index] *= factor
                name = f"{node.name}_scaled{position}"
                value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
                model.graph.register_initializer(value)
                node.replace_input_with(position, value)
    return len(chosen)


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2", "yolo_block"])
def test_channels_with_negligible_effective_scale_go_and_change_nothing(name: str) -> None:
    model = io.load(fixture_path(name))
    chosen = _scale_bn(model, 0.25, 1e-6, 0.0)
    x, _ = sample_inputs(name, 32)
    expected = run(model, x)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.25, criterion="bn", round_to=1))(model)
    summary = result.report.summary
    assert summary["channels_before"] - summary["channels_after"] == chosen
    np.testing.assert_allclose(run(result.model, x), expected, rtol=0, atol=1e-4)


def _make_constant(model: ir.Model) -> None:
    """Zero the filters of one channel per Conv->BN (the BN shift stays): a non-zero constant channel."""
    for node in [n for n in model.graph if n.op_type == "BatchNormalization"]:
        conv = node.inputs[0].producer()
        if conv is None or conv.op_type != "Conv" or int_attr(conv, "group", 1) != 1:
            continue
        weight = constant_array(conv.inputs[1]).copy()
        weight[0] = 0
        value = ir.Value(name=f"{conv.name}_const", const_value=ir.tensor(weight, name=f"{conv.name}_const"))
        model.graph.register_initializer(value)
        conv.replace_input_with(1, value)


def test_constant_channels_go_exactly_without_data_where_readers_are_unpadded() -> None:
    """MobileNetV2's expansions are read through depthwise 3x3 (padded): only the projections' constant
    channels (read by 1x1 convs) are exact; removing them changes no output, with no calibration data."""
    model = io.load(fixture_path("mobilenetv2"))
    _make_constant(model)
    x, _ = sample_inputs("mobilenetv2", 32)
    expected = run(model, x)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    summary = result.report.summary
    assert summary["constant_channels_removed"] > 0
    assert summary["channels_after"] == summary["channels_before"] - summary["constant_channels_removed"]
    np.testing.assert_allclose(run(result.model, x), expected, rtol=0, atol=1e-4)


def test_constant_channels_read_by_padded_convs_stay_with_a_reason() -> None:
    """In resnet only the last stage's constant channel (read by GlobalAveragePool -> Gemm) is exact."""
    model = io.load(fixture_path("resnet"))
    _make_constant(model)
    x, _ = sample_inputs("resnet", 32)
    expected = run(model, x)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    assert result.report.summary["constant_channels_removed"] == 1
    np.testing.assert_allclose(run(result.model, x), expected, rtol=0, atol=1e-4)
    reasons = [s.reason for s in result.report.skipped if s.target == "constant channels"]
    assert reasons and all("pads its input" in r for r in reasons)


def test_calibration_means_fold_exactly_for_constant_channels() -> None:
    """With data, constant channels chosen by importance (not proven constant) fold by their measured mean."""
    model = io.load(fixture_path("mobilenetv2"))
    _scale_bn(model, 0.25, 1e-7, None)  # gamma ~ 0, beta kept: each chosen channel is a non-zero constant
    x, _ = sample_inputs("mobilenetv2", 32)
    expected = run(model, x)
    data = open_data(str(FIXTURES / "mobilenetv2.calib.npz"), input_specs(model), batch_size=64)
    config = ChannelRemovalConfig(ratio=0.25, criterion="bn", round_to=1)
    result = ChannelRemovalPass(config, PassContext(data=data))(model)
    assert result.report.summary["bias_folds"] > 0
    np.testing.assert_allclose(run(result.model, x), expected, rtol=0, atol=1e-4)


def test_auto_criterion_uses_activation_with_data_and_recovers_accuracy() -> None:
    x, labels = sample_inputs("resnet", 360)
    model = io.load(fixture_path("resnet"))
    data = open_data(str(FIXTURES / "resnet.calib.npz"), input_specs(model), batch_size=64)
    with_data = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.25, round_to=1), PassContext(data=data))(model)
    without = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.25, round_to=1))(io.load(fixture_path("resnet")))
    assert with_data.report.summary["criterion"] == "activation"
    assert without.report.summary["criterion"] == "l1"
    accuracy = [float((run(r.model, x).argmax(1) == labels).mean()) for r in (with_data, without)]
    assert accuracy[0] > accuracy[1] + 0.2

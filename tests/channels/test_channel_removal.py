"""The channel-removal pass on every fixture: loads, runs, keeps output shapes, removes zero channels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from channel_support import ALL_FIXTURES, run, sample_inputs, zero_one_channel_per_group
from onnxcomp.passes.channel_removal import ChannelRemovalConfig, ChannelRemovalPass
from support import fixture_path

from onnxcomp import io
from onnxcomp.errors import InputError


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_zero_channels_are_removed_exactly(name: str) -> None:
    model = io.load(fixture_path(name))
    zeroed = zero_one_channel_per_group(model)
    x, _ = sample_inputs(name)
    expected = run(model, x)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.0))(model)
    summary = result.report.summary
    assert summary["zero_channels_removed"] == zeroed
    assert summary["channels_after"] == summary["channels_before"] - zeroed
    got = run(result.model, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_pruned_model_runs_with_unchanged_output_shape(name: str) -> None:
    x, _ = sample_inputs(name, 8)
    expected = run(str(fixture_path(name)), x)
    result = ChannelRemovalPass(ChannelRemovalConfig(ratio=0.5, round_to=2))(io.load(fixture_path(name)))
    got = run(result.model, x)
    assert got.shape == expected.shape
    summary = result.report.summary
    if summary["nothing_removed"]:
        assert name == "lenet300_if"
    else:
        assert summary["macs_after"] <= summary["macs_before"]  # MACs can be unknown where shapes are dynamic
        assert summary["params_after"] < summary["params_before"]


def test_ratio_outside_range_is_refused() -> None:
    with pytest.raises(InputError, match="ratio"):
        ChannelRemovalConfig(ratio=1.0)
    with pytest.raises(InputError, match="ratio"):
        ChannelRemovalConfig(ratio=-0.1)

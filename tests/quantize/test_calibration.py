"""Streaming calibration statistics: chunking invariance, bounded state, range methods, problems."""

from __future__ import annotations

import numpy as np
import pytest
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.calibration import TensorStats, calibrate, quant_params, select_range
from onnxcomp.data import input_specs, open_data


def _stream(values: np.ndarray, batch: int) -> TensorStats:
    stats = TensorStats("t")
    for start in range(0, len(values), batch):
        stats.update(values[start : start + batch])
    return stats


def _outlier_data(seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal((5000, 8)).astype(np.float32)
    values[17, 3] = 80.0  # one outlier: min/max spends the grid on it
    return values


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy", "mse"])
def test_ranges_do_not_depend_on_chunking(method: str) -> None:
    values = _outlier_data()
    results = [_stream(values, batch) for batch in (1, 7, 64)]
    assert all(np.array_equal(r.histogram, results[0].histogram) for r in results)
    assert len({(r.minimum, r.maximum, r.count, r.exponent) for r in results}) == 1
    ranges = {select_range(r, method) for r in results}
    assert len(ranges) == 1


def test_histogram_growth_equals_direct_binning() -> None:
    small = np.linspace(-0.3, 0.3, 101, dtype=np.float32)
    large = np.array([5.5, -7.25], dtype=np.float32)
    grown = TensorStats("t")
    grown.update(small)
    grown.update(large)
    direct = TensorStats("t")
    direct.update(np.concatenate([large, small]))
    assert grown.exponent == direct.exponent == 3  # 7.25 < 2**3
    assert np.array_equal(grown.histogram, direct.histogram)


def test_percentile_and_entropy_differ_from_minmax_with_outliers() -> None:
    stats = _stream(_outlier_data(), 256)
    minmax = select_range(stats, "minmax")
    assert minmax.high == pytest.approx(80.0)
    for method in ("percentile", "entropy"):
        chosen = select_range(stats, method)
        assert chosen.high < 10.0, method  # the outlier is clipped away
        assert chosen.low < -2.0, method  # the other side keeps its real tail
    assert select_range(stats, "mse").high <= minmax.high


def test_state_size_does_not_grow_with_samples() -> None:
    rng = np.random.default_rng(1)
    stats = TensorStats("t", channel_axis=1)
    stats.update(rng.standard_normal((4, 3, 5)))
    size = stats.state_nbytes
    for _ in range(200):
        stats.update(rng.standard_normal((4, 3, 5)))
    assert stats.state_nbytes == size
    assert stats.count == 201 * 60
    assert stats.channel_means().shape == (3,)


def test_problems_are_reported() -> None:
    assert "no data" in TensorStats("a").problem
    constant = TensorStats("b")
    constant.update(np.full(10, 2.0))
    assert "constant" in constant.problem
    nan = TensorStats("c")
    nan.update(np.array([np.nan, 1.0, 2.0]))
    assert "NaN" in nan.problem and nan.count == 2
    only_nan = TensorStats("d")
    only_nan.update(np.array([np.nan]))
    assert "only NaN" in only_nan.problem
    with pytest.raises(ValueError):
        select_range(TensorStats("e"), "minmax")


def test_quant_params_represent_zero_exactly() -> None:
    from onnxcomp.calibration import QuantRange

    params = quant_params(QuantRange(-1.0, 3.0), 0, 255)
    assert params.zero_point == round(1.0 / params.scale)
    relu = quant_params(QuantRange(0.0, 6.0), 0, 255)
    assert relu.zero_point == 0 and relu.scale == pytest.approx(6 / 255)
    sym = quant_params(QuantRange(-1.0, 3.0), -128, 127, symmetric=True)
    assert sym.zero_point == 0 and sym.scale == pytest.approx(6 / 255)


def test_calibrate_streams_through_onnxruntime_whatever_the_batch_size() -> None:
    model = io.load(fixture_path("lenet5"))
    names = [node.outputs[0].name for node in model.graph if node.op_type == "Relu"]
    results = []
    for batch in (1, 7, 64):
        data = open_data(str(FIXTURES / "lenet5.calib.npz"), input_specs(model), batch_size=batch)
        results.append(calibrate(model, names, data, progress=False))
    assert results[0].samples == results[1].samples == results[2].samples == 256
    for name in names:
        ranges = {select_range(r.stats[name], "entropy") for r in results}
        assert len(ranges) == 1
        assert results[0].stats[name].minimum == 0.0  # ReLU outputs
    assert results[0].problems == {}

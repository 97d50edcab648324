"""ClusterConfig.bias_bits: Gemm/Conv biases clustered per tensor, everything else as without it."""

from __future__ import annotations

import numpy as np
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from support import fixture_path

from onnxcomp import io
from onnxcomp.weights import iter_weights


def _weights(model) -> dict[str, np.ndarray]:
    return {ref.name: ref.numpy().copy() for ref in iter_weights(model)}


def test_biases_are_clustered_only_when_asked():
    plain, with_biases = io.load(fixture_path("lenet300")), io.load(fixture_path("lenet300"))
    ClusterPass(ClusterConfig(bits=4))(plain)
    report = ClusterPass(ClusterConfig(bits=4, bias_bits=3))(with_biases).report
    before, after = _weights(plain), _weights(with_biases)
    for name, array in after.items():
        if name.endswith(".bias"):
            assert len(np.unique(array)) <= 8 and len(np.unique(before[name])) > 8, name
            assert any(entry["name"] == name and entry["location"] == "bias" for entry in report.changed)
        else:
            np.testing.assert_array_equal(array, before[name])

"""The Deep Compression storage pipeline end to end on every trained fixture.

prune → cluster → pack → unpack: the unpacked model must be the clustered model, tensor for tensor and output
for output, and its test accuracy (recorded per fixture in the assertion messages) must equal the clustered
model's. Packing is lossless; the lossy steps are pruning and clustering alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass
from support import FIXTURES, fixture_path

from onnxcomp import io
from onnxcomp.packing import open_session, pack_file, unpack_file
from onnxcomp.weights import iter_weights

TRAINED = ["lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer", "lenet5_opset11",
           "lenet300_constants", "lenet300_if"]


def _digests(path: Path) -> dict[str, str]:
    return {ref.name: hashlib.sha256(ref.numpy().tobytes()).hexdigest() for ref in iter_weights(io.load(path))}


def _outputs_and_accuracy(session: ort.InferenceSession, test: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    logits = session.run(None, {"input": test["input"]})[0]
    return logits, float((logits.argmax(1) == test["labels"]).mean())


@pytest.mark.parametrize("name", TRAINED)
def test_prune_cluster_pack_unpack_is_lossless_after_the_lossy_steps(name: str, manifest, tmp_path: Path):
    entry = manifest["models"][name]
    test = dict(np.load(FIXTURES / entry["test"]))
    model = io.load(fixture_path(name))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.5))(model)
    ClusterPass(ClusterConfig(bits=5, conv_bits=8))(model)
    clustered = io.save(model, tmp_path / "clustered.onnx")

    packed = tmp_path / "model.onnxc"
    pack_file(clustered, packed)
    unpacked = tmp_path / "unpacked.onnx"
    unpack_file(packed, unpacked)

    assert _digests(unpacked) == _digests(clustered)
    cpu = ["CPUExecutionProvider"]
    clustered_logits, clustered_acc = _outputs_and_accuracy(ort.InferenceSession(clustered, providers=cpu), test)
    unpacked_logits, unpacked_acc = _outputs_and_accuracy(ort.InferenceSession(unpacked, providers=cpu), test)
    direct_logits, _ = _outputs_and_accuracy(open_session(packed), test)
    np.testing.assert_array_equal(unpacked_logits, clustered_logits)
    np.testing.assert_array_equal(direct_logits, clustered_logits)
    assert unpacked_acc == clustered_acc, f"{name}: clustered {clustered_acc:.4f}, unpacked {unpacked_acc:.4f}"
    # Pruned and clustered weights must pack well below the original file.
    assert packed.stat().st_size < 0.5 * fixture_path(name).stat().st_size, name

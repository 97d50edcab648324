"""Distillation: recovers a pruned fixture's accuracy (test split), keeps masks, writes weights back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from support import FIXTURES, fixture_path

pytest.importorskip("torch")

import torch
from onnxcomp.passes.cluster import ClusterConfig, ClusterPass
from onnxcomp.passes.distill import DistillConfig, DistillPass, distill
from onnxcomp.passes.magnitude_prune import MagnitudePruneConfig, MagnitudePrunePass

from onnxcomp import io
from onnxcomp.data import Batch, DataSource, input_specs, open_data
from onnxcomp.pass_base import PassContext
from onnxcomp.session import create_session
from onnxcomp.torch_exec.graph import TorchGraph
from onnxcomp.weights import iter_weights


def _accuracy(model, name: str) -> float:
    test = np.load(FIXTURES / f"{name}.test.npz")
    session = create_session(io.serialize(model))
    return float(np.mean(session.run(None, {"input": test["input"]})[0].argmax(1) == test["labels"]))


def _data(model, name: str, batch_size: int = 64):
    return open_data(str(FIXTURES / f"{name}.calib.npz"), input_specs(model), batch_size=batch_size)


def _weights(model) -> dict[str, np.ndarray]:
    return {ref.name: ref.numpy().copy() for ref in iter_weights(model)}


def test_distillation_raises_pruned_lenet5_test_accuracy_and_keeps_masks():
    teacher = io.load(fixture_path("lenet5"))
    student = io.load(fixture_path("lenet5"))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.9))(student)
    pruned_accuracy = _accuracy(student, "lenet5")
    zeros_before = {name: array == 0 for name, array in _weights(student).items()}

    context = PassContext(data=_data(student, "lenet5"))
    report = DistillPass(DistillConfig(epochs=3, lr=5e-3), context, teacher=teacher)(student).report

    distilled_accuracy = _accuracy(student, "lenet5")
    assert distilled_accuracy >= pruned_accuracy + 0.25, (pruned_accuracy, distilled_accuracy)
    assert distilled_accuracy >= 0.88
    for name, array in _weights(student).items():  # masks: every pruned zero is still exactly zero
        assert np.all(array[zeros_before[name]] == 0), name
    assert report.summary["metrics_after"]["teacher_agreement"] > report.summary["metrics_before"]["teacher_agreement"]
    assert report.summary["writeback_max_abs_diff"] <= 1e-5
    assert len(report.changed) == 10 and report.modified


@pytest.mark.parametrize("variant", ["lenet300_constants", "lenet300_if"])
def test_write_back_reaches_constant_nodes_and_if_bodies(variant: str, tmp_path):
    teacher = io.load(fixture_path(variant))
    student = io.load(fixture_path(variant))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.8))(student)
    before = _weights(student)
    result = distill(student, teacher, _data(student, "lenet300"), DistillConfig(epochs=1, seed=3))

    after = _weights(student)
    float_names = [name for name, array in before.items() if array.dtype == np.float32 and array.size > 1]
    assert {entry["name"] for entry in result.trained} == set(float_names)
    # every tensor on the path the data takes moved (the digits never reach lenet300_if's else branch)
    reached = [name for name in float_names if not name.startswith("else_")]
    assert len(reached) == 6
    for name in float_names:
        assert np.array_equal(before[name], after[name]) != (name in reached), name
    for name in float_names:
        assert np.all(after[name][before[name] == 0] == 0), name
    # the written file, reloaded by onnxruntime, computes what the torch student computes
    reloaded = tmp_path / "student.onnx"
    io.save(student, reloaded)
    test = np.load(FIXTURES / "lenet300.test.npz")["input"][:50]
    expected = create_session(str(reloaded)).run(None, {"input": test})[0]
    with torch.no_grad():
        actual = TorchGraph(student)({"input": test})["logits"].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_same_seed_gives_identical_weights():
    teacher = io.load(fixture_path("lenet300"))
    runs = []
    for _ in range(2):
        student = io.load(fixture_path("lenet300"))
        MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.9))(student)
        distill(student, teacher, _data(student, "lenet300"), DistillConfig(epochs=1, seed=7, threads=1))
        runs.append(_weights(student))
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name])


def test_clustered_tensors_are_clustered_again_after_training():
    teacher = io.load(fixture_path("lenet300"))
    student = io.load(fixture_path("lenet300"))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.9))(student)
    ClusterPass(ClusterConfig(bits=4))(student)
    clustered = {name for name, a in _weights(student).items() if 2 * len(np.unique(a)) <= a.size
                 and len(np.unique(a)) <= 16}
    assert "fc3.weight" in clustered  # small tensors (1,000 elements) keep their clusters too
    result = distill(student, teacher, _data(student, "lenet300"), DistillConfig(epochs=1, clustered="recluster"))
    assert {entry["name"] for entry in result.reclustered} == clustered
    for name, array in _weights(student).items():
        if name in clustered:
            assert len(np.unique(array)) <= 16, name


def test_labels_without_labelled_data_are_noted():
    teacher = io.load(fixture_path("lenet300"))
    student = io.load(fixture_path("lenet300"))
    x = np.load(FIXTURES / "lenet300.calib.npz")["input"][:64]
    data = DataSource("inline", False, lambda: iter([Batch({"input": x}, None)]), 64)
    result = distill(student, teacher, data, DistillConfig(epochs=1, use_labels=True))
    assert any("no labels" in note for note in result.notes)
    assert "accuracy" not in result.metrics_after


def test_shared_clusters_train_centroids_and_keep_the_assignment():
    teacher = io.load(fixture_path("lenet300"))
    student = io.load(fixture_path("lenet300"))
    MagnitudePrunePass(MagnitudePruneConfig(sparsity=0.9))(student)
    ClusterPass(ClusterConfig(bits=3))(student)
    before = _weights(student)
    result = distill(student, teacher, _data(student, "lenet300"), DistillConfig(epochs=1))
    shared = {entry["name"] for entry in result.trained if entry["shared_clusters"]}
    assert shared and not result.reclustered
    for name in shared:
        old_values, old_index = np.unique(before[name], return_inverse=True)
        new_values, new_index = np.unique(_weights(student)[name], return_inverse=True)
        assert len(new_values) == len(old_values) <= 8  # same clusters, same membership, zero still zero
        np.testing.assert_array_equal(old_index, new_index)
        assert not np.array_equal(old_values, new_values) and 0 in new_values

"""A scikit-learn MLP classifier trained on the bundled digits, converted by skl2onnx at opset 9."""

from __future__ import annotations

from functools import cache

import numpy as np

from onnxcomp.corpus.spec import BuildContext, ModelSpec
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

OPSET = 9


@cache
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order[:1200]], digits.target[order[:1200]], x[order[1200:]]


def build(ctx: BuildContext) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, _ = _split()
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=300, random_state=0).fit(x_train, y_train)
    onx = to_onnx(clf, x_train[:1], target_opset={"": OPSET, "ai.onnx.ml": 1},
                  options={id(clf): {"zipmap": False}})
    return onx.SerializeToString()


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    x_train, _, x_test = _split()
    pool = x_train if split == "calib" else x_test
    # batches of 8 samples: a classifier is served on small batches, and agreement counts every row
    return [{"X": pool[i * 8 : (i + 1) * 8]} for i in range(count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return top_k_agreement(reference, candidate, output="probabilities", k=3)


SPEC = ModelSpec(
    name="skl_mlp_digits",
    task="digit classification (MLP)",
    exporter="skl2onnx",
    wheels=(),
    build=build,
    inputs=inputs,
    metric=metric,
    kind="mlp",
    notes="opset 9, ai.onnx.ml ops (ArgMax/label output int64), batch axis dynamic",
)

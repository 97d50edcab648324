"""SqueezeNet 1.0 as the ``onnx`` package ships it in its backend test data: an IR 3 / opset 9 onnx-caffe2 export.

It is the "light" variant: structure only. Every Conv weight (and conv10's bias) is rebuilt at run time by a
``ConstantOfShape`` filled with 0.02, only the other biases are real numbers. All 1000 class channels therefore
compute the same value and the softmax is exactly uniform (0.001) for every input: argmax is class 0 by the tie
rule, on both sides, as long as the candidate keeps the channels identical. The model is in the corpus for its
graph (IR 3 with every initializer repeated as a graph input, weights made by nodes, Dropout, opset 9), not for
its predictions; any change that breaks the symmetry between class channels flips top-1 and fails.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from onnxcomp.corpus.inputs import photos
from onnxcomp.corpus.spec import BuildContext, ModelSpec
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

OUTPUT = "softmaxout_1"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@cache
def _path() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"


def build(ctx: BuildContext) -> bytes:
    return _path().read_bytes()


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """Shorter side to 256, centre crop 224, ImageNet mean/std in RGB order: ``[1, 3, 224, 224]`` float32."""
    h, w = rgb.shape[:2]
    scale = 256 / min(h, w)
    image = photos.resize_bilinear(rgb, (max(224, round(w * scale)), max(224, round(h * scale))))
    top, left = (image.shape[0] - 224) // 2, (image.shape[1] - 224) // 2
    crop = image[top : top + 224, left : left + 224].astype(np.float32) / 255.0
    return np.ascontiguousarray(((crop - MEAN) / STD).transpose(2, 0, 1)[None])


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    return [{"data_0": preprocess(image)} for image in photos.variants(split, count, seed=9)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    """Top-1 over the class axis; non-finite candidate scores fail outright (argmax would still say class 0)."""
    result = top_k_agreement(reference, candidate, output=OUTPUT, axis=1, k=5)
    tied = sum(int(np.sum(r[OUTPUT] == r[OUTPUT].max()) > 1) for r in reference)
    details = {**result.details, "reference_top1_tied": tied}
    if not all(np.isfinite(c[OUTPUT]).all() for c in candidate):
        return MetricResult(result.name, {**result.values, "top1_agreement": float("nan")}, result.bar,
                            details={**details, "flag": "candidate has non-finite scores"})
    return MetricResult(result.name, result.values, result.bar, details=details)


SPEC = ModelSpec(
    name="squeezenet_ir3",
    task="image classification (SqueezeNet 1.0, structure only: constant weights)",
    exporter="onnx-caffe2 (IR 3, from the onnx package's backend test data)",
    wheels=(),
    build=build,
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="IR 3, opset 9; 53 graph inputs: data_0 [1, 3, 224, 224] plus all 52 initializers listed again as "
          "inputs (an IR < 4 requirement: they may be overridden by a feed); conv weights are NOT initializers but "
          "ConstantOfShape(value 0.02) outputs fed by int64 __SHAPE initializers, so the output is a uniform "
          "softmax [1, 1000, 1, 1] whatever the input ('light' test model: random/constant weights, structure "
          "only); Dropout in the graph; fixed batch 1",
)

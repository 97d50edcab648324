"""Google's Magika file-type classifier (standard_v3_3, 214 content types), as the magika wheel ships it.

Features follow ``Magika._extract_features_from_seekable`` with the model's ``config.min.json``: read at most
``block_size`` (4096) bytes from each end of the file, strip ASCII whitespace from the start of the head and the
end of the tail, keep the first ``beg_size`` (1024) and the last ``end_size`` (1024) bytes, pad the head at its
end and the tail at its start with token 256. Files under 8 bytes, or whose stripped head is shorter than that,
never reach the model in magika, so they are left out here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxcomp.corpus.inputs import files
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.classification import top_k_agreement

WHEEL = Wheel("magika", "1.0.3")
MEMBER = "magika/models/standard_v3_3/model.onnx"
BEG_SIZE = END_SIZE = 1024
BLOCK_SIZE = 4096
PADDING = 256
MIN_SIZE = 8
#: magika runs the model on batches of files; 8 a feed keeps feeds small and mixes formats in every batch.
BATCH = 8


def features(path: Path) -> np.ndarray | None:
    """The ``[2048]`` int32 model input of one file, or None where magika would not ask the model."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, 2)
            size = stream.tell()
            if size < MIN_SIZE:
                return None
            span = min(BLOCK_SIZE, size)
            stream.seek(0)
            head = stream.read(span).lstrip()  # bytes.strip: ASCII whitespace, as magika's Python code does
            stream.seek(size - span)
            tail = stream.read(span).rstrip()
    except OSError:  # unreadable: magika reports an error instead of asking the model
        return None
    beg = list(head[:BEG_SIZE]) + [PADDING] * max(0, BEG_SIZE - len(head))
    end = [PADDING] * max(0, END_SIZE - len(tail)) + list(tail[-END_SIZE:])
    if beg[MIN_SIZE - 1] == PADDING:
        return None
    return np.asarray(beg + end, dtype=np.int32)


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    picked = files.pick(split, count * BATCH, seed=3, accept=lambda p: features(p) is not None)
    rows = np.stack([features(p) for p in picked])
    return [{"bytes": rows[i * BATCH : (i + 1) * BATCH]} for i in range(count)]


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return top_k_agreement(reference, candidate, output="target_label", k=3)


SPEC = ModelSpec(
    name="magika",
    task="file content-type classification (Magika standard_v3_3, 214 types)",
    exporter="tf2onnx 1.16.1 (from a jax2tf SavedModel)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, MEMBER),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 15 + ai.onnx.ml 2 imported (unused), IR 8; input 'bytes' INT32 [N, 2048] (token ids 0..256, N "
          "dynamic, fed 8 files a feed); output target_label [N, 214] softmax. Byte embedding is an Expand/Equal/"
          "Cast one-hot [N, 2048, 257] times a [257, 64] MatMul, tanh-GELU spelled out in Mul/Tanh/Add, LayerNorms "
          "spelled out (ReduceSum/Sqrt/Reciprocal) before the one Conv [512, 256, 5, 1] and after GlobalMaxPool, "
          "so scaling a weight tensor is mostly normalised away; Shape/Slice/Concat/Cast-built shapes for Reshape and "
          "Expand (the batch dim flows through them)",
)

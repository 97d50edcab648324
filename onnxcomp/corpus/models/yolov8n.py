"""NudeNet's YOLOv8n detector (18 body-part classes, faces among them), as the nudenet wheel ships it.

Inputs are prepared as ``nudenet._read_image`` does: pad the image bottom/right with black to a square, resize it
to 320x320 (bilinear), scale to [0, 1]. nudenet reads the file with OpenCV (BGR), then converts with
``COLOR_RGBA2BGR`` -- on a 3-channel image that swaps red and blue -- and ``blobFromImage(swapRB=True)`` swaps them
back, so the network is fed BGR; so are these feeds. Most classes never fire on scikit-image's photos, but faces
do: half the feeds are sheets of LFW faces, the other half the bundled photos (astronaut and cameraman among them).
"""

from __future__ import annotations

import numpy as np

from onnxcomp.corpus.inputs import photos
from onnxcomp.corpus.spec import ModelSpec, Wheel, wheel_member
from onnxcomp.metrics import MetricResult, Outputs
from onnxcomp.metrics.detection import Detections, decode_yolov8, detection_f1

WHEEL = Wheel("nudenet", "3.4.2")
SIZE = 320
#: nudenet keeps rows whose best class score is >= 0.2, then cv2.dnn.NMSBoxes(score 0.25, IoU 0.45): one NMS over
#: all classes, so the effective score threshold is 0.25.
SCORE_THRESHOLD = 0.25
IOU_THRESHOLD = 0.45


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """One RGB uint8 image to nudenet's ``[1, 3, 320, 320]`` float32 blob (BGR, see the module docstring)."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = rgb
    blob = photos.resize_bilinear(square, (SIZE, SIZE)).astype(np.float32) / 255.0
    return np.ascontiguousarray(blob[..., ::-1].transpose(2, 0, 1)[None])


def inputs(split: str, count: int) -> list[dict[str, np.ndarray]]:
    pictures = photos.variants(split, (count + 1) // 2, seed=8)
    feeds = []
    for index in range(count):
        image = photos.face_mosaic(split, index // 2, size=SIZE, seed=8) if index % 2 == 0 else pictures[index // 2]
        feeds.append({"images": preprocess(image)})
    return feeds


def decode(sample: Outputs) -> list[Detections]:
    return decode_yolov8(sample["output0"], score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD,
                         class_agnostic=True, clip=(SIZE, SIZE))


def metric(reference: list[Outputs], candidate: list[Outputs]) -> MetricResult:
    return detection_f1(reference, candidate, decode=decode, iou_threshold=0.5, class_aware=True)


SPEC = ModelSpec(
    name="yolov8n",
    task="body-part / face detection (YOLOv8n, NudeNet)",
    exporter="torch.onnx (TorchScript, PyTorch 2.3.1, Ultralytics 8.2.46)",
    wheels=(WHEEL,),
    build=wheel_member(WHEEL, "nudenet/320n.onnx"),
    inputs=inputs,
    metric=metric,
    kind="conv",
    notes="opset 17, IR 10; input images [batch, 3, height, width] all dynamic (fed 1x3x320x320); output0 "
          "[batch, 22, anchors] with a symbolic anchor-count expression; C2f blocks, SPPF (MaxPool), DFL head "
          "(Softmax + 1x1 Conv), anchors built in-graph from Shape/Range/Expand; Split, Resize (nearest) upsampling",
)

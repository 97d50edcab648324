"""onnxcomp: compress ONNX models and check them with onnxruntime.

The top level re-exports what a script needs most: :func:`load` and :func:`save`. Passes live in
``onnxcomp.passes``, the pipeline in ``onnxcomp.pipeline``, the checker in ``onnxcomp.check``.
"""

from onnxcomp.io import load, save

__all__ = ["load", "save"]
__version__ = "0.1.0"

"""onnxcomp: compress ONNX models and check them with onnxruntime.

The top level re-exports what a script needs most: :func:`load`, :func:`save` and :func:`open_session`
(an onnxruntime session for an ``.onnx`` or packed ``.onnxc`` file; imported on first use so that
``import onnxcomp`` does not load onnxruntime). Passes live in
``onnxcomp.passes``, the pipeline in ``onnxcomp.pipeline``, the checker in ``onnxcomp.check``.
"""

from onnxcomp.io import load, save

__all__ = ["load", "open_session", "save"]


def __getattr__(name: str) -> object:
    if name == "open_session":
        from onnxcomp.packing.api import open_session

        return open_session
    raise AttributeError(f"module 'onnxcomp' has no attribute {name!r}")


__version__ = "0.1.0"

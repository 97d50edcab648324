"""onnxcomp: compress ONNX models and check them with onnxruntime."""

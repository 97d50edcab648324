"""The packed ``.onnxc`` container and its entropy codecs (lossless weight storage)."""

"""One module per corpus model; each exposes ``SPEC``, a :class:`onnxcomp.corpus.spec.ModelSpec`."""

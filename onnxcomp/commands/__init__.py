"""One module per ``onnxcomp`` subcommand; each defines a click command named ``command``.

``onnxcomp.cli`` discovers the modules here, so adding a command is adding a module. Commands parse options,
call the library and render its results: they hold no logic of their own.
"""

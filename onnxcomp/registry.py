"""Passes by name: what recipes and presets refer to (``quantize``, ``channels``, ...).

The table is built from the modules of :mod:`onnxcomp.passes` the first time it is asked for, not when this
module is imported: importing the registry costs nothing, and a new pass is just a new module whose
:class:`~onnxcomp.pass_base.CompressionPass` subclass sets ``name``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

from onnxcomp.errors import InputError
from onnxcomp.pass_base import CompressionPass

__all__ = ["pass_class", "pass_names"]


#: Pass modules that could not be imported, with the reason (named in "unknown pass" errors).
_UNAVAILABLE: dict[str, str] = {}


@functools.cache
def _table() -> dict[str, type[CompressionPass]]:
    """Import every pass module once and index the pass classes it defines by their ``name``."""
    from onnxcomp import passes

    table: dict[str, type[CompressionPass]] = {}
    for info in pkgutil.iter_modules(passes.__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{passes.__name__}.{info.name}")
        except ImportError as exc:  # a pass whose optional dependency is missing (e.g. torch) is unavailable
            _UNAVAILABLE[info.name] = str(exc).splitlines()[0]
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, CompressionPass) and cls.__module__ == module.__name__
                    and not inspect.isabstract(cls) and isinstance(getattr(cls, "name", None), str)):
                table[cls.name] = cls
    return dict(sorted(table.items()))


def pass_names() -> list[str]:
    """Every registered pass name, sorted."""
    return list(_table())


def pass_class(name: str) -> type[CompressionPass]:
    """The pass class registered as ``name``; a one-line input error naming the known passes otherwise."""
    table = _table()
    if name not in table:
        missing = "".join(f"; module {m} unavailable: {why}" for m, why in _UNAVAILABLE.items())
        raise InputError(f"unknown pass {name!r} (known: {', '.join(table)}{missing})")
    return table[name]

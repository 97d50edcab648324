"""Name → :class:`ModelSpec` for every corpus model; each module in ``models/`` exposes ``SPEC``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from onnxcomp.corpus import models
from onnxcomp.corpus.spec import ModelSpec


@cache
def all_specs() -> dict[str, ModelSpec]:
    """Every corpus model by name, in a stable order (hold-out models last)."""
    specs = []
    for info in pkgutil.iter_modules(models.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{models.__name__}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, ModelSpec):
            specs.append(spec)
    specs.sort(key=lambda s: (s.holdout, s.name))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise RuntimeError(f"duplicate corpus model names: {names}")
    return {s.name: s for s in specs}


def get(name: str) -> ModelSpec:
    specs = all_specs()
    if name not in specs:
        raise KeyError(f"no corpus model {name!r} (known: {', '.join(specs)})")
    return specs[name]


def select(names: list[str] | None = None, *, holdout: bool | None = False) -> list[ModelSpec]:
    """Specs by name, or all of them; ``holdout=False`` leaves the hold-out out, ``None`` takes everything."""
    if names:
        return [get(n) for n in names]
    return [s for s in all_specs().values() if holdout is None or s.holdout == holdout]

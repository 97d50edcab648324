"""The presets of ``onnxcomp optimize``: plain pass lists, written as recipe documents.

Each preset is exactly what a recipe file with the same content would build (``onnxcomp optimize --preset size``
and ``--recipe`` on the YAML of :func:`preset_recipe('size').dump() <preset_recipe>` do the same thing). The
budget is not part of a preset: ``optimize`` applies the user's (default: cosine ≥ 0.99 and top-1 agreement
≥ 99% against the original, on the data), measures after every step and reverts or backs off a step that
breaks it.

* ``balanced`` — cleanup, exact removal of all-zero channels, int8 within the budget kept only if faster;
* ``speed`` — balanced plus channel removal searched within the budget (up to half of each group);
* ``size`` — balanced's exact steps, magnitude pruning and clustering within the budget (with fallbacks to
  gentler settings), int8 kept whenever it fits the budget (it is 4x smaller even when not faster), the graph
  minified (names and defaults only humans read), then packing into ``.onnxc``.
"""

from __future__ import annotations

from typing import Any

from onnxcomp.errors import InputError
from onnxcomp.recipe import Recipe

__all__ = ["DEFAULT_PRESET", "PRESETS", "preset_recipe"]

DEFAULT_PRESET = "balanced"

_CLEANUP: dict[str, Any] = {"pass": "cleanup", "exact": True}
_ZERO_CHANNELS: dict[str, Any] = {"pass": "channels", "config": {"ratio": 0.0}, "exact": True}

PRESETS: dict[str, dict[str, Any]] = {
    "balanced": {
        "passes": [
            _CLEANUP,
            _ZERO_CHANNELS,
            {"pass": "quantize", "keep": "if-faster"},
        ],
    },
    "speed": {
        "passes": [
            _CLEANUP,
            _ZERO_CHANNELS,
            {"pass": "channels", "config": {"ratio": 0.5, "search_step": 0.05}},
            {"pass": "quantize", "keep": "if-faster"},
        ],
    },
    "size": {
        "pack": True,
        "passes": [
            _CLEANUP,
            _ZERO_CHANNELS,
            {"pass": "prune", "config": {"sparsity": 0.7}, "fallbacks": [{"sparsity": 0.5}, {"sparsity": 0.3}]},
            {"pass": "cluster", "config": {"bits": 4, "per_channel": True},
             "fallbacks": [{"bits": 6}, {"bits": 8}]},
            {"pass": "quantize"},
            {"pass": "cleanup", "config": {"minify": True}, "exact": True},
        ],
    },
}


def preset_recipe(name: str) -> Recipe:
    """The recipe of preset ``name``; a one-line error naming the presets otherwise."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return Recipe.from_dict(PRESETS[name], f"preset {name}")

"""Recipes: a YAML file listing passes with their configs, the exact thing the Python API builds.

A recipe is data a person can read, diff and keep next to a model::

    version: 1
    budget: {min_cosine: 0.99, min_top1: 0.99}   # optional; what `onnxcomp optimize` must keep
    pack: false                                   # optional; write a packed .onnxc
    passes:
      - pass: cleanup
        exact: true            # changes no output: runs even without data
      - pass: prune
        config: {sparsity: 0.7}
        fallbacks:             # tried in order when the budget breaks
          - {sparsity: 0.5}
      - pass: quantize
        keep: if-faster        # 'always' (default) or 'if-faster'

Every key is checked: an unknown key is a one-line error naming the key and the pass, and config values are
checked against the pass's typed config dataclass (lists become tuples where the dataclass wants tuples), so a
recipe either builds exactly the passes it says or is refused before anything runs. Presets
(:mod:`onnxcomp.presets`) are recipes written as Python data.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from onnxcomp.errors import InputError
from onnxcomp.pass_base import CompressionPass, PassContext
from onnxcomp.registry import pass_class

__all__ = ["Budget", "Recipe", "Step", "config_from_dict", "config_to_dict"]

RECIPE_VERSION = 1
Keep = Literal["always", "if-faster"]
_STEP_KEYS = ("pass", "config", "fallbacks", "keep", "exact")
_TOP_KEYS = ("version", "budget", "pack", "passes")


# -- budget ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How far the optimized model may drift from the original, measured on the data.

    Attributes:
        min_cosine: smallest cosine similarity of every output to the original's.
        min_top1: smallest top-1 agreement with the original on score outputs.
        max_drop: largest top-1 accuracy drop (with labels) or disagreement (without), as a fraction.
    """

    min_cosine: float | None = None
    min_top1: float | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        for name, low in (("min_cosine", -1.0), ("min_top1", 0.0), ("max_drop", 0.0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not low <= value <= 1.0):
                raise InputError(f"budget {name} must be a number in [{low:g}, 1], got {value!r}")
        if all(getattr(self, f.name) is None for f in dataclasses.fields(self)):
            raise InputError("a budget needs at least one of min_cosine, min_top1, max_drop")

    @classmethod
    def default(cls) -> Budget:
        """What a user would accept without saying otherwise: cosine ≥ 0.99 and top-1 agreement ≥ 99%."""
        return cls(min_cosine=0.99, min_top1=0.99)

    def tightened(self, headroom: float) -> Budget:
        """The budget with a share ``headroom`` of each allowed loss held in reserve.

        The data is a sample: a model that just meets the budget on it misses it on other samples about half
        the time. Steps are kept against the tightened budget so the real one holds beyond the data.
        """
        keep = 1.0 - headroom
        return Budget(
            min_cosine=None if self.min_cosine is None else 1.0 - (1.0 - self.min_cosine) * keep,
            min_top1=None if self.min_top1 is None else 1.0 - (1.0 - self.min_top1) * keep,
            max_drop=None if self.max_drop is None else self.max_drop * keep,
        )

    def describe(self) -> str:
        parts = []
        if self.min_cosine is not None:
            parts.append(f"cosine ≥ {self.min_cosine:.8g}")
        if self.min_top1 is not None:
            parts.append(f"top-1 agreement ≥ {self.min_top1:.4g}")
        if self.max_drop is not None:
            parts.append(f"top-1 drop ≤ {self.max_drop:.4g}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


# -- configs <-> plain data --------------------------------------------------------------------------------


def config_from_dict(pass_cls: type[CompressionPass], values: Mapping[str, Any], where: str) -> Any:
    """Build ``pass_cls.Config`` from plain data, naming the key and the pass in every error."""
    if not isinstance(values, Mapping):
        raise InputError(f"{where}: config must be a mapping of option: value, got {type(values).__name__}")
    config_cls = pass_cls.Config
    known = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise InputError(f"{where}: unknown key {key!r} for pass {pass_cls.name!r} "
                             f"(known: {', '.join(known)})")
        kwargs[key] = _coerce(value, hints[key], f"{where}: {pass_cls.name}.{key}")
    try:
        return config_cls(**kwargs)
    except InputError as exc:
        raise InputError(f"{where}: {pass_cls.name}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: {pass_cls.name}: {str(exc).splitlines()[0]}") from None


def config_to_dict(config: Any, pass_name: str) -> dict[str, Any]:
    """Every option of a config as YAML-friendly data (tuples as lists); callables cannot be written."""
    values = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if callable(value):
            raise InputError(f"{pass_name}.{item.name} is a Python callable and cannot be written to a recipe")
        values[item.name] = _plain(value)
    return values


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a nested config (spiral.distill)
        return {item.name: _plain(getattr(value, item.name)) for item in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint and convert YAML's lists/ints to the tuples/floats it names."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if errors else f"{where}: must not be null")
    handler = _COERCERS.get(origin or hint)
    if handler is None:
        if origin is not None and origin.__module__ == "collections.abc":  # Callable and friends
            raise InputError(f"{where}: can only be given through the Python API, not a recipe")
        return value
    return handler(value, args, where)


def _coerce_tuple(value: Any, args: tuple[Any, ...], where: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise InputError(f"{where}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], where) for v in value)
    if args and len(args) != len(value):
        raise InputError(f"{where}: expected {len(args)} items, got {len(value)}")
    return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True)) if args else tuple(value)


def _coerce_float(value: Any, args: tuple[Any, ...], where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _coerce_int(value: Any, args: tuple[Any, ...], where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected an integer, got {value!r}")
    return value


def _coerce_bool(value: Any, args: tuple[Any, ...], where: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {value!r}")
    return value


def _coerce_str(value: Any, args: tuple[Any, ...], where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string, got {value!r}")
    return value


def _coerce_literal(value: Any, args: tuple[Any, ...], where: str) -> Any:
    if value not in args:
        raise InputError(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
    return value


#: Type hint (or its origin) -> converter; anything else is passed through to the dataclass's own checks.
_COERCERS: dict[Any, Any] = {
    tuple: _coerce_tuple,
    float: _coerce_float,
    int: _coerce_int,
    bool: _coerce_bool,
    str: _coerce_str,
    Literal: _coerce_literal,
}


# -- steps and recipes -------------------------------------------------------------------------------------


@dataclass
class Step:
    """One pass of a recipe, with what ``onnxcomp optimize`` does around it.

    Attributes:
        config: the pass's config dataclass instance.
        fallbacks: option overrides tried in order (each on the model as it was before the step) when the
            budget breaks; when none fits, the step is reverted.
        keep: ``if-faster``: keep the step's result only when it runs faster than the model before it.
        exact: the step changes no output (it runs without data; with data it is still measured).
    """

    pass_name: str
    config: Any
    fallbacks: tuple[dict[str, Any], ...] = ()
    keep: Keep = "always"
    exact: bool = False

    @property
    def pass_cls(self) -> type[CompressionPass]:
        return pass_class(self.pass_name)

    def build(self, context: PassContext | None = None, config: Any | None = None) -> CompressionPass:
        return self.pass_cls(config if config is not None else self.config, context)

    def fallback_configs(self) -> list[Any]:
        """The configs the fallbacks describe, each the step's config with the overrides applied."""
        base = config_to_dict(self.config, self.pass_name)
        return [config_from_dict(self.pass_cls, {**base, **overrides}, f"{self.pass_name} fallback {i + 1}")
                for i, overrides in enumerate(self.fallbacks)]

    @classmethod
    def from_dict(cls, entry: Any, where: str) -> Step:
        if not isinstance(entry, Mapping) or "pass" not in entry:
            raise InputError(f"{where}: each step must be a mapping with a 'pass' key, got {entry!r}")
        name = entry["pass"]
        if not isinstance(name, str):
            raise InputError(f"{where}: 'pass' must be a pass name, got {name!r}")
        for key in entry:
            if key not in _STEP_KEYS:
                raise InputError(f"{where}: unknown key {key!r} for pass {name!r} (step keys: "
                                 f"{', '.join(_STEP_KEYS)}; pass options go under 'config')")
        step_cls = pass_class(name)
        config = config_from_dict(step_cls, entry.get("config") or {}, where)
        fallbacks = entry.get("fallbacks") or []
        if not isinstance(fallbacks, list) or not all(isinstance(f, Mapping) for f in fallbacks):
            raise InputError(f"{where}: {name}.fallbacks must be a list of option mappings")
        keep = entry.get("keep", "always")
        if keep not in ("always", "if-faster"):
            raise InputError(f"{where}: {name}.keep must be 'always' or 'if-faster', got {keep!r}")
        exact = entry.get("exact", False)
        if not isinstance(exact, bool):
            raise InputError(f"{where}: {name}.exact must be true or false, got {exact!r}")
        step = cls(name, config, tuple(dict(f) for f in fallbacks), keep, exact)
        step.fallback_configs()  # validate the overrides now, not halfway through a run
        return step

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"pass": self.pass_name, "config": config_to_dict(self.config, self.pass_name)}
        if self.fallbacks:
            entry["fallbacks"] = [{k: _plain(v) for k, v in f.items()} for f in self.fallbacks]
        if self.keep != "always":
            entry["keep"] = self.keep
        if self.exact:
            entry["exact"] = True
        return entry


@dataclass
class Recipe:
    """An ordered list of steps, an optional budget, and whether to pack the result."""

    steps: list[Step] = field(default_factory=list)
    budget: Budget | None = None
    pack: bool = False

    # ---- reading

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """Read a YAML recipe; any problem is a one-line :class:`InputError` naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"recipe {path}: cannot read ({exc.strerror or exc})") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str = "recipe") -> Recipe:
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InputError(f"recipe {source}: not valid YAML{where}: {problem}") from None
        return cls.from_dict(document, source)

    @classmethod
    def from_dict(cls, document: Any, source: str = "recipe") -> Recipe:
        if not isinstance(document, Mapping):
            raise InputError(f"recipe {source}: expected a mapping with a 'passes' list")
        for key in document:
            if key not in _TOP_KEYS:
                raise InputError(f"recipe {source}: unknown top-level key {key!r} (known: {', '.join(_TOP_KEYS)})")
        version = document.get("version", RECIPE_VERSION)
        if version != RECIPE_VERSION:
            raise InputError(f"recipe {source}: version {version!r} is not supported (this onnxcomp reads "
                             f"version {RECIPE_VERSION})")
        passes = document.get("passes")
        if not isinstance(passes, list) or not passes:
            raise InputError(f"recipe {source}: 'passes' must be a non-empty list of steps")
        steps = [Step.from_dict(entry, f"recipe {source}, step {i + 1}") for i, entry in enumerate(passes)]
        pack = document.get("pack", False)
        if not isinstance(pack, bool):
            raise InputError(f"recipe {source}: 'pack' must be true or false, got {pack!r}")
        return cls(steps, _budget_from(document.get("budget"), source), pack)

    # ---- writing

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"version": RECIPE_VERSION}
        if self.budget is not None:
            document["budget"] = {k: v for k, v in self.budget.to_dict().items() if v is not None}
        if self.pack:
            document["pack"] = True
        document["passes"] = [step.to_dict() for step in self.steps]
        return document

    def dump(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path: str | Path) -> Path:
        from onnxcomp import io

        out = io.check_output_path(path, inputs=(), overwrite=True)
        with io.atomic_write(out) as handle:
            handle.write(self.dump().encode())
        return out

    # ---- the Python API's objects

    def passes(self, context: PassContext | None = None) -> list[CompressionPass]:
        return [step.build(context) for step in self.steps]

    @classmethod
    def from_passes(cls, passes: list[CompressionPass]) -> Recipe:
        return cls([Step(p.name, p.config) for p in passes])

    def with_recovery(self, distill_epochs: int = 2) -> Recipe:
        """This recipe with accuracy recovered by distillation from the original (``optimize --recover``).

        Every ``prune`` step becomes a ``spiral`` step (pruning reached gradually, with distillation between
        steps, keeping the sparsest round within the budget), and every ``cluster`` step is followed by a
        ``distill`` step that trains the centroids (clusters kept). One-shot pruning and clustering lose
        accuracy that a few epochs of distillation win back, so the budget admits more: the spiral aims at
        ``RECOVER_SPARSITY`` (or the step's own sparsity when higher) and stops at the last round that keeps
        the budget, so a model that cannot go that far ends where it can.
        """
        steps: list[Step] = []
        for index, step in enumerate(self.steps):
            steps.append(_as_spiral(step, index) if step.pass_name == "prune" else step)
            if step.pass_name == "cluster":
                distill = pass_class("distill")
                steps.append(Step("distill", config_from_dict(
                    distill, {"epochs": distill_epochs, "clustered": "share"}, "--recover")))
        return Recipe(steps, self.budget, self.pack)


#: Where ``--recover``'s spiral aims: the sparsest round within the budget is kept, so aiming high is safe.
RECOVER_SPARSITY = 0.9
#: Prune options a spiral step carries over; a prune step that sets any other option is not turned into one.
_SPIRAL_FROM_PRUNE = {"sparsity": "target_sparsity", "keep_first_last": "keep_first_last", "min_size": "min_size"}


def _as_spiral(step: Step, index: int) -> Step:
    """The spiral step that reaches a magnitude prune step's sparsity gradually (same fallbacks)."""
    where = f"--recover, step {index + 1} (prune)"
    options = config_to_dict(step.config, "prune")
    defaults = config_to_dict(step.pass_cls.Config(), "prune")
    extra = sorted(k for k, v in options.items() if k not in _SPIRAL_FROM_PRUNE and v != defaults[k])
    overrides = [k for f in step.fallbacks for k in f if k not in _SPIRAL_FROM_PRUNE]
    if extra or overrides:
        raise InputError(f"{where}: the spiral replacing it prunes by global magnitude to a sparsity; it cannot "
                         f"carry {', '.join(extra + overrides)} (use a spiral step in the recipe instead)")
    spiral = pass_class("spiral")
    values = {_SPIRAL_FROM_PRUNE[k]: options[k] for k in _SPIRAL_FROM_PRUNE}
    values["target_sparsity"] = max(values["target_sparsity"], RECOVER_SPARSITY)
    config = config_from_dict(spiral, values, where)
    fallbacks = tuple({_SPIRAL_FROM_PRUNE[k]: v for k, v in f.items()} for f in step.fallbacks)
    return Step("spiral", config, fallbacks, step.keep, step.exact)


def _budget_from(value: Any, source: str) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputError(f"recipe {source}: 'budget' must be a mapping")
    known = [f.name for f in dataclasses.fields(Budget)]
    for key in value:
        if key not in known:
            raise InputError(f"recipe {source}: unknown budget key {key!r} (known: {', '.join(known)})")
    try:
        return Budget(**value)
    except InputError as exc:
        raise InputError(f"recipe {source}: {exc}") from None

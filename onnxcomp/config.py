"""Project settings for the release gate: ``[tool.onnxcomp.check]`` in ``pyproject.toml``, or a ``--config`` file.

A team keeps its thresholds next to its code, so every ``onnxcomp check`` in CI and in pre-commit applies
the same gate without repeating flags::

    [tool.onnxcomp.check]
    data = "eval/holdout.npz"     # relative to the file it is written in
    min_cosine = 0.995
    min_top1 = 0.99
    max_slowdown = 1.10           # implies latency
    runs = 100

Options given on the command line win over the file; the file wins over built-in defaults. Without
``--config`` the nearest ``pyproject.toml`` from the working directory upwards is read (a missing table is
simply no settings). Unknown keys and wrong types are one-line errors naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxcomp.errors import InputError

__all__ = ["CheckConfig", "find_pyproject", "load_check_config"]


@dataclass(frozen=True)
class CheckConfig:
    """Settings of ``onnxcomp check`` read from a file; ``None`` means "not set here"."""

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    min_snr_db: float | None = None
    max_slowdown: float | None = None
    latency: bool | None = None
    runs: int | None = None
    threads: int | None = None
    providers: tuple[str, ...] | None = None
    data: str | None = None
    batch_size: int | None = None
    source: str | None = dataclasses.field(default=None, compare=False)


_FLOAT = ("atol", "rtol", "min_cosine", "min_top1", "min_snr_db", "max_slowdown")
_INT = ("runs", "threads", "batch_size")


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` or a folder above it."""
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None


def _table(document: Mapping[str, Any], path: Path, explicit: bool) -> Mapping[str, Any]:
    """``[tool.onnxcomp.check]``; in a file given with --config, a bare table of keys is accepted too."""
    tool = document.get("tool", {}).get("onnxcomp", {}).get("check") if isinstance(document.get("tool"), dict) \
        else None
    if tool is not None:
        if not isinstance(tool, Mapping):
            raise InputError(f"{path}: [tool.onnxcomp.check] must be a table")
        return tool
    if explicit and "tool" not in document:
        return document
    return {}


def _value(key: str, value: Any, where: str, folder: Path) -> Any:
    if key in _FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if key in _INT:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{where}: {key} must be a positive integer, got {value!r}")
        return value
    if key == "latency":
        if not isinstance(value, bool):
            raise InputError(f"{where}: latency must be true or false, got {value!r}")
        return value
    if key == "providers":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(v in ("cpu", "cuda") for v in value):
            raise InputError(f"{where}: providers must be a list of 'cpu'/'cuda', got {value!r}")
        return tuple(value)
    if not isinstance(value, str):  # data
        raise InputError(f"{where}: data must be a string, got {value!r}")
    is_path = not value.startswith("random") and ":" not in value.replace("\\", "/").split("/")[-1]
    return str(folder / value) if is_path and not Path(value).is_absolute() else value


def load_check_config(config_path: str | Path | None = None, start: Path | None = None) -> CheckConfig:
    """Settings from ``config_path``, else from the nearest ``pyproject.toml`` (empty when there is none)."""
    explicit = config_path is not None
    path = Path(config_path) if explicit else find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return CheckConfig()
    document = _read(path)
    table = _table(document, path, explicit)
    where = f"{path} [tool.onnxcomp.check]" if not explicit or "tool" in document else str(path)
    known = [f.name for f in dataclasses.fields(CheckConfig) if f.name != "source"]
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            raise InputError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        values[name] = _value(name, value, where, path.parent)
    return CheckConfig(**values, source=str(path)) if values else CheckConfig()

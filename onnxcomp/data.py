"""Calibration and evaluation data: where feeds for onnxruntime come from.

One ``--data`` string names a source; every consumer (the checker, calibrating passes) iterates over
:class:`Batch` objects whose ``feed`` is ready for ``InferenceSession.run``. Sources are re-iterable and
stream from disk, so a pass may walk the data several times without holding it all in memory.

Accepted forms:

* ``data.npz`` -- keys are the model's input names (plus an optional ``labels`` key, never fed). Arrays
  with the inputs' ranks whose first axes all hold the same count are a stack along the model's batch axis
  and are cut into batches; arrays with one more axis than the inputs hold one complete feed per entry of
  their first axis; and arrays that are each exactly what the model takes but do not share a first-axis count
  (a recurrent state ``[2, 1, 128]`` beside audio ``[1, 512]`` and a scalar sample rate) are one feed.
* ``folder/`` -- every ``*.npz`` in it, in name order, each read as above; shapes may differ between files
  (text lengths, image sizes).
* ``package.module:function`` -- the function returns an iterable of feed dicts (a generator is fine; it is
  called again for every pass over the data).
* ``random`` or ``random:N`` -- N random samples (default 8). The only way to get random inputs, and it warns:
  parity on noise says little about parity on real inputs.

Every feed is checked against the model's inputs: a missing or unknown name, a wrong dtype, a wrong rank or
a static dimension that differs is a one-line :class:`InputError` naming the input.
"""

from __future__ import annotations

import importlib
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onnxcomp.errors import InputError

Feed = dict[str, np.ndarray]
Dim = int | str | None

#: The npz key that carries labels; it is never fed to the model.
LABELS_KEY = "labels"
DEFAULT_RANDOM_SAMPLES = 8


class RandomDataWarning(UserWarning):
    """Random inputs were requested: results on them are not representative of real data."""


@dataclass(frozen=True)
class InputSpec:
    """What the model expects of one input: the facts a feed is checked against."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def describe(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype.name}[{dims}]"


def input_specs(model: ir.Model) -> list[InputSpec]:
    """The model's real inputs (initializers listed as inputs by old exporters are not inputs to feed)."""
    specs = []
    for value in model.graph.inputs:
        if value.name in model.graph.initializers:
            continue
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        shape = None
        if value.shape is not None:
            shape = tuple(_dim(d) for d in value.shape)
        specs.append(InputSpec(value.name, np.dtype(dtype), shape))
    return specs


def _dim(dim: object) -> Dim:
    """A declared dimension: its size, its symbolic name, or None when unknown. PaddlePaddle's exporter writes
    ``-1`` for a dynamic axis; that is an unknown size, not a size."""
    if isinstance(dim, int):
        return dim if dim >= 0 else None
    return getattr(dim, "value", None) or None


@dataclass
class Batch:
    """One feed for the model, with the labels of its samples when the data carries them."""

    feed: Feed
    labels: np.ndarray | None = None


@dataclass
class DataSource:
    """A re-iterable stream of validated batches plus a description for reports."""

    description: str
    is_random: bool
    _factory: Callable[[], Iterator[Batch]] = field(repr=False)
    num_samples: int | None = None

    def __iter__(self) -> Iterator[Batch]:
        return self._factory()

    def feeds(self) -> Iterator[Feed]:
        """Only the feed dicts, for consumers that do not use labels."""
        return (batch.feed for batch in self)


def parse_shapes(items: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``name=1x3x224x224`` strings (the ``--shape`` option)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        if not sep or not name or not re.fullmatch(r"\d+(x\d+)*", dims):
            raise InputError(f"--shape {item!r}: expected NAME=DIMxDIM..., e.g. input=1x3x224x224")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


def open_data(spec: str, inputs: Sequence[InputSpec], *, shapes: Mapping[str, Sequence[int]] | None = None,
              batch_size: int = 1, seed: int = 0) -> DataSource:
    """Open the data source named by ``spec`` (see the module docstring) for a model with ``inputs``.

    Args:
        spec: the ``--data`` string.
        inputs: the model's inputs, from :func:`input_specs`.
        shapes: concrete shapes for random data's dynamic dimensions (``--shape``).
        batch_size: samples per feed when an array stacks samples along a dynamic batch axis. A static
            batch dimension wins over it.
        seed: the seed of random data.

    Raises:
        InputError: the source does not exist, cannot be read, or does not match the model's inputs.
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if spec == "random" or spec.startswith("random:"):
        return _random_source(spec, inputs, dict(shapes or {}), seed)
    path = Path(spec)
    if path.is_dir():
        return _folder_source(path, inputs, batch_size)
    if path.suffix == ".npz" or path.exists():
        return _npz_source(path, inputs, batch_size)
    if re.fullmatch(r"[\w.]+:\w+", spec):
        return _callable_source(spec, inputs)
    raise InputError(f"--data {spec!r}: no such file or folder, and not a module:function or random[:N]")


# -- npz files and folders ------------------------------------------------------------------------------


def _npz_source(path: Path, inputs: Sequence[InputSpec], batch_size: int) -> DataSource:
    count = _check_npz(path, inputs)
    return DataSource(f"{path} ({count} samples)", False, lambda: _npz_batches(path, inputs, batch_size), count)


def _folder_source(folder: Path, inputs: Sequence[InputSpec], batch_size: int) -> DataSource:
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise InputError(f"--data {folder}: folder holds no .npz files")
    count = sum(_check_npz(path, inputs) for path in files)

    def batches() -> Iterator[Batch]:
        for path in files:
            yield from _npz_batches(path, inputs, batch_size)

    return DataSource(f"{folder}/ ({len(files)} files, {count} samples)", False, batches, count)


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise InputError(f"--data {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"--data {path}: not a readable .npz file (not a zip archive)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"--data {path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None


def _check_npz(path: Path, inputs: Sequence[InputSpec]) -> int:
    """Validate names, dtypes, ranks and sample counts of one npz; return its number of samples."""
    with _open_npz(path) as archive:
        names = set(archive.files)
        _check_names(names - {LABELS_KEY}, inputs, where=str(path))
        arrays = {spec.name: archive[spec.name] for spec in inputs}
        if _is_single_feed(arrays, inputs):
            return 1
        counts = {}
        for spec in inputs:
            array = arrays[spec.name]
            stacked = _stack_mode(array, spec, where=str(path))
            _check_array(array[0] if stacked and len(array) else array, spec, where=str(path),
                         allow_batch_mismatch=not stacked)
            counts[spec.name] = len(array) if array.ndim else 1
        if LABELS_KEY in names:
            counts[LABELS_KEY] = len(archive[LABELS_KEY])
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{name}: {count}" for name, count in counts.items())
        try:
            validate_feed(arrays, inputs, where="")
            why = ""
        except InputError as exc:
            why = f"; as one feed: {str(exc).removeprefix(': ')}"
        raise InputError(f"--data {path}: arrays hold different numbers of samples ({detail}){why}")
    return next(iter(counts.values()), 0)


def _is_single_feed(arrays: Mapping[str, np.ndarray], inputs: Sequence[InputSpec]) -> bool:
    """True when the arrays are one complete feed that cannot be read as a batch stack: each matches its input
    exactly (dtype, rank, every fixed dimension), and their first axes do not hold one common count (a scalar
    input, or a state whose first axis is the number of layers, not samples)."""
    if not inputs:
        return False
    leading = {array.shape[0] if array.ndim else None for array in arrays.values()}
    if len(leading) == 1 and None not in leading:
        return False
    try:
        validate_feed(arrays, inputs, where="")
    except InputError:
        return False
    return True


def _stack_mode(array: np.ndarray, spec: InputSpec, where: str) -> bool:
    """True when the array has one extra leading axis of whole feeds, False when it is batch-stacked."""
    if spec.rank is None or array.ndim == spec.rank:
        return False
    if array.ndim == spec.rank + 1:
        return True
    raise InputError(
        f"{where}: input {spec.name!r} has rank {array.ndim}, the model expects rank {spec.rank} "
        f"({spec.describe()}), or {spec.rank + 1} with samples stacked on a new first axis"
    )


def _npz_batches(path: Path, inputs: Sequence[InputSpec], batch_size: int) -> Iterator[Batch]:
    with _open_npz(path) as archive:
        arrays = {spec.name: archive[spec.name] for spec in inputs}
        labels = archive[LABELS_KEY] if LABELS_KEY in archive.files else None
    if not inputs:
        return
    if _is_single_feed(arrays, inputs):
        yield Batch(dict(arrays), labels)
        return
    first = inputs[0]
    if _stack_mode(arrays[first.name], first, str(path)):
        for i in range(len(arrays[first.name])):
            yield Batch({name: array[i] for name, array in arrays.items()},
                        None if labels is None else labels[i : i + 1])
        return
    static = _static_batch(inputs)
    step = static or batch_size
    total = len(arrays[first.name]) if arrays[first.name].ndim else 1
    if static and total % static:
        raise InputError(f"--data {path}: {total} samples do not split into the model's fixed batch of {static}")
    for start in range(0, total, step):
        yield Batch({name: array[start : start + step] for name, array in arrays.items()},
                    None if labels is None else labels[start : start + step])


def _static_batch(inputs: Sequence[InputSpec]) -> int | None:
    """The batch size the model fixes on its leading axis, if all its inputs agree on one."""
    static = {spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int)}
    return static.pop() if len(static) == 1 else None


# -- module:function --------------------------------------------------------------------------------------


def import_callable(spec: str, option: str) -> Callable[..., object]:
    """The function named ``package.module:function`` (for ``--data`` and ``--metric``); a one-line InputError
    naming ``option`` when the module or the function is not there."""
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{option} {spec}: cannot import module {module_name!r} ({exc})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"{option} {spec}: {module_name!r} has no function {func_name!r}")
    return func


def _callable_source(spec: str, inputs: Sequence[InputSpec]) -> DataSource:
    func = import_callable(spec, "--data")

    def batches() -> Iterator[Batch]:
        for index, feed in enumerate(func()):
            if not isinstance(feed, Mapping):
                raise InputError(f"--data {spec}: item {index} is {type(feed).__name__}, expected a dict of arrays")
            feed = dict(feed)
            labels = feed.pop(LABELS_KEY, None)
            feed = {name: np.asarray(value) for name, value in feed.items()}
            validate_feed(feed, inputs, where=f"--data {spec} item {index}")
            yield Batch(feed, None if labels is None else np.asarray(labels))

    return DataSource(f"{spec} (python callable)", False, batches)


# -- random -----------------------------------------------------------------------------------------------


def _random_source(spec: str, inputs: Sequence[InputSpec], shapes: dict[str, Sequence[int]],
                   seed: int) -> DataSource:
    _, _, count_text = spec.partition(":")
    if count_text and not count_text.isdigit():
        raise InputError(f"--data {spec}: expected random or random:N with N a positive integer")
    count = int(count_text) if count_text else DEFAULT_RANDOM_SAMPLES
    if count < 1:
        raise InputError(f"--data {spec}: N must be at least 1")
    unknown = set(shapes) - {s.name for s in inputs}
    if unknown:
        raise InputError(f"--shape {sorted(unknown)[0]!r}: not an input of the model "
                         f"(inputs: {', '.join(s.name for s in inputs)})")
    concrete = {spec_.name: _concrete_shape(spec_, shapes.get(spec_.name)) for spec_ in inputs}
    warnings.warn(
        f"--data {spec}: random inputs are not representative; parity and calibration on them "
        "say little about real data",
        RandomDataWarning,
        stacklevel=2,
    )

    def batches() -> Iterator[Batch]:
        rng = np.random.default_rng(seed)
        for _ in range(count):
            yield Batch({s.name: _random_array(rng, s.dtype, concrete[s.name]) for s in inputs})

    return DataSource(f"random ({count} samples, seed {seed}; not representative)", True, batches, count)


def _concrete_shape(spec: InputSpec, given: Sequence[int] | None) -> tuple[int, ...]:
    if spec.shape is None:
        if given is None:
            raise InputError(f"input {spec.name!r} has an unknown shape: give --shape {spec.name}=DIMxDIM...")
        return tuple(given)
    if given is not None:
        if len(given) != len(spec.shape):
            raise InputError(f"--shape {spec.name}: rank {len(given)} given, the model expects {spec.describe()}")
        for axis, (want, got) in enumerate(zip(spec.shape, given, strict=True)):
            if isinstance(want, int) and want != got:
                raise InputError(f"--shape {spec.name}: axis {axis} is fixed at {want} in the model, got {got}")
        return tuple(given)
    dims = []
    for axis, dim in enumerate(spec.shape):
        if isinstance(dim, int):
            dims.append(dim)
        elif axis == 0:
            dims.append(1)  # a dynamic leading axis is the batch axis in practice; one sample is the safe pick
        else:
            raise InputError(f"input {spec.name!r} has dynamic axis {axis} ({dim or '?'}): "
                             f"give its size with --shape {spec.name}=" + "x".join("N" for _ in spec.shape))
    return tuple(dims)


def _random_array(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 16, size=shape).astype(dtype)  # small ids are valid indices for most tables
    return rng.standard_normal(shape).astype(dtype)


# -- validation -------------------------------------------------------------------------------------------


def _check_names(names: set[str], inputs: Sequence[InputSpec], where: str) -> None:
    expected = {spec.name for spec in inputs}
    missing = sorted(expected - names)
    if missing:
        raise InputError(f"{where}: model input {missing[0]!r} has no data (data keys: {', '.join(sorted(names))})")
    unknown = sorted(names - expected)
    if unknown:
        raise InputError(f"{where}: data key {unknown[0]!r} is not an input of the model "
                         f"(inputs: {', '.join(sorted(expected))})")


def _check_array(array: np.ndarray, spec: InputSpec, where: str, allow_batch_mismatch: bool = False) -> None:
    if array.dtype != spec.dtype:
        raise InputError(f"{where}: input {spec.name!r} is {array.dtype.name}, the model expects "
                         f"{spec.dtype.name} (convert with .astype({spec.dtype.name}))")
    if spec.shape is None:
        return
    if array.ndim != len(spec.shape):
        raise InputError(f"{where}: input {spec.name!r} has rank {array.ndim}, the model expects "
                         f"rank {len(spec.shape)} ({spec.describe()})")
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if axis == 0 and allow_batch_mismatch:
            continue
        if isinstance(want, int) and want != got:
            raise InputError(f"{where}: input {spec.name!r} axis {axis} is {got}, the model fixes it at {want} "
                             f"({spec.describe()})")


def validate_feed(feed: Mapping[str, np.ndarray], inputs: Sequence[InputSpec], where: str) -> None:
    """Check one complete feed against the model's inputs; raise a one-line InputError naming the input."""
    _check_names(set(feed), inputs, where)
    for spec in inputs:
        _check_array(feed[spec.name], spec, where)

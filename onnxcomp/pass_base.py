"""The base every onnxcomp pass builds on, and the facts a pass hands back.

A pass is an ``onnx_ir`` in-place pass with three additions the pipeline relies on:

* ``Config``: a typed dataclass, so a pass's options are checked names, not a string-keyed dict, and a
  recipe can be validated before anything runs;
* ``needs``: what the pass requires from its surroundings (calibration data, onnxruntime sessions), so the
  pipeline can refuse a run up front instead of failing after an hour of earlier passes;
* a :class:`PassReport`: what changed, what was left alone and why, bytes before and after, time taken.

Its ``ensures()`` post-condition loads the result in onnxruntime: a pass never hands back a model the runtime
cannot load.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import onnx_ir as ir
import onnxruntime as ort

from onnxcomp import io
from onnxcomp.data import DataSource
from onnxcomp.errors import EXIT_INTERNAL, MissingRequirementError, OnnxcompError
from onnxcomp.weights import iter_weights


class Need(enum.Enum):
    """Something a pass cannot run without."""

    DATA = "calibration data (--data)"
    SESSION = "an onnxruntime session"


class PassFailedError(OnnxcompError):
    """A pass produced a model onnxruntime cannot load: a bug in the pass, reported as an internal error."""

    exit_code = EXIT_INTERNAL


@dataclass
class PassContext:
    """What the surroundings give passes: data to calibrate on, and where sessions run."""

    data: DataSource | None = None
    provider: str = "cpu"
    seed: int = 0

    def has(self, need: Need) -> bool:
        if need is Need.DATA:
            return self.data is not None
        return need is Need.SESSION  # onnxruntime is a hard dependency, so a CPU session is always possible

    def session(self, model: ir.Model, *, optimize: bool = True) -> ort.InferenceSession:
        """A session over an in-memory model (no file is written), on the context's provider."""
        from onnxcomp.session import create_session

        level = "all" if optimize else "disable"
        return create_session(io.serialize(model), self.provider, graph_optimization=level)


@dataclass(frozen=True)
class Skipped:
    """Something a pass looked at and left alone, with the reason (so "why was this skipped?" has an answer)."""

    target: str
    reason: str


@dataclass
class PassOutcome:
    """What :meth:`CompressionPass.apply` returns; the base adds timing and sizes to make a report."""

    modified: bool
    changed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassReport:
    """The facts one pass run produced; JSON-serialisable through :meth:`to_dict`."""

    name: str
    config: dict[str, Any]
    modified: bool
    changed: list[dict[str, Any]]
    skipped: list[Skipped]
    summary: dict[str, Any]
    weight_bytes_before: int
    weight_bytes_after: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CompressionPassResult(ir.passes.PassResult):
    """An onnx-ir pass result that also carries the pass's report."""

    def __init__(self, model: ir.Model, modified: bool, report: PassReport) -> None:
        super().__init__(model, modified)
        self.report = report


def weight_bytes(model: ir.Model) -> int:
    """Bytes of every stored weight: initializers, Constant nodes and subgraph weights."""
    return sum(ref.nbytes for ref in iter_weights(model))


class CompressionPass(ir.passes.InPlacePass, abc.ABC):
    """Base of onnxcomp passes. Subclasses set ``name``, ``Config``, ``needs`` and implement :meth:`apply`.

    Call it like any onnx-ir pass (``result = MyPass(config)(model)``); give it a :class:`PassContext` (the
    pipeline does) when it needs data.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    needs: ClassVar[frozenset[Need]] = frozenset()
    #: Load the result in onnxruntime after the pass (the guarantee every pass gives); tests of a
    #: pass's internals may turn it off, users should not.
    verify_with_runtime: ClassVar[bool] = True

    def __init__(self, config: Any | None = None, context: PassContext | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.context = context or PassContext()

    def missing_needs(self, context: PassContext) -> list[Need]:
        return [need for need in sorted(self.needs, key=lambda n: n.name) if not context.has(need)]

    def requires(self, model: ir.Model) -> None:
        missing = self.missing_needs(self.context)
        if missing:
            raise MissingRequirementError(f"{self.name} needs {', '.join(n.value for n in missing)}")

    def call(self, model: ir.Model) -> CompressionPassResult:
        before = weight_bytes(model)
        start = time.perf_counter()
        outcome = self.apply(model, self.context)
        seconds = time.perf_counter() - start
        report = PassReport(
            name=self.name,
            config=dataclasses.asdict(self.config),
            modified=outcome.modified,
            changed=outcome.changed,
            skipped=outcome.skipped,
            summary=outcome.summary,
            weight_bytes_before=before,
            weight_bytes_after=weight_bytes(model),
            seconds=seconds,
        )
        return CompressionPassResult(model, outcome.modified, report)

    def ensures(self, model: ir.Model) -> None:
        if not self.verify_with_runtime:
            return
        try:
            PassContext(provider="cpu").session(model, optimize=False)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PassFailedError(f"{self.name} produced a model onnxruntime cannot load: {first}") from exc

    def __call__(self, model_or_result: ir.Model | ir.passes.PassResult, /) -> CompressionPassResult:
        # onnx-ir wraps exceptions from requires()/ensures() in its own error types; unwrap ours so the
        # user sees the one-line message and the documented exit code.
        try:
            return super().__call__(model_or_result)  # type: ignore[return-value]
        except (ir.passes.PreconditionError, ir.passes.PostconditionError) as exc:
            if isinstance(exc.__cause__, OnnxcompError):
                raise exc.__cause__ from None
            raise

    @abc.abstractmethod
    def apply(self, model: ir.Model, context: PassContext) -> PassOutcome:
        """Change ``model`` in place and say what was done."""


def describe_needs(passes: Sequence[CompressionPass], context: PassContext) -> list[str]:
    """One line per pass that lacks something, e.g. ``quantize needs calibration data (--data)``."""
    return [
        f"{p.name} needs {', '.join(n.value for n in missing)}"
        for p in passes
        if (missing := p.missing_needs(context))
    ]

"""onnxruntime sessions created the same way everywhere, with errors a user can act on.

Every command that runs a model (``check``, calibration, latency) goes through
:func:`create_session`, so that:

* a model onnxruntime cannot load becomes an :class:`~onnxcomp.errors.InputError` with one line
  naming the model, instead of a multi-line pybind traceback;
* asking for a provider never silently runs on another one. onnxruntime quietly falls back to
  CPU when the CUDA libraries are missing; a parity or latency number measured on the wrong
  device would be a wrong release decision, so we check ``session.get_providers()`` after
  creation and refuse;
* onnxruntime's own warnings (``log_severity_level=3``) do not drown our output.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from onnxcomp.errors import InputError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

#: Our short provider names (what ``--provider`` takes) and the onnxruntime names they stand for.
SHORT_NAMES: dict[str, str] = {"cpu": CPU, "cuda": CUDA}

#: Where a provider's runtime comes from, for "not available" messages.
_PACKAGE_HINTS: dict[str, str] = {CUDA: "onnxruntime-gpu not installed"}

_OPTIMIZATION_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

#: onnxruntime tensor type strings and the numpy dtype a feed must have for them.
_ORT_TENSOR_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(np.object_),
}

_MAX_MESSAGE = 300
#: ``/onnxruntime_src/…/reshape_helper.h:84 onnxruntime::ReshapeHelper::ReshapeHelper(…) `` in kernel errors.
_SOURCE_LOCATION = re.compile(r"/onnxruntime_src/\S+:\d+\s+(?:onnxruntime::[\w:~]+\([^)]*\)\s*)?")

Dim = int | str | None


class ProviderUnavailableError(InputError):
    """The requested execution provider cannot run here (exit 2, like any unusable input)."""


@dataclass(frozen=True)
class ProviderStatus:
    """Whether an execution provider can really be used on this machine.

    Attributes:
        name: Our short name (``cpu``, ``cuda``), or the lower-cased onnxruntime name without its
            ``ExecutionProvider`` suffix for providers we have no short name for.
        ort_name: The onnxruntime name, e.g. ``CUDAExecutionProvider``.
        available: True only when onnxruntime lists the provider *and* a session created on it
            keeps it (no silent fallback).
        reason: Why it is not available, as a line for the user; None when available.
    """

    name: str
    ort_name: str
    available: bool
    reason: str | None = None


@dataclass(frozen=True)
class FeedSpec:
    """One model input as onnxruntime sees it, for validation messages.

    Attributes:
        name: Input name.
        type: onnxruntime type string, e.g. ``tensor(float)``.
        dtype: The numpy dtype a feed must have; None for non-tensor or unknown types.
        shape: Dimensions: an int for a fixed size, a str for a named (symbolic) one, None for
            an unnamed dynamic one. None altogether when the rank is unknown (onnxruntime also
            reports scalars that way, so they are not checked here either).
    """

    name: str
    type: str
    dtype: np.dtype | None
    shape: tuple[Dim, ...] | None

    def describe(self) -> str:
        """Render as ``name: float32[N, 3, 224, 224]`` (``?`` for an unnamed dynamic dim)."""
        kind = self.type if self.dtype is None or self.dtype == np.object_ else str(self.dtype)
        if self.shape is None:
            return f"{self.name}: {kind}[...]"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {kind}[{dims}]"


def one_line(error: BaseException | str, limit: int = _MAX_MESSAGE) -> str:
    """Collapse an (onnxruntime) error message to a single line of at most ``limit`` characters.

    onnxruntime messages often continue on further lines with the useful detail (which index,
    which dimension), so lines are joined rather than dropped; the C++ source locations and
    function signatures kernel errors carry are removed, since they push that detail past the limit.
    """
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = _SOURCE_LOCATION.sub("", text)
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def available_providers() -> list[str]:
    """Return the execution providers this onnxruntime build lists (onnxruntime names)."""
    return list(ort.get_available_providers())


def to_ort_name(name: str) -> str:
    """Map ``cpu``/``cuda`` (any case) or a full onnxruntime provider name to the onnxruntime name.

    Raises:
        InputError: For a name that is neither a known short name nor an onnxruntime name.
    """
    key = name.strip()
    if key.lower() in SHORT_NAMES:
        return SHORT_NAMES[key.lower()]
    if key.endswith("ExecutionProvider"):
        return key
    known = ", ".join(sorted(SHORT_NAMES))
    raise InputError(f"unknown provider {name!r}: use one of {known} or an onnxruntime provider name")


def short_name(ort_name: str) -> str:
    """Return our short name for an onnxruntime provider name (``CUDAExecutionProvider`` → ``cuda``)."""
    for short, full in SHORT_NAMES.items():
        if full == ort_name:
            return short
    return ort_name.removesuffix("ExecutionProvider").lower()


def resolve_provider(name: str) -> ProviderStatus:
    """Say whether provider ``name`` can really run here, and why not when it cannot.

    CUDA counts as available only when onnxruntime lists it and a probe session created on it
    still has it in ``get_providers()``: onnxruntime-gpu without a GPU or without loadable CUDA
    libraries lists the provider but falls back to CPU at session creation. The probe result
    is cached per process.

    Raises:
        InputError: For an unknown provider name.
    """
    ort_name = to_ort_name(name)
    short = short_name(ort_name)
    if ort_name not in available_providers():
        hint = _PACKAGE_HINTS.get(ort_name, f"this onnxruntime build has no {ort_name}")
        return ProviderStatus(short, ort_name, False, f"{short}: not available ({hint})")
    if ort_name == CPU:
        return ProviderStatus(short, ort_name, True)
    failure = _probe_provider(ort_name)
    if failure is not None:
        return ProviderStatus(short, ort_name, False, f"{short}: not available ({failure})")
    return ProviderStatus(short, ort_name, True)


@functools.cache
def _probe_provider(ort_name: str) -> str | None:
    """Create a one-node session on ``ort_name``; return why it did not stick, or None if it did."""
    options = _session_options(None, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    try:
        session = ort.InferenceSession(_probe_model(), sess_options=options, providers=[ort_name, CPU])
    except Exception as error:  # onnxruntime's exceptions derive from Exception only
        return f"session creation failed: {one_line(error, 160)}"
    if ort_name not in session.get_providers():
        if ort_name == CUDA:
            return "no GPU / CUDA libraries failed to load"
        return "provider failed to initialise; onnxruntime fell back to CPU"
    return None


def _probe_model() -> bytes:
    """A one-Identity-node model, enough for onnxruntime to initialise a provider."""
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "probe",
        [value("x", TensorProto.FLOAT, [1])],
        [value("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def create_session(
    model: str | os.PathLike[str] | bytes,
    provider: str = "cpu",
    *,
    intra_op_threads: int | None = None,
    graph_optimization: ort.GraphOptimizationLevel | str = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    configure: Callable[[ort.SessionOptions], None] | None = None,
    label: str | None = None,
) -> ort.InferenceSession:
    """Create an onnxruntime session that really runs on ``provider``.

    Args:
        model: Path to an ``.onnx`` file, or the serialized model.
        provider: ``cpu``, ``cuda`` or an onnxruntime provider name. Non-CPU providers get CPU as
            the second provider so that operators they lack still run (onnxruntime's normal
            partitioning); the requested provider itself must be active.
        intra_op_threads: Threads for one operator; None keeps onnxruntime's default (one per
            physical core). Fixing it makes latency comparable across machines.
        graph_optimization: An ``ort.GraphOptimizationLevel`` or one of ``disable``, ``basic``,
            ``extended``, ``all``.
        configure: Called with the session options before the session is created, for callers that
            add to them (e.g. packed models hand decoded weights over as external initializers).
        label: How to name the model in messages (default: its path, or its size when in memory).

    Raises:
        InputError: The file is missing or onnxruntime cannot load the model (one line: the model
            and onnxruntime's message).
        ProviderUnavailableError: The provider is unknown to this build, or onnxruntime fell
            back to another one.
    """
    label = label or model_label(model)
    source = _model_source(model, label)
    status = resolve_provider(provider)
    if not status.available:
        raise ProviderUnavailableError(f"{label}: {status.reason}")
    options = _session_options(intra_op_threads, _optimization_level(graph_optimization))
    if configure is not None:
        configure(options)
    providers = [status.ort_name] if status.ort_name == CPU else [status.ort_name, CPU]
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime's exceptions derive from Exception only
        raise InputError(f"cannot load model {label}: {one_line(error)}") from error
    if status.ort_name not in session.get_providers():
        raise ProviderUnavailableError(
            f"{label}: {status.name}: onnxruntime fell back to {', '.join(session.get_providers())}"
        )
    return session


def model_label(model: str | os.PathLike[str] | bytes) -> str:
    """How a model is named in messages: its path, or its size when it is in memory."""
    if isinstance(model, bytes | bytearray):
        return f"<in-memory model, {len(model)} bytes>"
    return os.fspath(model)


def _model_source(model: str | os.PathLike[str] | bytes, label: str) -> str | bytes:
    """Return what ``InferenceSession`` takes, checking a path exists first for a clearer error."""
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise InputError(f"cannot load model {label}: no such file")
    return path


def _optimization_level(level: ort.GraphOptimizationLevel | str) -> ort.GraphOptimizationLevel:
    if isinstance(level, ort.GraphOptimizationLevel):
        return level
    try:
        return _OPTIMIZATION_LEVELS[level.lower()]
    except KeyError:
        choices = ", ".join(_OPTIMIZATION_LEVELS)
        raise InputError(f"unknown graph optimization level {level!r}: use one of {choices}") from None


def _session_options(intra_op_threads: int | None, level: ort.GraphOptimizationLevel) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = level
    if intra_op_threads is not None:
        if intra_op_threads < 1:
            raise InputError(f"intra-op threads must be at least 1, got {intra_op_threads}")
        options.intra_op_num_threads = intra_op_threads
    return options


def model_feed_specs(session: ort.InferenceSession) -> list[FeedSpec]:
    """Describe the inputs ``session`` needs (initializers that can be overridden excluded)."""
    return [_spec(arg) for arg in session.get_inputs()]


def model_output_specs(session: ort.InferenceSession) -> list[FeedSpec]:
    """Describe the outputs ``session`` produces, in the order ``session.run`` returns them."""
    return [_spec(arg) for arg in session.get_outputs()]


def ort_numpy_dtype(type_name: str) -> np.dtype:
    """The numpy dtype of an onnxruntime type string such as ``tensor(int32)`` (float32 when unknown)."""
    return _ORT_TENSOR_DTYPES.get(type_name) or np.dtype(np.float32)


def _spec(arg: ort.NodeArg) -> FeedSpec:
    # onnxruntime reports both "rank unknown" and "scalar" as []; treat it as unknown so that a
    # shapeless input is not rejected here (a real scalar mismatch still fails in onnxruntime).
    shape = tuple(_dim(d) for d in arg.shape) if arg.shape else None
    return FeedSpec(arg.name, arg.type, _ORT_TENSOR_DTYPES.get(arg.type), shape)


def _dim(dim: object) -> Dim:
    if isinstance(dim, int) and dim >= 0:
        return dim
    if isinstance(dim, str) and dim:
        return dim
    return None


def check_feed(specs: list[FeedSpec], feed: Mapping[str, np.ndarray], *, where: str = "") -> None:
    """Raise a one-line :class:`InputError` when ``feed`` cannot be given to a model with ``specs``.

    Checks what onnxruntime would otherwise report with a pybind traceback: a missing input, a
    wrong dtype, a wrong rank, a fixed dimension of the wrong size. Extra keys in ``feed`` are
    not an error (callers pass each session only the inputs it has).

    Args:
        specs: From :func:`model_feed_specs`.
        feed: Input name to array.
        where: Prefix for the message, e.g. ``"reference.onnx, feed #3"``.
    """
    prefix = f"{where}: " if where else ""
    for spec in specs:
        if spec.name not in feed:
            given = ", ".join(sorted(feed)) or "nothing"
            raise InputError(f"{prefix}model input {spec.describe()} is missing from the data (got {given})")
        problem = _feed_problem(spec, np.asarray(feed[spec.name]))
        if problem:
            raise InputError(f"{prefix}input {spec.name!r}: {problem}; the model expects {spec.describe()}")


def _feed_problem(spec: FeedSpec, array: np.ndarray) -> str | None:
    if spec.dtype is not None and array.dtype != spec.dtype and spec.dtype != np.object_:
        return f"got dtype {array.dtype}"
    if spec.shape is None:
        return None
    if array.ndim != len(spec.shape):
        return f"got rank {array.ndim} (shape {tuple(array.shape)})"
    for axis, (want, got) in enumerate(zip(spec.shape, array.shape, strict=True)):
        if isinstance(want, int) and want != got:
            return f"dimension {axis} is {got} (shape {tuple(array.shape)})"
    return None


def run_named(session: ort.InferenceSession, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``session`` on the inputs of ``feed`` it has and return outputs by name.

    Keys of ``feed`` the model has no input for are dropped, so one feed can serve a reference
    and a candidate whose inputs are a subset of the reference's. A failing run raises
    onnxruntime's exception without onnxruntime also printing it.
    """
    wanted = {arg.name for arg in session.get_inputs()}
    inputs = {name: value for name, value in feed.items() if name in wanted}
    names = [arg.name for arg in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs, _quiet_run_options()), strict=True))


def _quiet_run_options() -> ort.RunOptions:
    """Run options that keep onnxruntime from also logging a failed run: the exception says it all.

    Severity 4 (fatal only) because a failing kernel logs at error level (3), which the session's
    ``log_severity_level=3`` still lets through; callers turn the exception into one line.
    """
    options = ort.RunOptions()
    options.log_severity_level = 4
    return options


def session_provider(session: ort.InferenceSession) -> str:
    """The provider a session runs on first (our short name)."""
    return short_name(session.get_providers()[0])


def session_intra_op_threads(session: ort.InferenceSession) -> int | None:
    """The intra-op thread count the session was created with; None for onnxruntime's default."""
    threads = session.get_session_options().intra_op_num_threads
    return threads if threads > 0 else None

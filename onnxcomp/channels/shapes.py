"""Value shapes for the channel analysis: ONNX inference, then onnxruntime observation of what it leaves unknown.

ONNX shape inference loses ranks after a Reshape whose target is computed at run time (older exports build it
from ``Shape -> Gather -> Concat``). Values it leaves unknown are *observed*: the model runs on two probe feeds in
which every dynamic input dim differs (a real feed and the same feed tiled twice along its dynamic axes, or zeros
at 32 and 64), and a dim that differs between the runs is dynamic. The probes must differ by a factor, not by
one: a stride-8 CNN maps widths 1 and 2 both to one column, and ddddocr_rec's sequence length then looked static.

Observed shapes are facts about two feeds, not about the model. They serve the analysis only and are never handed
back: :func:`settle_shapes` replaces them by ONNX's own inference before the model leaves the pass. Written as
``value_info``, a dim wrongly observed as static makes onnxruntime's optimizer bake it into a Reshape literal, and
one symbol shared by different dynamic dims makes its allocator reuse buffers of different sizes ("Shape mismatch
attempting to re-use buffer").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

Feed = dict[str, np.ndarray]

#: Sizes of every dynamic input dim in the zero probes, tried in order; the pair must differ by a factor.
ZERO_PROBE_SIZES: tuple[tuple[int, int], ...] = ((32, 64), (8, 16), (1, 2))
#: A probe larger than this (elements, all inputs together) is not tried: observation keeps every unknown
#: intermediate value alive, a real image tiled twice along batch, height and width is 8x as large, and a
#: dynamic batch of 64 images of 224 x 224 is 9.6 M elements before the first layer.
MAX_PROBE_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class InputArg:
    """One input onnxruntime asks for: its name, numpy dtype and dims (``None`` where dynamic)."""

    name: str
    dtype: np.dtype
    dims: tuple[int | None, ...] | None

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.dims or ()) if d is None]


def session_inputs(session: object) -> list[InputArg]:
    """The inputs of an onnxruntime session, with dynamic dims (symbols, ``-1``, unknown) as ``None``."""
    from onnxcomp.session import ort_numpy_dtype

    args = []
    for arg in session.get_inputs():  # type: ignore[attr-defined]
        dims = None if arg.shape is None else tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
        args.append(InputArg(arg.name, ort_numpy_dtype(arg.type), dims))
    return args


def zero_feed(inputs: list[InputArg], size: int, seed: int | None = None) -> Feed | None:
    """Zeros for every input, each dynamic dim ``size``; ``None`` when an input's rank is unknown.

    With ``seed``, float inputs are standard normal instead: zeros flow through a bias-free network as zeros and
    would hide a wrong weight (integer inputs stay zero, a valid index for any embedding).
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    feed = {}
    for arg in inputs:
        if arg.dims is None:
            return None
        dims = [size if d is None else d for d in arg.dims]
        if rng is not None and np.issubdtype(arg.dtype, np.floating):
            feed[arg.name] = rng.standard_normal(dims).astype(arg.dtype)
        else:
            feed[arg.name] = np.zeros(dims, dtype=arg.dtype)
    return feed


def tiled_feed(feed: Mapping[str, np.ndarray], inputs: list[InputArg]) -> Feed | None:
    """``feed`` repeated twice along every dynamic axis (values stay realistic, every dynamic dim doubles).

    ``None`` when nothing is dynamic (the two probes would be one) or the result would exceed
    :data:`MAX_PROBE_ELEMENTS`.
    """
    out: Feed = {}
    by_name = {arg.name: arg for arg in inputs}
    grew = False
    for name, array in feed.items():
        arg = by_name.get(name)
        axes = [a for a in (arg.dynamic_axes if arg is not None else []) if a < array.ndim]
        reps = [2 if i in axes else 1 for i in range(array.ndim)]
        grew = grew or bool(axes)
        out[name] = np.tile(array, reps) if axes else array
    if not grew or _elements(out) > MAX_PROBE_ELEMENTS:
        return None
    return out


def probe_pairs(inputs: list[InputArg], feed: Mapping[str, np.ndarray] | None = None) -> Iterator[tuple[Feed, Feed]]:
    """Pairs of feeds to observe shapes on, best first: a real feed and its tiling, then zeros at two sizes."""
    if feed is not None:
        variant = tiled_feed(feed, inputs)
        if variant is not None:
            yield dict(feed), variant
    for small, large in ZERO_PROBE_SIZES:
        pair = zero_feed(inputs, small), zero_feed(inputs, large)
        if pair[0] is not None and pair[1] is not None and _elements(pair[1]) <= MAX_PROBE_ELEMENTS:
            yield pair[0], pair[1]


def _elements(feed: Mapping[str, np.ndarray]) -> int:
    return sum(int(np.size(a)) for a in feed.values())


def infer_shapes(model: ir.Model, feed: Mapping[str, np.ndarray] | None = None) -> None:
    """Fill in value shapes (the analysis needs channel counts and spatial sizes).

    ONNX inference first; values it leaves unknown are observed with onnxruntime (see the module docstring),
    starting from ``feed`` when a real one is given.
    """
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    unknown = [v for node in model.graph for v in node.outputs if v.shape is None and v.name]
    if unknown:
        _observe_shapes(model, unknown, feed)


def _observe_shapes(model: ir.Model, values: list[ir.Value], feed: Mapping[str, np.ndarray] | None) -> None:
    import onnx

    from onnxcomp import io
    from onnxcomp.session import create_session

    probe = ir.serde.deserialize_model(onnx.load_from_string(io.serialize(model)))
    forget_shapes(probe)  # shapes observed in an earlier round are no facts for onnxruntime's planner
    by_name = {v.name: v for node in probe.graph for v in node.outputs}
    probe.graph.outputs.extend(by_name[v.name] for v in values if not by_name[v.name].is_graph_output())
    try:
        session = create_session(io.serialize(probe), "cpu", graph_optimization="disable")
    except Exception:  # an unloadable probe only means fewer known shapes: the analysis then freezes more
        return
    names, inputs = [v.name for v in values], session_inputs(session)
    wanted = {arg.name for arg in inputs}
    real = None if feed is None else {k: v for k, v in feed.items() if k in wanted}
    for pair in probe_pairs(inputs, real):
        try:
            observed = [[np.shape(o) for o in session.run(names, f)] for f in pair]
        except Exception:  # this pair does not run (too small, wrong values): try the next one
            continue
        _record(values, observed[0], observed[1])
        return


def _record(values: list[ir.Value], one: list[tuple[int, ...]], two: list[tuple[int, ...]]) -> None:
    """Dims equal in both runs are static; the others get a symbol of their own (never a shared one)."""
    counter = itertools.count()
    for value, a, b in zip(values, one, two, strict=True):
        if len(a) == len(b):
            value.shape = ir.Shape([x if x == y else f"observed_{next(counter)}" for x, y in zip(a, b, strict=True)])


@dataclass(frozen=True)
class Boundary:
    """Graph inputs' and outputs' declared types and shapes, which a structured pass must hand back unchanged
    (ONNX inference would 'refine' a declared output ``[1, seqlen]`` from what it infers; subgraphs' too)."""

    entries: tuple[tuple[ir.Value, ir.TypeProtocol | None, ir.Shape | None], ...]

    @classmethod
    def of(cls, model: ir.Model) -> Boundary:
        values = list(dict.fromkeys(v for graph in model.graphs() for v in [*graph.inputs, *graph.outputs]))
        return cls(tuple((v, v.type, None if v.shape is None else ir.Shape(list(v.shape))) for v in values))

    def restore(self) -> None:
        for value, type_, shape in self.entries:
            value.type = type_
            value.shape = shape


def forget_shapes(model: ir.Model) -> None:
    """Clear every intermediate value's shape (graph inputs and outputs keep theirs).

    For a model about to run in onnxruntime, which infers shapes itself: what it must not see is an observed one.
    """
    graph = model.graph
    keep = {*graph.inputs, *graph.outputs}
    for node in graph:
        for value in node.outputs:
            if value not in keep:
                value.shape = None


def described_values(model: ir.Model) -> set[str]:
    """Names of the intermediate values, in every graph, that the model's ``value_info`` describes (a type or
    a shape: onnx-ir writes a ``value_info`` entry for either)."""
    return {v.name for graph in model.graphs() for node in graph for v in node.outputs
            if v.name and (v.shape is not None or v.type is not None)}


def settle_shapes(model: ir.Model, described: set[str] | None = None) -> None:
    """Replace every intermediate shape by ONNX's own inference, dropping observed ones (see the module docstring).

    With ``described`` (from :func:`described_values` before any inference), only those values keep a type and a
    shape: the model describes what it described before and grows no ``value_info`` of its own. Graph inputs and
    outputs keep exactly what they declared.
    """
    boundary = Boundary.of(model)
    forget_shapes(model)
    ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    boundary.restore()
    if described is None:
        return
    for graph in model.graphs():
        keep = {*graph.inputs, *graph.outputs}
        for node in graph:
            for value in node.outputs:
                if value not in keep and value.name not in described:
                    value.shape, value.type = None, None

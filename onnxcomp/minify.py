"""Minify a graph: drop what only humans read, so a model packed for size carries weights, not prose.

On a model pruned and clustered to a few kilobytes, the graph itself becomes a large part of the file: an
exporter's node names (``/layer1/conv2/Conv``), intermediate value names (``/layer1/conv2/Conv_output_0``),
doc strings, inferred shapes of intermediate values and attributes spelled out at their default values
(``dilations=[1, 1]``, ``group=1``) are what is left to save: on LeNet-5 pruned to 95 % and clustered, the graph
section is 677 of 2,665 packed bytes and minifying brings it to 520. None of them changes what the model computes.

Guarantees: graph inputs, graph outputs (of the main graph and of every subgraph) and initializers keep their
names; every node keeps its op, inputs and outputs; only attributes equal to the value the operator's
specification gives for their absence are dropped, so every output is computed exactly as before.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from dataclasses import dataclass

import onnx
import onnx.defs
import onnx_ir as ir

__all__ = ["MinifyReport", "minify"]

#: Ops whose spatial attributes default to all ones (strides, dilations) or all zeros (pads, output_padding)
#: when absent, as their specifications say in prose (the schema carries no default for a list whose length
#: depends on the input's rank).
_SPATIAL_OPS = frozenset({"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool",
                          "LpPool", "MaxUnpool", "DeformConv"})
_ALL_ONES = frozenset({"strides", "dilations"})
_ALL_ZEROS = frozenset({"pads", "output_padding"})
_STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_ALPHABET = string.ascii_letters + string.digits


@dataclass
class MinifyReport:
    """What minification removed."""

    node_names: int = 0
    renamed_values: int = 0
    default_attributes: int = 0
    doc_strings: int = 0
    value_shapes: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


def _short_names(taken: set[str]) -> Iterator[str]:
    """``a, b, ..., 9, aa, ab, ...``, skipping names in use (a digit never starts a name, for readability)."""
    for length in itertools.count(1):
        for letters in itertools.product(_ALPHABET, repeat=length):
            name = "".join(letters)
            if not name[0].isdigit() and name not in taken:
                yield name


def _schema_default(node: ir.Node, name: str, opsets: dict[str, int]) -> object | None:
    domain = node.domain or ""
    version = opsets.get(domain, opsets.get("ai.onnx") if domain == "" else None)
    if version is None:
        return None
    try:
        schema = onnx.defs.get_schema(node.op_type, version, domain)
    except onnx.defs.SchemaError:
        return None
    attribute = schema.attributes.get(name)
    if attribute is None or not attribute.default_value.name:
        return None
    value = onnx.helper.get_attribute_value(attribute.default_value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return tuple(v.decode() if isinstance(v, bytes) else v for v in value)
    return value


def _is_default(node: ir.Node, attr: ir.Attr, opsets: dict[str, int]) -> bool:
    if attr.is_ref() or attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS, ir.AttributeType.TENSOR,
                                      ir.AttributeType.TENSORS):
        return False
    value = attr.value
    if isinstance(value, list | tuple):
        value = tuple(value)
    if node.op_type in _SPATIAL_OPS and (node.domain or "") in _STANDARD_DOMAINS and isinstance(value, tuple):
        auto_pad = node.attributes.get("auto_pad")
        if attr.name in _ALL_ONES and value and all(v == 1 for v in value):
            return True
        if attr.name in _ALL_ZEROS and value and all(v == 0 for v in value) and (
                auto_pad is None or auto_pad.value == "NOTSET"):
            return True
    default = _schema_default(node, attr.name, opsets)
    return default is not None and default == value


def minify(model: ir.Model) -> MinifyReport:
    """Minify ``model`` in place (see the module docstring) and say what went."""
    report = MinifyReport()
    opsets = dict(model.opset_imports)
    graphs = list(model.graphs())
    kept: set[str] = set()
    for graph in graphs:
        kept.update(v.name for v in itertools.chain(graph.inputs, graph.outputs, graph.initializers.values())
                    if v.name)
    names = _short_names(kept)
    for owner in (model, *graphs):
        if owner.doc_string:
            owner.doc_string, report.doc_strings = None, report.doc_strings + 1
    for graph in graphs:
        for node in graph:
            if node.name:
                node.name, report.node_names = None, report.node_names + 1
            if node.doc_string:
                node.doc_string, report.doc_strings = None, report.doc_strings + 1
            for key in [k for k, attr in node.attributes.items() if _is_default(node, attr, opsets)]:
                del node.attributes[key]
                report.default_attributes += 1
            standard = (node.domain or "") in _STANDARD_DOMAINS
            for value in node.outputs:
                if not value.name or value.name in kept:
                    continue
                short = next(names)
                if value.name != short:  # a second run gives every value the name it already has
                    value.name, report.renamed_values = short, report.renamed_values + 1
                if value.doc_string:
                    value.doc_string, report.doc_strings = None, report.doc_strings + 1
                if standard and (value.shape is not None or value.type is not None):
                    # onnxruntime infers the types and shapes of standard ops itself; custom ops keep theirs.
                    value.shape, value.type = None, None
                    report.value_shapes += 1
    return report

"""The structured graph coding (graph codec 4): exact on every fixture, and hardened against forged streams."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from support import fixture_path

from onnxcomp import io
from onnxcomp.errors import InputError
from onnxcomp.packing import format as fmt
from onnxcomp.packing import graphcode, pack, pack_with_report, unpack_proto
from onnxcomp.packing.cursor import varint

FIXTURES = ["lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer", "lenet300_if",
            "lenet300_constants", "bert_encoder"]


def _graph_section(name: str) -> bytes:
    """The graph bytes the writer codes: the model with its weight bytes taken out."""
    model = onnx.load(fixture_path(name))
    fmt._take_weights(model, None)
    return model.SerializeToString()


@pytest.mark.parametrize("name", FIXTURES)
def test_bundle_decodes_to_the_identical_graph_bytes(name: str) -> None:
    graph = _graph_section(name)
    assert graphcode.decode(graphcode.encode(graph), len(graph), InputError) == graph


@pytest.mark.parametrize(("name", "codec"), [("mobilenetv2", "streams+lzma2"), ("transformer", "streams+lzma2"),
                                           ("lenet300_if", "lzma2")])
def test_unpacked_model_serializes_byte_identically(name: str, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "STREAMS_MIN_GAIN", 0.0)  # dense fixtures: the graph is a small share of the file
    data, report = pack_with_report(onnx.load(fixture_path(name)))
    assert report.graph_codec == codec  # the writer keeps whichever graph coding is smaller
    assert unpack_proto(data).model.SerializeToString() == onnx.load(fixture_path(name)).SerializeToString()


def test_non_protobuf_bytes_are_unsupported_and_the_writer_falls_back() -> None:
    with pytest.raises(graphcode.Unsupported):
        graphcode.encode(b"\x0f\xff\xff")  # field 1 with wire type 7
    codec, _ = fmt._compress_graph(b"\x0f\xff\xff")
    assert codec != fmt.GRAPH_STREAMS


def _bundle(streams: dict[int, bytes]) -> bytes:
    """A hand-made bundle (as a forger would write it): directory of key gaps and lengths, then the streams."""
    out, previous = bytearray(varint(len(streams))), -1
    for key in sorted(streams):
        out += varint(key - previous - 1) + varint(len(streams[key]))
        previous = key
    return bytes(out) + b"".join(streams[key] for key in sorted(streams))


_TAGS = graphcode._key(0, 0, graphcode.TAGS)
_NAME = 2  # ModelProto.producer_name: a string field
_PRODUCER = 2 << 3 | 2


@pytest.mark.parametrize(("streams", "message"), [
    ({_TAGS: bytes([_PRODUCER, 0]), graphcode._key(0, _NAME, graphcode.VALUES): varint(5)}, "out of range"),
    ({_TAGS: bytes([_PRODUCER, 0]), graphcode._key(0, _NAME, graphcode.VALUES): b"\0",
      graphcode._key(0, _NAME, graphcode.PREFIX): varint(3)}, "longer than the previous"),
    ({_TAGS: bytes([_PRODUCER, 0]), graphcode._key(0, _NAME, graphcode.VALUES): b"\0",
      graphcode._key(0, _NAME, graphcode.PREFIX): b"\0",
      graphcode._key(0, _NAME, graphcode.LENGTH): varint(2**40)}, "past its declared size"),
    ({_TAGS: bytes([_PRODUCER] * 40 + [0])}, "truncated"),
    ({_TAGS: bytes([7 << 3 | 3, 0])}, "invalid"),
    ({_TAGS: bytes([0x80] * 11)}, "varint"),
    ({_TAGS: bytes([7 << 3 | 2, 0, 0]), graphcode._key(1, 0, graphcode.TAGS): b"\0"}, "unread bytes"),
    ({_TAGS: bytes([7 << 3 | 2, 0]), graphcode._key(1, 0, graphcode.TAGS): bytes([1 << 3 | 2, 0] * 60),  # node
      graphcode._key(2, 0, graphcode.TAGS): bytes([5 << 3 | 2, 0] * 60),  # node: attribute
      graphcode._key(3, 0, graphcode.TAGS): bytes([6 << 3 | 2, 0] * 60)}, "nests too deep"),  # attribute: graph
])
def test_forged_bundles_are_one_line_input_errors(streams: dict[int, bytes], message: str) -> None:
    with pytest.raises(InputError, match=message):
        graphcode.decode(_bundle(streams), 1000, InputError)


def test_forged_directory_is_refused() -> None:
    with pytest.raises(InputError, match="stream count"):
        graphcode.decode(varint(1000) + b"\0\0", 100, InputError)
    with pytest.raises(InputError, match="truncated"):
        graphcode.decode(varint(1) + b"\0" + varint(50) + b"\0", 100, InputError)


@pytest.fixture(scope="module")
def bundle() -> tuple[bytes, bytes]:
    graph = _graph_section("lenet5")
    return graph, graphcode.encode(graph)


def test_every_truncated_bundle_is_refused(bundle: tuple[bytes, bytes]) -> None:
    graph, coded = bundle
    for length in range(0, len(coded), max(1, len(coded) // 300)):
        with pytest.raises(InputError):
            graphcode.decode(coded[:length], len(graph), InputError)


def test_bit_flipped_bundles_fail_cleanly_or_keep_the_declared_size(bundle: tuple[bytes, bytes]) -> None:
    graph, coded = bundle
    rng = np.random.default_rng(11)
    for _ in range(400):
        data = bytearray(coded)
        data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        try:
            out = graphcode.decode(bytes(data), len(graph), InputError)
        except InputError:
            continue
        assert len(out) == len(graph)  # the container's graph CRC rejects these


def test_dense_models_keep_plain_lzma2_where_streams_save_too_little() -> None:
    assert pack_with_report(io.load(fixture_path("resnet")))[1].graph_codec == "lzma2"


def test_bit_flips_in_a_structured_graph_section_are_input_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "STREAMS_MIN_GAIN", 0.0)
    packed = pack(io.load(fixture_path("yolo_block")))
    assert fmt.HEADER.unpack(packed[:fmt.HEADER.size])[5] == fmt.GRAPH_STREAMS
    start, size = fmt.HEADER.size + 4, fmt.HEADER.unpack(packed[:fmt.HEADER.size])[6]
    rng = np.random.default_rng(3)
    for _ in range(150):
        data = bytearray(packed)
        data[start + int(rng.integers(0, size))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(InputError):
            unpack_proto(bytes(data))

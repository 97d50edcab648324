"""The ``.onnxc`` container: write it, and read it back without trusting a single byte (see docs/FORMAT.md).

Layout: a fixed header, the model protobuf with its weight bytes taken out (compressed with zlib or raw LZMA2,
whichever is smaller), then one block per weight tensor. Tensors are identified by their position in a fixed
walk of the graph (initializers, then node attributes depth-first, then functions), so names need not be
unique and Constant-node and subgraph weights are handled like initializers.

The reader checks, before it allocates or decodes anything: the magic, the version, header and block
checksums, that every length fits in what is left of the file, that each block targets an existing tensor
exactly once, and that the declared decoded size equals the size the graph declares for that tensor and
stays under a global limit. Decoded bytes are then checked against their own CRC-32.
"""

from __future__ import annotations

import hashlib
import itertools
import lzma
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from onnxcomp.errors import InputError
from onnxcomp.packing import codecs, graphcode
from onnxcomp.packing.cursor import Cursor, varint

MAGIC = b"\x89ONNXC\r\n"
VERSION = (1, 0)
HEADER = struct.Struct("<8sHHIIB3xQQI")  # + u32 CRC-32 of these 44 bytes
#: A block: varint tensor number, u8 kind, varint decoded size, varint payload length, u32 CRC-32 (of the
#: header bytes before it, continued over the decoded bytes), payload. The smallest possible block is 8 bytes.
MIN_BLOCK = 8
KIND_CODEC, KIND_WIDTH_SHIFT, KIND_EXTERNAL, KIND_GROUP = 0x0F, 4, 0x40, 0x80
#: Tensors up to this size may share one block (a group) when that codes smaller.
GROUP_MAX_BYTES = 4096
FLAG_EXTERNAL = 1
#: Tensors smaller than this stay inside the graph section (the graph codec handles them well).
MIN_BLOCK_BYTES = 64
#: The graph section is a protobuf message, which cannot reach 2 GiB.
MAX_GRAPH_BYTES = 2**31 - 1
GRAPH_ZLIB, GRAPH_LZMA, GRAPH_STREAMS = 1, 3, 4
#: Codec 4 decodes in Python at a few MB/s (about 4 ms for a 7 KB graph, next to 0.05 ms for protobuf's own
#: parser), so it is kept only where it saves at least this fraction of the whole file: on a pruned and
#: clustered model the graph is a large share of the file, on a dense one the saving would not pay for the
#: slower open_session.
STREAMS_MIN_GAIN = 0.01
#: A structured graph's stream bundle may be at most this many times the graph plus a constant (each wire field
#: adds at most a few bytes of references and lengths); the writer falls back to plain LZMA2 beyond it.
_BUNDLE_FACTOR, _BUNDLE_SLACK = 8, 4096
#: (lc, lp, pb) of the graph's raw LZMA2 stream: protobuf bytes are not word-aligned, except where an exporter
#: left weights in the graph as typed fields (skl2onnx's float_data), for which the second, 4-byte aligned
#: setting is also tried on graphs over WORD_ALIGNED_GRAPH bytes (7 % smaller on such a graph).
_LZMA_PROPS = ((2, 0, 0), (1, 2, 2))
WORD_ALIGNED_GRAPH = 1 << 14
#: zlib is also tried on graph sections up to this size (where LZMA2's fixed costs can make it lose).
ZLIB_GRAPH_LIMIT = 4096
#: The raw LZMA2 dictionary is the graph size rounded up to a power of two, within these bounds (so a forged
#: graph size cannot make the decoder allocate more than 64 MiB).
_LZMA_DICT = (1 << 12, 1 << 26)

#: Bits per element of the ONNX data types whose bytes we carry in blocks (anything else stays in the graph).
DTYPE_BITS: dict[int, int] = {
    onnx.TensorProto.FLOAT: 32, onnx.TensorProto.UINT8: 8, onnx.TensorProto.INT8: 8,
    onnx.TensorProto.UINT16: 16, onnx.TensorProto.INT16: 16, onnx.TensorProto.INT32: 32,
    onnx.TensorProto.INT64: 64, onnx.TensorProto.BOOL: 8, onnx.TensorProto.FLOAT16: 16,
    onnx.TensorProto.DOUBLE: 64, onnx.TensorProto.UINT32: 32, onnx.TensorProto.UINT64: 64,
    onnx.TensorProto.COMPLEX64: 64, onnx.TensorProto.COMPLEX128: 128, onnx.TensorProto.BFLOAT16: 16,
    onnx.TensorProto.FLOAT8E4M3FN: 8, onnx.TensorProto.FLOAT8E4M3FNUZ: 8, onnx.TensorProto.FLOAT8E5M2: 8,
    onnx.TensorProto.FLOAT8E5M2FNUZ: 8, onnx.TensorProto.UINT4: 4, onnx.TensorProto.INT4: 4,
}


@dataclass(frozen=True)
class Slot:
    """A tensor of the model, where it sits: its label for reports and the proto that holds its bytes."""

    label: str
    tensor: onnx.TensorProto
    #: an initializer of the main graph (not of a subgraph, a node attribute or a function)
    top_level: bool = False


@dataclass
class BlockInfo:
    """What happened to one tensor: its codec, sizes, and the order-0 entropy bound of its words."""

    index: int
    name: str
    dtype: str
    elements: int
    bytes: int
    codec: str
    packed_bytes: int
    entropy_bytes: float
    external: bool
    codebook_bytes: int = 0

    @property
    def bound_bytes(self) -> float:
        """Order-0 entropy of the words plus their distinct values (the side information any decoder needs)."""
        return self.entropy_bytes + self.codebook_bytes

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.packed_bytes / self.elements if self.elements else 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["bits_per_weight"] = round(self.bits_per_weight, 4)
        data["entropy_bits_per_weight"] = round(8 * self.entropy_bytes / self.elements, 4) if self.elements else 0.0
        data["entropy_bytes"] = round(self.entropy_bytes, 1)
        data["bound_bytes"] = round(self.bound_bytes, 1)
        return data


@dataclass
class ContainerInfo:
    """Facts about a container: graph section sizes and one :class:`BlockInfo` per coded tensor."""

    graph_bytes: int
    graph_packed_bytes: int
    graph_codec: str
    blocks: list[BlockInfo]


# -- walking the tensors -------------------------------------------------------------------------------------------


def walk_tensors(model: onnx.ModelProto) -> list[Slot]:
    """Every TensorProto of the model, in the fixed order block indices refer to."""
    return list(_model_slots(model))


def _model_slots(model: onnx.ModelProto) -> Iterator[Slot]:
    yield from _graph_slots(model.graph, "")
    for function in model.functions:
        for node in function.node:
            yield from _node_slots(node, f"{function.domain}:{function.name}/")


class LazySlots:
    """The walk of :func:`walk_tensors`, taken only as far as block numbers reach.

    Weights are mostly initializers, which come first in the walk, so a reader usually never visits the
    nodes' attributes at all (walking every node was a visible share of decoding small models).
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self._walk = _model_slots(model)
        self._slots: list[Slot] = []

    def get(self, index: int) -> Slot | None:
        """The slot at ``index``, or None if the model has fewer tensors."""
        while len(self._slots) <= index:
            slot = next(self._walk, None)
            if slot is None:
                return None
            self._slots.append(slot)
        return self._slots[index]


def _graph_slots(graph: onnx.GraphProto, prefix: str) -> Iterator[Slot]:
    for tensor in graph.initializer:
        yield Slot(prefix + tensor.name, tensor, not prefix)
    for node in graph.node:
        yield from _node_slots(node, prefix)


def _node_slots(node: onnx.NodeProto, prefix: str) -> Iterator[Slot]:
    where = prefix + (node.name or (node.output[0] if node.output else node.op_type))
    for attr in node.attribute:
        if attr.HasField("t"):
            yield Slot(f"{where}.{attr.name}", attr.t)
        for k, tensor in enumerate(attr.tensors):
            yield Slot(f"{where}.{attr.name}[{k}]", tensor)
        if attr.HasField("g"):
            yield from _graph_slots(attr.g, f"{where}.{attr.name}/")
        for k, sub in enumerate(attr.graphs):
            yield from _graph_slots(sub, f"{where}.{attr.name}[{k}]/")


def expected_nbytes(tensor: onnx.TensorProto) -> int | None:
    """The byte size the graph declares for a tensor (None for data types we do not carry in blocks)."""
    bits = DTYPE_BITS.get(tensor.data_type)
    if bits is None or any(d < 0 for d in tensor.dims):
        return None
    count = 1
    for dim in tensor.dims:
        count *= dim
    return (count * bits + 7) // 8


def _block_width(tensor: onnx.TensorProto, size: int) -> int:
    """The word size a block codes a tensor with: its element size (at most 8), or 1 if that does not divide."""
    width = min(max(DTYPE_BITS.get(tensor.data_type, 8) // 8, 1), 8)
    return width if size % width == 0 else 1


# -- writing -------------------------------------------------------------------------------------------------------


def write_container(model: onnx.ModelProto, out: BinaryIO,
                    read_external: Callable[[onnx.TensorProto], bytes] | None = None) -> ContainerInfo:
    """Write ``model`` as a container to ``out``. ``model`` is modified: its weight bytes are moved out.

    Args:
        model: the model proto (a copy the caller owns).
        out: a binary file object.
        read_external: returns the bytes of a tensor stored as external data; required if there are any.
    """
    taken = _take_weights(model, read_external)
    graph = model.SerializeToString()
    encoded, stats = _encode_blocks(taken)
    graph_codec, graph_payload = _compress_graph(graph, sum(len(payload) + MIN_BLOCK for *_, payload in encoded))
    out.write(_header(len(encoded), graph_codec, graph_payload, graph))
    out.write(graph_payload)
    blocks = []
    for members, codec, payload in encoded:
        blocks.extend(_write_block(members, codec, payload, out, stats))
    return ContainerInfo(len(graph), len(graph_payload), _GRAPH_CODEC_NAMES[graph_codec], blocks)


_Taken = tuple[int, Slot, bytes, bool]


_Encoded = tuple[list[_Taken], int, bytes]


def _encode_blocks(taken: list[_Taken]) -> tuple[list[_Encoded], dict[int, codecs.WordStats]]:
    """One block per tensor, except that small dense tensors (biases, norms: coded raw, as byte planes or
    deflate) of one word size may share a block, and so its code tables, when that is smaller.

    Also returns each tensor's word statistics, which the report's entropy bound reuses."""
    stats = {item[0]: codecs.WordStats(_words(item)) for item in taken}
    single = {item[0]: [([item], *codecs.encode_best(stats[item[0]].words, stats=stats[item[0]]))]
              for item in taken}
    dense = (codecs.RAW, codecs.BYTEPLANE, codecs.DEFLATE)
    pools: dict[tuple[int, bool], list[_Taken]] = {}
    for item in taken:
        if len(item[2]) <= GROUP_MAX_BYTES:
            pools.setdefault((_words(item).dtype.itemsize, item[3]), []).append(item)
    for pool in pools.values():
        best: tuple[int, list[_Taken], int, bytes] | None = None
        dense_members = [item for item in pool if single[item[0]][0][1] in dense]
        for members in (pool, dense_members) if len(dense_members) < len(pool) else (pool,):
            if len(members) < 2:
                continue
            codec, payload = codecs.encode_best(np.concatenate([_words(item) for item in members]))
            saving = sum(len(single[item[0]][0][2]) + 8 for item in members) - len(payload) - 2 * len(members)
            if saving > 0 and (best is None or saving > best[0]):
                best = (saving, members, codec, payload)
        if best is not None:
            for item in best[1]:
                single[item[0]] = []
            single[best[1][0][0]] = [(best[1], best[2], best[3])]
    _solid_lzma_groups(taken, single)
    return [block for item in taken for block in single[item[0]]], stats


def _solid_lzma_groups(taken: list[_Taken], single: dict[int, list[_Encoded]]) -> None:
    """Tensors that repeat each other are tried as one LZMA2 stream, kept when smaller than their own blocks.

    Two kinds: tensors LZMA2 coded best one by one (the real and imaginary DFT kernels of an audio front-end
    repeat each other's values, which a per-tensor coder cannot see), and byte-identical copies of a tensor
    (exporters copy the same weights into each branch of an ``If``), whose second copy then costs almost
    nothing. Each kind forms its own group per word size."""
    alone = [item for item in taken if len(single[item[0]]) == 1 and len(single[item[0]][0][0]) == 1]
    copies: dict[bytes, list[_Taken]] = {}
    for item in alone:
        copies.setdefault(hashlib.sha256(item[2]).digest(), []).append(item)
    pools: dict[tuple[str, int, bool], list[_Taken]] = {}
    for item in alone:
        if len(copies[hashlib.sha256(item[2]).digest()]) > 1:
            kind = "copies"
        elif single[item[0]][0][1] == codecs.LZMA:
            kind = "lzma"
        else:
            continue
        pools.setdefault((kind, _words(item).dtype.itemsize, item[3]), []).append(item)
    for members in pools.values():
        if len(members) < 2:
            continue
        # A group holds its members in tensor order (the dictionary, up to 64 MiB, reaches across them).
        payload = codecs.CODECS[codecs.LZMA].encode(np.concatenate([_words(item) for item in members]))
        cost = sum(len(single[item[0]][0][2]) + MIN_BLOCK for item in members)
        if len(payload) + 2 * len(members) < cost:
            for item in members:
                single[item[0]] = []
            single[members[0][0]] = [(members, codecs.LZMA, payload)]


def _words(item: _Taken) -> np.ndarray:
    return codecs.words_of(item[2], _block_width(item[1].tensor, len(item[2])))


def _write_block(members: list[_Taken], codec: int, payload: bytes, out: BinaryIO,
                 stats: dict[int, codecs.WordStats]) -> list[BlockInfo]:
    width = _words(members[0]).dtype.itemsize
    external = members[0][3]
    kind = codec | (_LOG2[width] << KIND_WIDTH_SHIFT) | (KIND_EXTERNAL if external else 0)
    group = b""
    if len(members) > 1:
        kind |= KIND_GROUP
        group = varint(len(members)) + b"".join(varint(b[0] - a[0]) for a, b in itertools.pairwise(members))
    data = b"".join(item[2] for item in members)
    head = varint(members[0][0]) + bytes([kind]) + group + varint(len(data)) + varint(len(payload))
    out.write(head + struct.pack("<I", zlib.crc32(data, zlib.crc32(head))))
    out.write(payload)
    infos = []
    name = codecs.codec_name(codec) if len(members) == 1 else f"group:{codecs.codec_name(codec)}"
    for index, slot, tensor_bytes, _ in members:
        tensor_stats = stats[index]
        share = (len(head) + 4 + len(payload)) * len(tensor_bytes) / max(len(data), 1)
        distinct = tensor_stats.unique()[0].size if tensor_stats.words.size else 0
        infos.append(BlockInfo(index, slot.label, onnx.TensorProto.DataType.Name(slot.tensor.data_type),
                               tensor_stats.words.size, len(tensor_bytes), name, round(share),
                               tensor_stats.entropy_bytes(), external, distinct * width))
    return infos


def _take_weights(model: onnx.ModelProto, read_external: Callable[[onnx.TensorProto], bytes] | None,
                  ) -> list[tuple[int, Slot, bytes, bool]]:
    taken = []
    for index, slot in enumerate(walk_tensors(model)):
        tensor = slot.tensor
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if expected_nbytes(tensor) is None or not (external or len(tensor.raw_data) >= MIN_BLOCK_BYTES):
            continue
        if external:
            if read_external is None:
                raise InputError(f"tensor {slot.label!r} is in external data, which was not given")
            data = read_external(tensor)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
        else:
            data = tensor.raw_data
            tensor.ClearField("raw_data")
        if len(data) != expected_nbytes(tensor):
            raise InputError(f"tensor {slot.label!r} holds {len(data)} bytes, its shape says "
                             f"{expected_nbytes(tensor)}")
        taken.append((index, slot, data, external))
    return taken


def _header(blocks: int, graph_codec: int, payload: bytes, graph: bytes) -> bytes:
    head = HEADER.pack(MAGIC, *VERSION, 0, blocks, graph_codec, len(payload), len(graph), zlib.crc32(graph))
    return head + struct.pack("<I", zlib.crc32(head))


def _compress_graph(graph: bytes, blocks_bytes: int = 0) -> tuple[int, bytes]:
    """The smallest of: raw LZMA2 of the protobuf bytes (one setting, lc=2: protobuf bytes are not
    word-aligned), zlib for tiny graphs, and the structured stream coding (graphcode) under LZMA2 where it
    saves :data:`STREAMS_MIN_GAIN` of the file (``blocks_bytes`` is about what the weight blocks take).

    Trying several LZMA literal settings saved a few bytes and doubled the most expensive step of packing
    small models; one -9e pass per candidate is kept.
    """
    candidates = [(GRAPH_LZMA, _lzma_payload(graph))]
    if len(graph) > WORD_ALIGNED_GRAPH:
        candidates.append((GRAPH_LZMA, _lzma_payload(graph, _LZMA_PROPS[1])))
    if len(graph) <= ZLIB_GRAPH_LIMIT:
        candidates.append((GRAPH_ZLIB, zlib.compress(graph, 9)))
    plain = min(candidates, key=lambda item: len(item[1]))
    try:
        bundle = graphcode.encode(graph)
    except graphcode.Unsupported:
        bundle = None
    if bundle is None or len(bundle) > _bundle_limit(len(graph)):
        return plain
    streams = (GRAPH_STREAMS, varint(len(bundle)) + _lzma_payload(bundle))
    gain = len(plain[1]) - len(streams[1])
    return streams if gain >= STREAMS_MIN_GAIN * (blocks_bytes + len(streams[1])) and gain > 0 else plain


def _lzma_payload(data: bytes, setting: tuple[int, int, int] = _LZMA_PROPS[0]) -> bytes:
    """The LZMA properties byte, then a raw LZMA2 stream of ``data``."""
    props = (setting[2] * 5 + setting[1]) * 9 + setting[0]
    return bytes([props]) + lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(props, len(data)))


def _bundle_limit(graph_size: int) -> int:
    return _BUNDLE_FACTOR * graph_size + _BUNDLE_SLACK


def _lzma_filters(props: int, size: int) -> list[dict[str, int]]:
    lc, rest = props % 9, props // 9
    dict_size = min(max(1 << max(size - 1, 1).bit_length(), _LZMA_DICT[0]), _LZMA_DICT[1])
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size, "lc": lc,
             "lp": rest % 5, "pb": rest // 5}]


_LOG2 = {1: 0, 2: 1, 4: 2, 8: 3}


# -- reading -------------------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """A container read back: the model proto with its weight bytes restored, and which came from external data."""

    model: onnx.ModelProto
    external: list[onnx.TensorProto]
    info: ContainerInfo


def is_container(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts with the container magic."""
    return head[: len(MAGIC)] == MAGIC


#: ``accept(slot, words)`` may take a decoded tensor's words instead of having them copied into the proto
#: (``open_session`` hands initializers to onnxruntime this way); it returns True when it took them.
Accept = Callable[[Slot, np.ndarray], bool]


def read_container(data: bytes | memoryview, *, where: str = "", max_decoded_bytes: int | None = None,
                   accept: Accept | None = None) -> Decoded:
    """Decode a container held in memory. Any inconsistency is a one-line :class:`InputError`.

    Args:
        data: the whole file.
        where: prefix for messages (the file name).
        max_decoded_bytes: refuse files whose weights would decode to more than this (default: the
            machine's physical memory).
        accept: offered every decoded tensor first (see :data:`Accept`); tensors it takes keep no data in
            the returned proto.
    """
    cur = Cursor(data, where)
    limit = max_decoded_bytes if max_decoded_bytes is not None else _physical_memory()
    blocks, graph_codec, graph_payload, graph = _read_header(cur)
    model = _parse_graph(cur, graph_codec, graph_payload, graph)
    cur.bounded(blocks, cur.remaining // MIN_BLOCK, "block count")
    slots = LazySlots(model)
    seen: set[int] = set()
    external: list[onnx.TensorProto] = []
    infos: list[BlockInfo] = []
    total = 0
    for number in range(blocks):
        read, size = _read_block(cur, number, slots, seen, limit - total, accept)
        total += size
        infos.extend(read)
        external.extend(slot.tensor for slot, info in read if info.external)
    cur.expect_end()
    return Decoded(model, external, ContainerInfo(graph[0], graph_payload, _GRAPH_CODEC_NAMES[graph_codec],
                                                  [info for _, info in infos]))


def _read_header(cur: Cursor) -> tuple[int, int, int, tuple[int, int]]:
    if not is_container(bytes(cur.take(min(cur.remaining, len(MAGIC)), "magic"))):
        raise cur.fail("not an .onnxc container (wrong magic)")
    raw = MAGIC + bytes(cur.take(HEADER.size - len(MAGIC), "header"))
    _, major, minor, flags, blocks, codec, payload, size, graph_crc = HEADER.unpack(raw)
    if (major, minor) != VERSION:
        raise cur.fail(f"unsupported container version {major}.{minor} (this onnxcomp reads "
                       f"{VERSION[0]}.{VERSION[1]})")
    if cur.u32("header checksum") != zlib.crc32(raw):
        raise cur.fail("header checksum mismatch (corrupt file)")
    if flags != 0 or codec not in _GRAPH_CODEC_NAMES:
        raise cur.fail(f"unknown header flags {flags} or graph codec {codec}")
    cur.bounded(size, MAX_GRAPH_BYTES, "graph size")
    return blocks, codec, payload, (size, graph_crc)


def _parse_graph(cur: Cursor, codec: int, payload: int, graph: tuple[int, int]) -> onnx.ModelProto:
    size, crc = graph
    data = _GRAPH_DECODERS[codec](cur.take(payload, "graph section"), size, cur)
    if zlib.crc32(data) != crc:
        raise cur.fail("graph checksum mismatch (corrupt file)")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError as exc:
        raise cur.fail(f"graph section is not an ONNX model ({exc})") from None
    return model


def _read_block(cur: Cursor, number: int, slots: LazySlots, seen: set[int], budget: int, accept: Accept | None,
                ) -> tuple[list[tuple[Slot, BlockInfo]], int]:
    what = f"block {number}"
    start = cur.position
    indices = _block_members(cur, what)
    kind = indices.pop()
    size = cur.varint(f"{what} decoded size")
    length = cur.varint(f"{what} payload length")
    head = cur.consumed(start)
    check = cur.u32(f"{what} checksum")
    payload = cur.take(length, f"{what} payload")
    members = [_target(cur, what, i, slots, seen) for i in indices]
    width = 1 << ((kind >> KIND_WIDTH_SHIFT) & 3)
    if sum(n for _, n in members) != size or any(width != _block_width(s.tensor, n) for s, n in members):
        raise cur.fail(f"{what} declares {size} bytes of {width}-byte words for {members[0][0].label!r}, "
                       f"whose shape needs {sum(n for _, n in members)}")
    if size > budget:
        raise cur.fail(f"{what} would decode past the {budget + size}-byte limit; refusing to allocate")
    sub = Cursor(payload, f"{cur.where}: {what} ({members[0][0].label})")
    codec = kind & KIND_CODEC
    words = codecs.decode_with(codec, sub, size // width, codecs.WORD_TYPES[width])
    if zlib.crc32(words, zlib.crc32(head)) != check:
        raise cur.fail(f"{what} ({members[0][0].label}) checksum mismatch (corrupt file)")
    infos, offset = [], 0
    name = codecs.codec_name(codec) if len(members) == 1 else f"group:{codecs.codec_name(codec)}"
    external = bool(kind & KIND_EXTERNAL)
    for i, (slot, nbytes) in zip(indices, members, strict=True):
        part = words[offset // width:(offset + nbytes) // width]
        if accept is None or not accept(slot, part):
            slot.tensor.raw_data = part.tobytes()
        offset += nbytes
        infos.append((slot, BlockInfo(i, slot.label, _dtype_name(slot.tensor.data_type), nbytes // width, nbytes,
                                      name, round((len(head) + 4 + length) * nbytes / size), float("nan"),
                                      external)))
    return infos, size


def _block_members(cur: Cursor, what: str) -> list[int]:
    """The tensor numbers a block header lists, followed by its kind byte."""
    index = cur.varint(f"{what} tensor number")
    indices = [index]
    kind = cur.u8(f"{what} kind")
    if kind & KIND_GROUP:
        # Each further member costs at least one header byte, which bounds the list before it is built.
        count = cur.bounded(cur.varint(f"{what} group size"), cur.remaining, f"{what} group size")
        if count < 2:
            raise cur.fail(f"{what} is a group of {count} tensors")
        for _ in range(count - 1):
            delta = cur.varint(f"{what} member")
            if delta == 0:
                raise cur.fail(f"{what} lists a member twice")
            index += delta
            indices.append(index)
    indices.append(kind)
    return indices


def _dtype_name(data_type: int) -> str:
    name = _DTYPE_NAMES.get(data_type)
    return name if name is not None else onnx.TensorProto.DataType.Name(data_type)


_DTYPE_NAMES = {value: onnx.TensorProto.DataType.Name(value) for value in DTYPE_BITS}


def _target(cur: Cursor, what: str, index: int, slots: LazySlots, seen: set[int]) -> tuple[Slot, int]:
    """The slot a block fills and the byte size its shape declares, after checking it can take block data."""
    slot = slots.get(index) if index not in seen else None
    if slot is None:
        raise cur.fail(f"{what} targets tensor #{index}, which does not exist or already has data")
    tensor = slot.tensor
    nbytes = expected_nbytes(tensor)
    if nbytes is None or tensor.raw_data or tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise cur.fail(f"{what} targets {slot.label!r}, which cannot take block data")
    seen.add(index)
    return slot, nbytes


def _inflate_graph(data: memoryview, size: int, cur: Cursor) -> bytes:
    return codecs.inflate(data, size, cur, raw=False)


def _unlzma_graph(data: memoryview, size: int, cur: Cursor, what: str = "graph section") -> bytes:
    if not len(data) or data[0] >= 9 * 5 * 5 or data[0] % 9 + data[0] // 9 % 5 > 4:
        raise cur.fail(f"bad LZMA properties in the {what}")
    engine = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(data[0], size))
    try:
        out = engine.decompress(bytes(data[1:]), size + 1)
    except lzma.LZMAError as exc:
        raise cur.fail(f"corrupt LZMA {what} ({exc})") from None
    if len(out) != size or not engine.eof or engine.unused_data:
        raise cur.fail(f"{what} decodes to {len(out)} bytes, expected {size}")
    return out


def _unstream_graph(data: memoryview, size: int, cur: Cursor) -> bytes:
    """Codec 4: ``varint B`` (bounded by the graph size), B bytes of stream bundle under raw LZMA2."""
    sub = Cursor(data, cur.where)
    bundle_size = sub.bounded(sub.varint("graph bundle size"), _bundle_limit(size), "graph bundle size")
    bundle = _unlzma_graph(sub.take(sub.remaining, "graph bundle"), bundle_size, cur, "graph stream bundle")
    return graphcode.decode(bundle, size, cur.fail)


_GRAPH_DECODERS = {GRAPH_ZLIB: _inflate_graph, GRAPH_LZMA: _unlzma_graph, GRAPH_STREAMS: _unstream_graph}
_GRAPH_CODEC_NAMES = {GRAPH_ZLIB: "zlib", GRAPH_LZMA: "lzma2", GRAPH_STREAMS: "streams+lzma2"}


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**34

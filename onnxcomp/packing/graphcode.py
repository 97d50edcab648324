"""Structured coding of the graph section: the ModelProto's wire fields split into per-field streams.

Once weights are out, a packed model's graph is mostly names (nodes, values, initializers, each spelled two
or three times) and the same few field layouts repeated per node. LZMA over the protobuf bytes pays a match
per repeated name and mixes names, tags and shapes in one context. Here the protobuf wire format is taken
apart losslessly instead: each message type gets a stream of its field tags, each (message type, field) a
stream of its values, and every length-delimited value that is not a known submessage (names, op types,
attribute names, small raw tensors, packed numbers) goes through one string table: a repeat is a small
back-reference, a new string is coded as its shared prefix with the previous new string plus the rest. The
streams are then LZMA2-coded together (see docs/FORMAT.md, graph codec 4).

The transform works on the wire bytes, so it is exact by construction for any field layout, including fields
this table does not know (they are coded as plain values). The only schema it needs is which fields hold
submessages, frozen below so that a newer onnx package cannot change how files decode. The writer decodes
what it encoded and keeps the result only if the bytes are identical (otherwise it uses plain LZMA2).
"""

from __future__ import annotations

from collections.abc import Callable

from onnxcomp.errors import InputError
from onnxcomp.packing.cursor import Cursor, varint

#: Message types reachable from ModelProto (onnx 1.23) and, per type, which field numbers hold which
#: submessage type. The list order gives each type its number in stream keys; append, never reorder.
SCHEMA: tuple[tuple[str, dict[int, str]], ...] = (
    ("ModelProto", {7: "GraphProto", 8: "OperatorSetIdProto", 14: "StringStringEntryProto",
                    20: "TrainingInfoProto", 25: "FunctionProto", 26: "DeviceConfigurationProto"}),
    ("GraphProto", {1: "NodeProto", 5: "TensorProto", 11: "ValueInfoProto", 12: "ValueInfoProto",
                    13: "ValueInfoProto", 14: "TensorAnnotation", 15: "SparseTensorProto",
                    16: "StringStringEntryProto"}),
    ("NodeProto", {5: "AttributeProto", 9: "StringStringEntryProto", 10: "NodeDeviceConfigurationProto"}),
    ("AttributeProto", {5: "TensorProto", 6: "GraphProto", 10: "TensorProto", 11: "GraphProto", 14: "TypeProto",
                        15: "TypeProto", 22: "SparseTensorProto", 23: "SparseTensorProto"}),
    ("TensorProto", {3: "TensorProto.Segment", 13: "StringStringEntryProto", 16: "StringStringEntryProto"}),
    ("TensorProto.Segment", {}),
    ("StringStringEntryProto", {}),
    ("TypeProto", {1: "TypeProto.Tensor", 4: "TypeProto.Sequence", 5: "TypeProto.Map", 7: "TypeProto.Opaque",
                   8: "TypeProto.SparseTensor", 9: "TypeProto.Optional"}),
    ("TypeProto.Tensor", {2: "TensorShapeProto"}),
    ("TensorShapeProto", {1: "TensorShapeProto.Dimension"}),
    ("TensorShapeProto.Dimension", {}),
    ("TypeProto.Sequence", {1: "TypeProto"}),
    ("TypeProto.Map", {2: "TypeProto"}),
    ("TypeProto.Opaque", {}),
    ("TypeProto.SparseTensor", {2: "TensorShapeProto"}),
    ("TypeProto.Optional", {1: "TypeProto"}),
    ("SparseTensorProto", {1: "TensorProto", 2: "TensorProto"}),
    ("NodeDeviceConfigurationProto", {2: "ShardingSpecProto"}),
    ("ShardingSpecProto", {3: "IntIntListEntryProto", 4: "ShardedDimProto"}),
    ("IntIntListEntryProto", {}),
    ("ShardedDimProto", {2: "SimpleShardedDimProto"}),
    ("SimpleShardedDimProto", {}),
    ("ValueInfoProto", {2: "TypeProto", 4: "StringStringEntryProto"}),
    ("TensorAnnotation", {2: "StringStringEntryProto"}),
    ("OperatorSetIdProto", {}),
    ("TrainingInfoProto", {1: "GraphProto", 2: "GraphProto", 3: "StringStringEntryProto",
                           4: "StringStringEntryProto"}),
    ("FunctionProto", {7: "NodeProto", 9: "OperatorSetIdProto", 11: "AttributeProto", 12: "ValueInfoProto",
                       14: "StringStringEntryProto"}),
    ("DeviceConfigurationProto", {}),
)
_TYPE_NUMBER = {name: number for number, (name, _) in enumerate(SCHEMA)}
#: per type number: field number -> submessage type number
_SUBMESSAGES: tuple[dict[int, int], ...] = tuple({f: _TYPE_NUMBER[t] for f, t in subs.items()} for _, subs in SCHEMA)
#: Stream roles. Every message type has a tag stream (field key 0); every field its value stream; string-valued
#: fields also a prefix, a length and a text stream.
TAGS, VALUES, PREFIX, LENGTH, TEXT = range(5)
#: Submessages may nest at most this deep (protobuf's own parsers stop at 100).
MAX_DEPTH = 100
#: Stream directory keys are ``(type << 32) | (field << 3) | role``; fields are protobuf's 29-bit numbers.
_FIELD_LIMIT = 1 << 29


class Unsupported(Exception):
    """The bytes are not a protobuf message this coder can reproduce exactly (the writer falls back)."""


def _key(type_number: int, field: int, role: int) -> int:
    return (type_number << 32) | (field << 3) | role


class _Recency:
    """Move-to-front ranks of the distinct strings seen so far (1 = used most recently), in O(log n).

    A Fenwick tree over use times marks, for every distinct string, the time of its latest use; a string's
    rank is the number of marks at or after its own. Plain list move-to-front costs O(rank) per use, which a
    forged file could make quadratic.
    """

    def __init__(self) -> None:
        self._tree = [0, 0]
        self._marks = bytearray(2)
        self._now = 0
        self.count = 0
        self.stamp: dict[bytes, int] = {}
        self.at: dict[int, bytes] = {}

    def _add(self, time: int, delta: int) -> None:
        tree = self._tree
        while time < len(tree):
            tree[time] += delta
            time += time & -time

    def _prefix(self, time: int) -> int:
        total = 0
        while time > 0:
            total += self._tree[time]
            time -= time & -time
        return total

    def rank(self, value: bytes) -> int:
        """The rank of a string already seen."""
        return self.count - self._prefix(self.stamp[value] - 1)

    def find(self, rank: int) -> bytes:
        """The string of rank ``1 <= rank <= count``."""
        wanted, time, step = self.count - rank + 1, 0, 1 << (len(self._tree) - 1).bit_length()
        while step:
            if time + step < len(self._tree) and self._tree[time + step] < wanted:
                time += step
                wanted -= self._tree[time]
            step >>= 1
        return self.at[time + 1]

    def use(self, value: bytes) -> None:
        """Make ``value`` the most recent string (adding it if new)."""
        self._now += 1
        if self._now >= len(self._tree):
            self._grow()
        old = self.stamp.get(value)
        if old is None:
            self.count += 1
        else:
            self._add(old, -1)
            self._marks[old] = 0
            del self.at[old]
        self._add(self._now, 1)
        self._marks[self._now] = 1
        self.stamp[value] = self._now
        self.at[self._now] = value

    def _grow(self) -> None:
        size = 2 * len(self._tree)
        self._marks.extend(bytes(size - len(self._marks)))
        tree = list(self._marks)
        for time in range(1, size):
            parent = time + (time & -time)
            if parent < size:
                tree[parent] += tree[time]
        self._tree = tree


# -- encoding ------------------------------------------------------------------------------------------------------


_Field = tuple[int, int, bytes]  # field number, wire type, value bytes (raw varint / fixed bytes / body)


class _Encoder:
    """Splits wire bytes into streams; strings go through the shared recency table."""

    def __init__(self) -> None:
        self.streams: dict[int, bytearray] = {}
        self._recent = _Recency()
        self._last = b""

    def _out(self, key: int) -> bytearray:
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = bytearray()
        return stream

    def message(self, data: bytes, type_number: int, depth: int) -> None:
        """A message's tags (all of them, then 0), then its field values in wire order.

        Writing all tags before any submessage lets the decoder bound the field list by the stream's bytes.
        """
        if depth > MAX_DEPTH:
            raise Unsupported("nesting too deep")
        fields = _parse(data)
        tags = self._out(_key(type_number, 0, TAGS))
        for field, wire, _ in fields:
            tags += varint(field << 3 | wire)
        tags.append(0)
        subs = _SUBMESSAGES[type_number]
        for field, wire, value in fields:
            if wire != 2:
                self._out(_key(type_number, field, VALUES)).extend(value)
            elif field in subs:
                self.message(value, subs[field], depth + 1)
            else:
                self.string(value, type_number, field)

    def string(self, value: bytes, type_number: int, field: int) -> None:
        """A move-to-front rank (1 = most recent string), or 0 and the new string's prefix, length and text."""
        refs = self._out(_key(type_number, field, VALUES))
        if value in self._recent.stamp:
            refs += varint(self._recent.rank(value))
        else:
            refs.append(0)
            shared = _common_prefix(self._last, value)
            self._out(_key(type_number, field, PREFIX)).extend(varint(shared))
            self._out(_key(type_number, field, LENGTH)).extend(varint(len(value) - shared))
            self._out(_key(type_number, field, TEXT)).extend(value[shared:])
            self._last = value
        self._recent.use(value)


def _parse(data: bytes) -> list[_Field]:
    fields = []
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _read_varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if field == 0 or field >= _FIELD_LIMIT:
            raise Unsupported(f"field number {field}")
        if wire == 0:
            start = pos
            _, pos = _read_varint(data, pos)
            value = data[start:pos]
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            raise Unsupported(f"wire type {wire}")
        if pos > end:
            raise Unsupported("truncated field")
        fields.append((field, wire, value))
    return fields


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= len(data):
            raise Unsupported("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise Unsupported("varint over 10 bytes")


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def encode(model: bytes) -> bytes:
    """The stream bundle of a serialized ModelProto: directory, then the streams in key order.

    Raises :class:`Unsupported` if the bytes are not a well-formed message or would not decode identically.
    """
    encoder = _Encoder()
    encoder.message(model, _TYPE_NUMBER["ModelProto"], 0)
    keys = sorted(key for key, stream in encoder.streams.items() if stream)
    head = bytearray(varint(len(keys)))
    previous = -1
    for key in keys:
        head += varint(key - previous - 1) + varint(len(encoder.streams[key]))
        previous = key
    bundle = bytes(head) + b"".join(bytes(encoder.streams[key]) for key in keys)
    try:
        same = decode(bundle, len(model), Unsupported) == model
    except (Unsupported, InputError) as exc:
        raise Unsupported(f"structured coding does not reproduce the graph ({exc})") from None
    if not same:
        raise Unsupported("structured coding does not reproduce the graph")
    return bundle


# -- decoding ------------------------------------------------------------------------------------------------------


class _Decoder:
    """Rebuilds wire bytes from the streams; every read is bounded and the output may not outgrow ``size``."""

    def __init__(self, streams: dict[int, Cursor], size: int, fail: Callable[[str], Exception]) -> None:
        self._streams = streams
        self._budget = size
        self._fail = fail
        self._recent = _Recency()
        self._last = b""
        self._empty = Cursor(b"", "graph streams")

    def _in(self, key: int) -> Cursor:
        return self._streams.get(key, self._empty)

    def _spend(self, size: int) -> None:
        self._budget -= size
        if self._budget < 0:
            raise self._fail("structured graph decodes past its declared size")

    def message(self, type_number: int, depth: int) -> bytes:
        """Read the tags (each costs a stream byte, which bounds the list), then the values in wire order."""
        if depth > MAX_DEPTH:
            raise self._fail("structured graph nests too deep")
        tags = self._in(_key(type_number, 0, TAGS))
        fields: list[_Field] = []
        while tag := tags.varint("graph field tag"):
            field, wire = tag >> 3, tag & 7
            if field >= _FIELD_LIMIT or field == 0 or wire not in (0, 1, 2, 5):
                raise self._fail(f"graph field tag {tag} is invalid")
            self._spend(len(varint(tag)))
            fields.append((field, wire, b""))
        return b"".join(varint(field << 3 | wire) + self._value(type_number, field, wire, depth)
                        for field, wire, _ in fields)

    def _value(self, type_number: int, field: int, wire: int, depth: int) -> bytes:
        if wire == 0:
            value = varint(self._in(_key(type_number, field, VALUES)).varint("graph value"))
            self._spend(len(value))
            return value
        if wire != 2:
            self._spend(8 if wire == 1 else 4)
            return bytes(self._in(_key(type_number, field, VALUES)).take(8 if wire == 1 else 4, "graph value"))
        subs = _SUBMESSAGES[type_number]
        body = self.message(subs[field], depth + 1) if field in subs else self.string(type_number, field)
        size = varint(len(body))
        self._spend(len(size))
        return size + body

    def string(self, type_number: int, field: int) -> bytes:
        ref = self._in(_key(type_number, field, VALUES)).varint("graph string reference")
        if ref:
            if ref > self._recent.count:
                raise self._fail(f"graph string reference {ref} out of range ({self._recent.count} strings)")
            value = self._recent.find(ref)
        else:
            shared = self._in(_key(type_number, field, PREFIX)).varint("graph string prefix")
            if shared > len(self._last):
                raise self._fail(f"graph string prefix {shared} longer than the previous string")
            rest = self._in(_key(type_number, field, LENGTH)).varint("graph string length")
            # checked before the take: a forged length fails here or in take, and never allocates
            if shared + rest > self._budget:
                raise self._fail("structured graph decodes past its declared size")
            value = self._last[:shared] + bytes(self._in(_key(type_number, field, TEXT)).take(rest, "graph string"))
            self._last = value
        self._spend(len(value))
        self._recent.use(value)
        return value

    def finish(self) -> None:
        for key, stream in self._streams.items():
            if stream.remaining:
                raise self._fail(f"graph stream {key:#x} has {stream.remaining} unread bytes")


def decode(bundle: bytes | memoryview, size: int, fail: Callable[[str], Exception]) -> bytes:
    """The serialized ModelProto a stream bundle codes; at most ``size`` bytes are produced.

    ``fail(message)`` builds the exception raised for any inconsistency (the reader's one-line InputError).
    """
    cur = Cursor(bundle, "graph streams")
    count = cur.bounded(cur.varint("graph stream count"), cur.remaining // 2, "graph stream count")
    lengths: list[tuple[int, int]] = []
    key = -1
    for _ in range(count):
        key += cur.varint("graph stream key") + 1
        lengths.append((key, cur.varint("graph stream length")))
    streams = {key: Cursor(cur.take(length, f"graph stream {key:#x}"), "graph streams") for key, length in lengths}
    cur.expect_end()
    decoder = _Decoder(streams, size, fail)
    model = decoder.message(_TYPE_NUMBER["ModelProto"], 0)
    decoder.finish()
    if len(model) != size:
        raise fail(f"structured graph decodes to {len(model)} bytes, expected {size}")
    return model

"""A bounds-checked reader over bytes: the only way the container and codecs read untrusted input.

Every read names what it reads, so a truncated or corrupted file fails with a line such as
"truncated: block 3 payload needs 4096 bytes, 12 left" instead of a struct or numpy traceback.
"""

from __future__ import annotations

import struct

from onnxcomp.errors import InputError


def varint(value: int) -> bytes:
    """Encode ``0 <= value < 2**64`` as unsigned LEB128 (the inverse of :meth:`Cursor.varint`)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class Cursor:
    """Sequential little-endian reads from a buffer, each checked against what is left."""

    def __init__(self, data: bytes | memoryview, where: str = "") -> None:
        self._data = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        self._pos = 0
        self.where = where

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def fail(self, message: str) -> InputError:
        """An InputError prefixed with where this cursor reads (for callers' own checks)."""
        return InputError(f"{self.where}: {message}" if self.where else message)

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or size > self.remaining:
            raise self.fail(f"truncated: {what} needs {size} bytes, {self.remaining} left")
        view = self._data[self._pos:self._pos + size]
        self._pos += size
        return view

    def consumed(self, start: int) -> bytes:
        """The bytes read since position ``start`` (to checksum a header just parsed)."""
        return bytes(self._data[start:self._pos])

    def _unpack(self, fmt: str, what: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def u8(self, what: str) -> int:
        if self._pos >= len(self._data):
            raise self.fail(f"truncated: {what} needs 1 bytes, 0 left")
        self._pos += 1
        return self._data[self._pos - 1]

    def u16(self, what: str) -> int:
        return self._unpack("<H", what)

    def u32(self, what: str) -> int:
        return self._unpack("<I", what)

    def u64(self, what: str) -> int:
        return self._unpack("<Q", what)

    def varint(self, what: str) -> int:
        """An unsigned LEB128 integer: 7 bits per byte, low group first, at most 10 bytes (< 2**64)."""
        data, pos = self._data, self._pos
        if pos < len(data) and data[pos] < 0x80:  # one-byte varints are most of them: no loop
            self._pos = pos + 1
            return data[pos]
        value = shift = 0
        for _ in range(10):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value >> 64:
                    break
                return value
            shift += 7
        raise self.fail(f"{what} is not a valid varint (corrupt file?)")

    def bounded(self, value: int, limit: int, what: str) -> int:
        """Return ``value`` if ``0 <= value <= limit``, else fail naming ``what``."""
        if not 0 <= value <= limit:
            raise self.fail(f"{what} is {value}, over the limit of {limit} (corrupt file?)")
        return value

    def sub(self, what: str) -> tuple[int, Cursor]:
        """Read a nested stream: ``u8 codec id, varint length, payload``; return the id and a cursor over it."""
        codec = self.u8(f"{what} codec")
        length = self.varint(f"{what} length")
        return codec, Cursor(self.take(length, what), f"{self.where}/{what}" if self.where else what)

    def expect_end(self) -> None:
        if self.remaining:
            raise self.fail(f"{self.remaining} unexpected bytes after the end of the data")

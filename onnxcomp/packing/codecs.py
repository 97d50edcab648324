"""Per-tensor lossless codecs, kept in a registry keyed by the id each block stores.

A tensor is seen as ``n`` words of its element size (1, 2, 4 or 8 bytes; the exact bit patterns, so
``-0.0`` and NaN payloads survive). Every candidate codec encodes it and the smallest payload wins
(:func:`encode_best`); why each exists:

* ``raw``: nothing helps (random mantissas), or the tensor is tiny.
* ``zlib``: small constants such as shape vectors and index tables (only tried below ``ZLIB_LIMIT``).
* ``symbols``: few distinct values (clustered or quantized weights): a codebook plus a canonical Huffman
  stream of codebook indices.
* ``sparse``: mostly zeros (pruned weights): per-symbol Huffman cannot go below 1 bit per weight, so the
  zeros are coded as run lengths ("relative index" with filler symbols for long runs, Huffman-coded) and
  the non-zero values as a nested stream (symbols / byte planes / raw).
* ``byteplane``: dense floats: the bytes holding sign and exponent have low entropy while the low mantissa
  bytes are noise, so each byte plane is coded on its own (Huffman or raw).

Decoders receive the declared element count ``n`` (already cross-checked against the graph) and check
every count against the bytes they were given before allocating anything.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxcomp.errors import InputError
from onnxcomp.packing import huffman
from onnxcomp.packing.cursor import Cursor

RAW, ZLIB, SYMBOLS, SPARSE, BYTEPLANE = 0, 1, 2, 3, 4
#: Largest codebook ``symbols`` builds or accepts.
MAX_SYMBOLS = 1 << 16
#: zlib is only tried on tensors up to this size (it is slow to encode and rarely wins on weights).
ZLIB_LIMIT = 1 << 20
#: Filler run lengths ``sparse`` tries (one symbol = this many zeros); the cheapest is kept.
RUN_LENGTHS = (16, 64, 256, 4096)
#: A byte plane keeps a Huffman code only if it saves at least this fraction: each coded plane costs a
#: Huffman decode (~28 M symbols/s), and a plane that saves 1-3% is not worth halving the decode speed.
PLANE_MIN_GAIN = 0.05

WORD_TYPES: dict[int, np.dtype] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


@dataclass(frozen=True)
class Codec:
    """One codec: ``encode(words) -> payload or None (not applicable)``, ``decode(cursor, n, dtype) -> words``."""

    id: int
    name: str
    encode: Callable[[np.ndarray], bytes | None]
    decode: Callable[[Cursor, int, np.dtype], np.ndarray]


# -- raw and zlib ----------------------------------------------------------------------------------------------


def _raw_encode(words: np.ndarray) -> bytes:
    return words.tobytes()


def _raw_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    data = cur.take(n * dtype.itemsize, "raw words")
    cur.expect_end()
    return np.frombuffer(data, dtype=dtype).copy()


def _zlib_encode(words: np.ndarray) -> bytes | None:
    return zlib.compress(words.tobytes(), 9) if words.nbytes <= ZLIB_LIMIT else None


def _zlib_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    want = n * dtype.itemsize
    data = inflate(cur.take(cur.remaining, "zlib stream"), want, cur)
    return np.frombuffer(data, dtype=dtype).copy()


def inflate(data: bytes | memoryview, size: int, cur: Cursor) -> bytes:
    """zlib-decompress exactly ``size`` bytes, never producing more (a zip bomb stops at ``size + 1``)."""
    engine = zlib.decompressobj()
    try:
        out = engine.decompress(data, size + 1)
    except zlib.error as exc:
        raise cur.fail(f"corrupt zlib stream ({exc})") from None
    if len(out) != size or not engine.eof or engine.unconsumed_tail:
        raise cur.fail(f"zlib stream decodes to {len(out)} bytes, expected {size}")
    return out


# -- Huffman streams -------------------------------------------------------------------------------------------


def _write_stream(symbols: np.ndarray, alphabet: int) -> bytes:
    """``u32 alphabet, alphabet x u8 lengths, u64 nbits, bits`` for ``symbols`` in ``0 .. alphabet - 1``."""
    table = huffman.HuffmanTable.from_counts(np.bincount(symbols, minlength=alphabet))
    bits, nbits = huffman.encode(symbols, table)
    return b"".join([np.uint32(alphabet).tobytes(), table.lengths.tobytes(), np.uint64(nbits).tobytes(), bits])


def _stream_bytes(counts: np.ndarray) -> int:
    """The size :func:`_write_stream` would produce, without encoding (for choosing parameters)."""
    table = huffman.HuffmanTable.from_counts(counts)
    return 12 + counts.size + (table.bits(counts) + 7) // 8


def _read_stream(cur: Cursor, count: int, alphabet_limit: int) -> np.ndarray:
    alphabet = cur.bounded(cur.u32("alphabet size"), alphabet_limit, "Huffman alphabet size")
    lengths = np.frombuffer(cur.take(alphabet, "code lengths"), dtype=np.uint8)
    nbits = cur.u64("bit count")
    if nbits > 8 * cur.remaining:
        raise cur.fail(f"bit count {nbits} exceeds the {cur.remaining} bytes left")
    if count > nbits:
        raise cur.fail(f"{count} symbols cannot fit in {nbits} bits")
    data = cur.take((nbits + 7) // 8, "bit stream")
    return huffman.decode(data, nbits, count, huffman.HuffmanTable(lengths))


# -- symbols: codebook + Huffman indices -------------------------------------------------------------------------


def _symbols_encode(words: np.ndarray) -> bytes | None:
    values, index, counts = np.unique(words, return_inverse=True, return_counts=True)
    if values.size > MAX_SYMBOLS or words.size == 0:
        return None
    if values.size * (words.dtype.itemsize + 1) + huffman.entropy_bits(counts) / 8 >= words.nbytes:
        return None  # the codebook plus the Shannon bound already exceed raw: do not build the code
    return np.uint32(values.size).tobytes() + values.tobytes() + _write_stream(index.ravel(), values.size)


def _symbols_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    size = cur.bounded(cur.u32("codebook size"), MAX_SYMBOLS, "codebook size")
    if size == 0:
        raise cur.fail("empty codebook")
    values = np.frombuffer(cur.take(size * dtype.itemsize, "codebook"), dtype=dtype)
    index = _read_stream(cur, n, size)
    cur.expect_end()
    return values[index]


# -- sparse: zero runs + nested values ---------------------------------------------------------------------------


def _run_symbols(positions: np.ndarray, n: int, run: int) -> tuple[np.ndarray, int]:
    """Gap symbols for non-zeros at ``positions``: ``run`` = a filler of ``run`` zeros, ``g < run`` = g zeros
    then a value. Zeros after the last value become fillers plus a remainder ``< run`` returned separately."""
    ends = np.append(positions, n)
    gaps = np.diff(ends, prepend=-1) - 1
    fillers = gaps // run
    remainder = gaps % run
    total = int(fillers.sum()) + positions.size
    symbols = np.full(total, run, dtype=np.int64)
    slots = np.cumsum(fillers[:-1] + 1) - 1
    symbols[slots] = remainder[:-1]
    return symbols, int(remainder[-1])


def _sparse_encode(words: np.ndarray) -> bytes | None:
    positions = np.flatnonzero(words)
    if positions.size > words.size // 2:
        return None
    best: tuple[int, int] | None = None
    for run in RUN_LENGTHS:
        symbols, _ = _run_symbols(positions, words.size, run)
        size = _stream_bytes(np.bincount(symbols, minlength=run + 1))
        best = min(best or (size, run), (size, run))
    assert best is not None
    run = best[1]
    symbols, tail = _run_symbols(positions, words.size, run)
    codec, values = encode_best(words[positions], VALUE_CODECS)
    header = np.array([run, tail], dtype="<u4").tobytes() + np.uint64(symbols.size).tobytes()
    return b"".join([header, _write_stream(symbols, run + 1), _nested(codec, values)])


def _sparse_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    run = cur.bounded(cur.u32("run length"), 1 << 16, "run length")
    tail = cur.u32("tail zeros")
    nsym = cur.u64("run symbol count")
    if run == 0 or tail >= run:
        raise cur.fail(f"bad run length {run} / tail {tail}")
    if n > nsym * run + tail or nsym > 8 * cur.remaining:
        raise cur.fail(f"{nsym} run symbols cannot describe {n} elements")
    symbols = _read_stream(cur, nsym, run + 1)
    is_value = symbols < run
    advance = np.where(is_value, symbols + 1, run)
    if int(advance.sum()) + tail != n:
        raise cur.fail("run lengths do not add up to the tensor size")
    positions = (np.cumsum(advance) - 1)[is_value]
    codec, sub = cur.sub("values")
    cur.expect_end()
    out = np.zeros(n, dtype=dtype)
    out[positions] = decode_with(codec, sub, positions.size, dtype, VALUE_CODECS)
    return out


# -- byte planes -----------------------------------------------------------------------------------------------


def _byteplane_encode(words: np.ndarray) -> bytes | None:
    width = words.dtype.itemsize
    if width == 1 or words.size == 0:
        return None
    planes = words.view(np.uint8).reshape(words.size, width).T
    parts = []
    for plane in planes:
        plane = np.ascontiguousarray(plane)
        codec, payload = encode_best(plane, PLANE_CODECS)
        if codec != RAW and len(payload) > plane.size * (1 - PLANE_MIN_GAIN):
            codec, payload = RAW, plane.tobytes()
        parts.append(_nested(codec, payload))
    return b"".join(parts)


def _byteplane_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    if dtype.itemsize == 1:
        raise cur.fail("byte planes of 1-byte words")
    out = np.empty((n, dtype.itemsize), dtype=np.uint8)
    for k in range(dtype.itemsize):
        codec, sub = cur.sub(f"plane {k}")
        out[:, k] = decode_with(codec, sub, n, np.dtype(np.uint8), PLANE_CODECS)
    cur.expect_end()
    return out.view(dtype).reshape(n)


# -- registry --------------------------------------------------------------------------------------------------


CODECS: dict[int, Codec] = {
    codec.id: codec
    for codec in (
        Codec(RAW, "raw", _raw_encode, _raw_decode),
        Codec(ZLIB, "zlib", _zlib_encode, _zlib_decode),
        Codec(SYMBOLS, "symbols", _symbols_encode, _symbols_decode),
        Codec(SPARSE, "sparse", _sparse_encode, _sparse_decode),
        Codec(BYTEPLANE, "byteplane", _byteplane_encode, _byteplane_decode),
    )
}
#: What a whole tensor may use, what a sparse tensor's non-zero values may use, and what a byte plane may use.
TENSOR_CODECS = (RAW, ZLIB, SYMBOLS, SPARSE, BYTEPLANE)
VALUE_CODECS = (RAW, SYMBOLS, BYTEPLANE)
PLANE_CODECS = (RAW, SYMBOLS)


def _nested(codec: int, payload: bytes) -> bytes:
    return np.uint8(codec).tobytes() + np.uint64(len(payload)).tobytes() + payload


def encode_best(words: np.ndarray, allowed: tuple[int, ...] = TENSOR_CODECS) -> tuple[int, bytes]:
    """Encode ``words`` with every allowed codec and keep the smallest payload (raw on ties)."""
    best = (RAW, _raw_encode(words))
    for codec_id in allowed:
        if codec_id == RAW:
            continue
        payload = CODECS[codec_id].encode(words)
        if payload is not None and len(payload) < len(best[1]):
            best = (codec_id, payload)
    return best


def decode_with(codec_id: int, cur: Cursor, n: int, dtype: np.dtype,
                allowed: tuple[int, ...] = TENSOR_CODECS) -> np.ndarray:
    """Decode ``n`` words of ``dtype`` with codec ``codec_id``, which must be allowed at this level."""
    if codec_id not in allowed:
        raise InputError(f"{cur.where}: unknown or misplaced codec id {codec_id}")
    words = CODECS[codec_id].decode(cur, n, dtype)
    if words.shape != (n,):
        raise cur.fail(f"decoded {words.size} words, expected {n}")
    return words


def words_of(data: bytes | memoryview, width: int) -> np.ndarray:
    """View tensor bytes as unsigned words of ``width`` bytes (bytes if the length is not a multiple)."""
    dtype = WORD_TYPES.get(width, WORD_TYPES[1])
    if len(data) % dtype.itemsize:
        dtype = WORD_TYPES[1]
    return np.frombuffer(data, dtype=dtype)


def codec_name(codec_id: int) -> str:
    return CODECS[codec_id].name if codec_id in CODECS else f"unknown({codec_id})"

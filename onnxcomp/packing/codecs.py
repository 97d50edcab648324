"""Per-tensor lossless codecs, kept in a registry keyed by the id each block stores.

A tensor is seen as ``n`` words of its element size (1, 2, 4 or 8 bytes; the exact bit patterns, so
``-0.0`` and NaN payloads survive). Candidate codecs encode it and the smallest payload wins
(:func:`encode_best`); a codec whose size estimate (from the histogram) cannot win is not run. Why each exists:

* ``raw``: nothing helps (random mantissas), or the tensor is tiny.
* ``deflate``: small constants such as shape vectors and index tables (only tried below ``DEFLATE_LIMIT``).
* ``symbols``: few distinct values (clustered or quantized weights): a codebook (sorted, Rice-coded deltas)
  plus an entropy-coded stream of codebook indices.
* ``sparse``: mostly zeros (pruned weights): per-symbol coding cannot go below 1 bit per weight, so the
  zeros are coded as run lengths ("relative index" with filler symbols for long runs) and the non-zero
  values as a nested payload (symbols / byte planes / raw).
* ``byteplane``: dense floats: the bytes holding sign and exponent have low entropy while the low mantissa
  bytes are noise, so each byte plane is coded on its own (entropy-coded or stored).
* ``lzma``: structured tensors -- DFT and mel-filterbank matrices, positional tables, repeated rows -- whose
  redundancy lies in repeated byte strings that no order-0 coder sees; raw LZMA2 with the word size as its
  position/literal alignment finds them. Without it such a model packed 3.5x larger than ``xz -9e``.

Symbol streams with at most 256 symbols are entropy-coded with zlib's raw deflate (Huffman-only, RLE or
default strategy, whichever is smallest): its C decoder runs at hundreds of MB/s, and its Huffman tables are
themselves compactly coded. Larger alphabets use our canonical Huffman code (:mod:`huffman`).

Decoders receive the declared element count ``n`` (already cross-checked against the graph) and check
every count against ``n`` or the bytes they were given before allocating anything.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnxcomp.errors import InputError
from onnxcomp.packing import huffman
from onnxcomp.packing.cursor import Cursor, varint

RAW, DEFLATE, SYMBOLS, SPARSE, BYTEPLANE, LZMA = 0, 1, 2, 3, 4, 5
#: Largest codebook ``symbols`` builds or accepts.
MAX_SYMBOLS = 1 << 16
#: Whole-tensor deflate (and deflate's slow default strategy on streams) is only tried up to this size.
DEFLATE_LIMIT = 1 << 20
#: Filler run lengths ``sparse`` tries (one symbol = this many zeros); the cheapest is kept. At most 255, so
#: the run alphabet (R + 1 symbols) fits in a byte and deflate can code it.
RUN_LENGTHS = (15, 31, 63, 127, 255)
#: Whole-tensor deflate is tried on wider words only up to this size (it wins there only on tiny constants).
SMALL_DEFLATE_BYTES = 4096
#: Deflate's default strategy (a level-9 match search) is only run on streams up to this size.
MATCH_SEARCH_LIMIT = 1 << 16
#: A byte plane is entropy-coded only if that saves at least this fraction (otherwise it is stored).
PLANE_MIN_GAIN = 0.02
#: LZMA2 is run on whole tensors up to this size; above it, only when it wins on a sample of this size.
LZMA_SAMPLE_BYTES = 1 << 18
#: ... by at least this fraction over the best other codec's ratio.
LZMA_SAMPLE_GAIN = 0.02
#: The LZMA2 dictionary is the tensor size rounded up to a power of two, within these bounds, so a forged size
#: cannot make the decoder allocate more than 64 MiB.
LZMA_DICT = (1 << 12, 1 << 26)
#: Below this, LZMA2's fixed costs (end marker, chunk headers) leave it no chance.
MIN_LZMA_BYTES = 256
#: Stream methods.
STREAM_BYTES, STREAM_DEFLATE, STREAM_HUFFMAN = 0, 1, 2
#: Codebook forms.
BOOK_RAW, BOOK_RICE = 0, 1

WORD_TYPES: dict[int, np.dtype] = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
_U8 = np.dtype(np.uint8)


@dataclass(frozen=True)
class Codec:
    """One codec: ``encode(words) -> payload or None (not applicable)``, ``decode(cursor, n, dtype) -> words``."""

    id: int
    name: str
    encode: Callable[[np.ndarray], bytes | None]
    decode: Callable[[Cursor, int, np.dtype], np.ndarray]


# -- raw and deflate -------------------------------------------------------------------------------------------


def _raw_encode(words: np.ndarray) -> bytes:
    return words.tobytes()


def _raw_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    data = cur.take(n * dtype.itemsize, "raw words")
    cur.expect_end()
    return np.frombuffer(data, dtype=dtype)


def deflate(data: bytes, strategy: int = zlib.Z_DEFAULT_STRATEGY, level: int = 9) -> bytes:
    """Raw deflate (no zlib header or checksum: blocks carry their own CRC)."""
    engine = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    return engine.compress(data) + engine.flush()


def inflate(data: bytes | memoryview, size: int, cur: Cursor, *, raw: bool = True) -> bytes:
    """Decompress exactly ``size`` bytes, never producing more (a deflate bomb stops at ``size + 1``)."""
    engine = zlib.decompressobj(-15 if raw else 15)
    try:
        out = engine.decompress(data, size + 1)
    except zlib.error as exc:
        raise cur.fail(f"corrupt deflate stream ({exc})") from None
    if len(out) != size or not engine.eof or engine.unconsumed_tail or engine.unused_data:
        raise cur.fail(f"deflate stream decodes to {len(out)} bytes, expected {size}")
    return out


def _deflate_encode(words: np.ndarray) -> bytes | None:
    return deflate(words.tobytes()) if words.nbytes <= DEFLATE_LIMIT else None


def _deflate_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    data = inflate(cur.take(cur.remaining, "deflate stream"), n * dtype.itemsize, cur)
    return np.frombuffer(data, dtype=dtype)


# -- symbol streams --------------------------------------------------------------------------------------------


def write_stream(symbols: np.ndarray, alphabet: int, counts: np.ndarray | None = None) -> bytes:
    """Entropy-code ``symbols`` (integers in ``0 .. alphabet - 1``; the reader knows both and the count).

    ``u8 method``, then: 0 = the symbols as bytes; 1 = ``varint L`` + L bytes of raw deflate of those bytes;
    2 = canonical Huffman: ``varint L`` + L bytes of raw deflate of the ``alphabet`` code lengths, ``varint B``
    (bit count), ⌈B/8⌉ bytes. Methods 0 and 1 need ``alphabet <= 256``.
    """
    best: bytes | None = None
    if alphabet <= 256:
        data = symbols.astype(np.uint8, copy=False).tobytes()
        best = bytes([STREAM_BYTES]) + data
        for strategy in _strategies(data):
            packed = deflate(data, strategy)
            if len(packed) + 6 < len(best):
                best = bytes([STREAM_DEFLATE]) + varint(len(packed)) + packed
        return best  # deflate's Huffman coder is within a few bytes of ours here, and decodes far faster
    if counts is None:
        counts = np.bincount(symbols, minlength=alphabet)
    table = huffman.HuffmanTable.from_counts(counts)
    lengths = deflate(table.lengths.tobytes())
    bits, nbits = huffman.encode(symbols, table)
    return b"".join([bytes([STREAM_HUFFMAN]), varint(len(lengths)), lengths, varint(nbits), bits])


def _strategies(data: bytes) -> tuple[int, ...]:
    """The deflate strategies worth running on a byte stream of this size.

    Huffman-only is deflate's order-0 coder and is always tried. RLE (matches at distance 1 only) is nearly as
    fast and wins on run-heavy streams. The default strategy's match search at level 9 costs ~10x more and only
    pays off on short streams with repeated phrases (shape tables, tiny tensors), so it is limited to those.
    """
    if len(data) <= MATCH_SEARCH_LIMIT:
        return (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_DEFAULT_STRATEGY)
    return (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE)


def read_stream(cur: Cursor, count: int, alphabet: int) -> np.ndarray:
    """Decode ``count`` symbols below ``alphabet`` written by :func:`write_stream` (uint8 or int64 array)."""
    method = cur.u8("stream method")
    if method in (STREAM_BYTES, STREAM_DEFLATE) and alphabet <= 256:
        if method == STREAM_BYTES:
            data = cur.take(count, "symbol bytes")
        else:
            data = inflate(cur.take(cur.varint("deflate length"), "deflate stream"), count, cur)
        symbols = np.frombuffer(data, dtype=np.uint8)
        if alphabet < 256 and count and int(symbols.max()) >= alphabet:
            raise cur.fail(f"symbol {int(symbols.max())} is outside the alphabet of {alphabet}")
        return symbols
    if method != STREAM_HUFFMAN:
        raise cur.fail(f"unknown stream method {method} for an alphabet of {alphabet}")
    lengths = inflate(cur.take(cur.varint("code table length"), "code table"), alphabet, cur)
    nbits = cur.varint("bit count")
    if nbits > 8 * cur.remaining:
        raise cur.fail(f"bit count {nbits} exceeds the {cur.remaining} bytes left")
    if count > nbits:
        raise cur.fail(f"{count} symbols cannot fit in {nbits} bits")
    data = cur.take((nbits + 7) // 8, "bit stream")
    try:
        return huffman.decode(data, nbits, count, huffman.HuffmanTable(np.frombuffer(lengths, dtype=np.uint8)))
    except InputError as exc:
        raise cur.fail(str(exc)) from None


# -- codebooks: sorted distinct words, Rice-coded deltas ---------------------------------------------------------


def write_codebook(values: np.ndarray) -> bytes:
    """Sorted distinct words as ``u8 form`` + data: 0 = raw words; 1 = Rice-coded deltas.

    Form 1 splits the words at the top bit (for floats: positive, then negative, each in increasing magnitude)
    and writes ``varint`` (size of the first group), then per non-empty group: the first word raw; if the group
    has more words, ``u8 k``, ``varint U``, U bytes of unary high parts (``(d - 1) >> k`` zeros then a one,
    for each delta d), and ⌈(g - 1)·k / 8⌉ bytes of k-bit low parts, all bits most significant first.
    """
    raw = bytes([BOOK_RAW]) + values.tobytes()
    width = values.dtype.itemsize
    top = np.uint64(1) << np.uint64(8 * width - 1)
    wide = values.astype(np.uint64)
    split = int(np.searchsorted(wide, top))
    parts = [bytes([BOOK_RICE]), varint(split)]
    for group in (wide[:split], wide[split:]):
        if group.size:
            parts.append(group[:1].astype(values.dtype).tobytes())
        if group.size > 1:
            parts.append(_rice(np.diff(group) - np.uint64(1), 8 * width))
    rice = b"".join(parts)
    return rice if len(rice) < len(raw) else raw


def _rice(gaps: np.ndarray, word_bits: int) -> bytes:
    k = _rice_parameter(gaps, word_bits)
    high = (gaps >> np.uint64(k)).astype(np.int64)
    ones = np.cumsum(high + 1) - 1
    unary = np.zeros(int(ones[-1]) + 1, dtype=np.uint8)
    unary[ones] = 1
    unary_bytes = np.packbits(unary).tobytes()
    low = gaps & np.uint64((1 << k) - 1)
    bits = ((low[:, None] >> np.arange(k - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return bytes([k]) + varint(len(unary_bytes)) + unary_bytes + np.packbits(bits.ravel()).tobytes()


def _rice_parameter(gaps: np.ndarray, word_bits: int) -> int:
    """The cheapest Rice parameter: the cost is convex in k with its minimum near log2(mean gap), so only the
    neighbours of that guess are costed (costing all 8W values was a visible part of packing time)."""
    guess = int(np.log2(float(gaps.mean()) + 1.0))
    ks = [k for k in range(guess - 2, guess + 2) if 0 <= k < word_bits]
    costs = [int(np.sum(gaps >> np.uint64(k))) + k * gaps.size for k in ks]
    return ks[int(np.argmin(costs))]


def read_codebook(cur: Cursor, size: int, dtype: np.dtype) -> np.ndarray:
    """``size`` strictly increasing words of ``dtype`` written by :func:`write_codebook`."""
    form = cur.u8("codebook form")
    if form == BOOK_RAW:
        values = np.frombuffer(cur.take(size * dtype.itemsize, "codebook"), dtype=dtype)
    elif form == BOOK_RICE:
        split = cur.bounded(cur.varint("codebook split"), size, "codebook split")
        width_bits = 8 * dtype.itemsize
        top = 1 << (width_bits - 1)
        groups = [_read_group(cur, split, dtype, 0, top - 1),
                  _read_group(cur, size - split, dtype, top, (1 << width_bits) - 1)]
        values = np.concatenate(groups).astype(dtype)
    else:
        raise cur.fail(f"unknown codebook form {form}")
    if size > 1 and not np.all(values[1:] > values[:-1]):
        raise cur.fail("codebook is not strictly increasing")
    return values


def _read_group(cur: Cursor, size: int, dtype: np.dtype, low: int, high: int) -> np.ndarray:
    """One Rice-coded group of the codebook, in a handful of whole-array steps (codebooks are small, so the
    number of numpy calls, not their work, is what decoding them costs).

    The i-th one bit of the unary part sits at ``ones[i] = sum(h[:i + 1]) + i``, so ``ones - i`` is already the
    running sum of the high parts and no per-delta diff/cumsum of them is needed.
    """
    if size == 0:
        return np.zeros(0, dtype=np.uint64)
    first = int.from_bytes(cur.take(dtype.itemsize, "codebook base"), "little")
    if not low <= first <= high:
        raise cur.fail("codebook base outside its group")
    if size == 1:
        return np.array([first], dtype=np.uint64)
    k = cur.bounded(cur.u8("Rice parameter"), 8 * dtype.itemsize - 1, "Rice parameter")
    unary_bytes = cur.take(cur.varint("unary length"), "unary bits")
    ones = np.flatnonzero(np.unpackbits(np.frombuffer(unary_bytes, dtype=np.uint8)))
    if ones.size != size - 1 or ones[-1] // 8 != len(unary_bytes) - 1:
        raise cur.fail("codebook unary part does not hold its deltas")
    steps = np.arange(1, size, dtype=np.uint64)
    high_sums = ones.astype(np.uint64) - steps + np.uint64(1)
    low_bits = np.unpackbits(np.frombuffer(cur.take(((size - 1) * k + 7) // 8, "Rice low bits"), dtype=np.uint8))
    weights = np.uint64(1) << np.arange(k - 1, -1, -1, dtype=np.uint64)
    lows = low_bits[: (size - 1) * k].reshape(size - 1, k) @ weights
    low_total = int(lows.sum()) if k <= 40 else sum(lows.tolist())  # exact: 2^16 lows of 40 bits fit in 63
    if first + (int(high_sums[-1]) << k) + low_total + size - 1 > high:
        raise cur.fail("codebook deltas overflow their group")  # every term grows, so nothing wrapped before
    values = np.empty(size, dtype=np.uint64)
    values[0] = first
    values[1:] = np.uint64(first) + (high_sums << np.uint64(k)) + np.cumsum(lows, dtype=np.uint64) + steps
    return values


# -- symbols: codebook + coded indices ---------------------------------------------------------------------------


def _few_distinct(words: np.ndarray) -> bool:
    """Cheap pre-check on a strided sample: a dense float tensor has nearly all values distinct."""
    if words.size <= 4 * MAX_SYMBOLS:
        return True
    sample = words[:: words.size // MAX_SYMBOLS][:MAX_SYMBOLS]
    return np.unique(sample).size < MAX_SYMBOLS // 2


class WordStats:
    """A tensor's distinct words and their counts, computed at most once.

    ``np.unique`` is the most expensive step of choosing a codec; the size estimates, the symbols codec and
    the pack report's entropy bound all need it, so it is shared instead of recomputed.
    """

    def __init__(self, words: np.ndarray) -> None:
        self.words = words
        self._unique: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def unique(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sorted distinct words, each word's index among them, and their counts."""
        if self._unique is None:
            values, index, counts = np.unique(self.words, return_inverse=True, return_counts=True)
            self._unique = (values, index.ravel(), counts)
        return self._unique

    def entropy_bytes(self) -> float:
        """Order-0 Shannon bound of the words, in bytes."""
        return huffman.entropy_bits(self.unique()[2]) / 8 if self.words.size else 0.0


def _symbols_encode(words: np.ndarray, stats: WordStats | None = None) -> bytes | None:
    if words.size == 0 or not _few_distinct(words):
        return None
    values, index, counts = (stats or WordStats(words)).unique()
    if values.size > MAX_SYMBOLS:
        return None
    if values.size * words.dtype.itemsize // 2 + huffman.entropy_bits(counts) / 8 >= words.nbytes:
        return None  # even a half-size codebook plus the Shannon bound exceed raw: do not build the code
    return varint(values.size) + write_codebook(values) + write_stream(index, values.size, counts)


def _symbols_estimate(stats: WordStats) -> float | None:
    """Near-lower bound of the symbols payload: Shannon bound of the indices plus a Rice-coded codebook."""
    if stats.words.size == 0 or not _few_distinct(stats.words):
        return None
    values, _, counts = stats.unique()
    if values.size > MAX_SYMBOLS:
        return None
    return huffman.entropy_bits(counts) / 8 + _codebook_estimate(values)


def _codebook_estimate(values: np.ndarray) -> float:
    """Bytes :func:`write_codebook` needs for ``values``, from the mean gap (Rice with a near-optimal k)."""
    width = values.dtype.itemsize
    top = np.uint64(1) << np.uint64(8 * width - 1)
    wide = values.astype(np.uint64)
    split = int(np.searchsorted(wide, top))
    bits = 0.0
    for group in (wide[:split], wide[split:]):
        if group.size > 1:
            gaps = np.diff(group) - np.uint64(1)
            k = max(int(np.log2(float(gaps.mean()) + 1.0)) - 1, 0)
            bits += min(float(np.sum(gaps >> np.uint64(j))) + (j + 1) * gaps.size for j in (k, k + 1))
    return min(bits / 8 + 2 * width, values.nbytes)


def _symbols_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    size = cur.bounded(cur.varint("codebook size"), MAX_SYMBOLS, "codebook size")
    if size == 0:
        raise cur.fail("empty codebook")
    values = read_codebook(cur, size, dtype)
    index = read_stream(cur, n, size)
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
    symbols = np.full(total, run, dtype=np.uint8)
    slots = np.cumsum(fillers[:-1] + 1) - 1
    symbols[slots] = remainder[:-1]
    return symbols, int(remainder[-1])


def _sparse_encode(words: np.ndarray) -> bytes | None:
    positions = np.flatnonzero(words)
    if positions.size > words.size // 2 or words.size == 0:
        return None
    best: tuple[float, int] | None = None
    for run in RUN_LENGTHS:
        symbols, _ = _run_symbols(positions, words.size, run)
        size = huffman.entropy_bits(np.bincount(symbols, minlength=run + 1)) + 8 * (run + 1) / 2
        best = min(best or (size, run), (size, run))
    assert best is not None
    run = best[1]
    symbols, tail = _run_symbols(positions, words.size, run)
    codec, values = encode_best(words[positions], VALUE_CODECS)
    header = varint(run) + varint(tail) + varint(symbols.size)
    return b"".join([header, write_stream(symbols, run + 1), _nested(codec, values)])


def _sparse_estimate(stats: WordStats) -> float | None:
    """Near-lower bound of the sparse payload: the cheapest run alphabet's Shannon bound plus the values'."""
    words = stats.words
    positions = np.flatnonzero(words)
    if positions.size > words.size // 2 or words.size == 0:
        return None
    runs = min(huffman.entropy_bits(np.bincount(_run_symbols(positions, words.size, run)[0], minlength=run + 1))
               for run in RUN_LENGTHS) / 8
    nested = WordStats(words[positions])
    values = min(e for e in (_symbols_estimate(nested), _byteplane_estimate(nested), float(nested.words.nbytes))
                 if e is not None)
    return runs + values


def _sparse_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    run = cur.bounded(cur.varint("run length"), 255, "run length")
    tail = cur.varint("tail zeros")
    nsym = cur.varint("run symbol count")
    if run == 0 or tail >= run:
        raise cur.fail(f"bad run length {run} / tail {tail}")
    if nsym > n or n > nsym * run + tail:
        raise cur.fail(f"{nsym} run symbols cannot describe {n} elements")
    symbols = read_stream(cur, nsym, run + 1).astype(np.int64)
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
        stored = bytes([STREAM_BYTES]) + plane.tobytes()
        if _plane_entropy_bytes(plane) > plane.size * (1 - PLANE_MIN_GAIN):
            parts.append(stored)  # mantissa noise: no order-0 coder can gain enough, do not run one
            continue
        coded = write_stream(plane, 256)
        parts.append(coded if len(coded) <= 1 + plane.size * (1 - PLANE_MIN_GAIN) else stored)
    return b"".join(parts)


def _byteplane_estimate(stats: WordStats) -> float | None:
    """Each plane's Shannon bound, or its size where coding cannot gain (what :func:`_byteplane_encode` stores)."""
    words = stats.words
    width = words.dtype.itemsize
    if width == 1 or words.size == 0:
        return None
    planes = words.view(np.uint8).reshape(words.size, width).T
    return sum(min(_plane_entropy_bytes(plane), float(plane.size)) for plane in planes)


def _plane_entropy_bytes(plane: np.ndarray) -> float:
    return huffman.entropy_bits(np.bincount(plane, minlength=256)) / 8


def _byteplane_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    if dtype.itemsize == 1:
        raise cur.fail("byte planes of 1-byte words")
    out = np.empty((n, dtype.itemsize), dtype=np.uint8)
    for k in range(dtype.itemsize):
        out[:, k] = read_stream(cur, n, 256)
    cur.expect_end()
    return out.view(dtype).reshape(n)


# -- lzma ------------------------------------------------------------------------------------------------------


def _lzma_filters(width: int, size: int) -> list[dict[str, int]]:
    """Raw LZMA2 at -9e, with literal position and position bits set by the word size (lp = pb = log2 W)."""
    bits = {1: 0, 2: 1, 4: 2, 8: 3}[width]
    dict_size = min(max(1 << max(size - 1, 1).bit_length(), LZMA_DICT[0]), LZMA_DICT[1])
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size,
             "lc": 3 if bits == 0 else 0, "lp": bits, "pb": bits}]


def _lzma_encode(words: np.ndarray) -> bytes:
    data = words.tobytes()
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_lzma_filters(words.dtype.itemsize, len(data)))


def _lzma_decode(cur: Cursor, n: int, dtype: np.dtype) -> np.ndarray:
    size = n * dtype.itemsize
    payload = cur.take(cur.remaining, "lzma payload")
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_lzma_filters(dtype.itemsize, size))
    try:
        data = decoder.decompress(payload, max_length=size)
        extra = b"" if decoder.eof else decoder.decompress(b"", max_length=1)
    except lzma.LZMAError as exc:
        raise cur.fail(f"corrupt lzma payload ({exc})") from None
    if len(data) != size or extra or not decoder.eof or decoder.unused_data:
        raise cur.fail(f"lzma payload does not decode to exactly {size} bytes")
    return np.frombuffer(data, dtype=dtype)


def _lzma_may_win(words: np.ndarray, best: tuple[int, bytes]) -> bool:
    """Whole-tensor LZMA2 is slow (~1-3 MB/s at -9e): on a large tensor, first see whether it wins on a sample."""
    if words.nbytes <= LZMA_SAMPLE_BYTES:
        return True
    sample = words[: LZMA_SAMPLE_BYTES // words.dtype.itemsize]
    lzma_ratio = len(_lzma_encode(sample)) / sample.nbytes
    return lzma_ratio < (1 - LZMA_SAMPLE_GAIN) * len(best[1]) / words.nbytes


# -- registry --------------------------------------------------------------------------------------------------


CODECS: dict[int, Codec] = {
    codec.id: codec
    for codec in (
        Codec(RAW, "raw", _raw_encode, _raw_decode),
        Codec(DEFLATE, "deflate", _deflate_encode, _deflate_decode),
        Codec(SYMBOLS, "symbols", _symbols_encode, _symbols_decode),
        Codec(SPARSE, "sparse", _sparse_encode, _sparse_decode),
        Codec(BYTEPLANE, "byteplane", _byteplane_encode, _byteplane_decode),
        Codec(LZMA, "lzma", _lzma_encode, _lzma_decode),
    )
}
#: What a whole tensor may use, and what a sparse tensor's non-zero values may use.
TENSOR_CODECS = (RAW, DEFLATE, SYMBOLS, SPARSE, BYTEPLANE, LZMA)
VALUE_CODECS = (RAW, DEFLATE, SYMBOLS, BYTEPLANE, LZMA)


def _nested(codec: int, payload: bytes) -> bytes:
    return bytes([codec]) + varint(len(payload)) + payload


def encode_best(words: np.ndarray, allowed: tuple[int, ...] = TENSOR_CODECS,
                stats: WordStats | None = None) -> tuple[int, bytes]:
    """Encode ``words`` with the allowed codecs that can win and keep the smallest payload (raw on ties).

    Each entropy codec first gives a size estimate from histograms (close to a lower bound of what it will
    write); codecs run in order of their estimate, and one whose estimate cannot beat the best payload so far
    is not run. Whole-tensor deflate has no estimate: it runs only on byte-sized words (int8 tensors, where
    its match search finds repeats) and on small tensors, where it is cheap.
    """
    stats = stats or WordStats(words)
    best = (RAW, _raw_encode(words))
    candidates = []
    for codec_id in allowed:
        estimate = _ESTIMATES[codec_id](stats) if codec_id in _ESTIMATES else None
        if estimate is not None and estimate < len(best[1]):
            candidates.append((estimate, codec_id))
    for estimate, codec_id in sorted(candidates):
        if estimate >= len(best[1]):
            break
        payload = _symbols_encode(words, stats) if codec_id == SYMBOLS else CODECS[codec_id].encode(words)
        if payload is not None and len(payload) < len(best[1]):
            best = (codec_id, payload)
    if DEFLATE in allowed and _deflate_may_win(words, best):
        payload = _deflate_encode(words)
        if payload is not None and len(payload) < len(best[1]):
            best = (DEFLATE, payload)
    if LZMA in allowed and words.nbytes >= MIN_LZMA_BYTES and _lzma_may_win(words, best):
        payload = _lzma_encode(words)
        if len(payload) < len(best[1]):
            best = (LZMA, payload)
    return best


def _deflate_may_win(words: np.ndarray, best: tuple[int, bytes]) -> bool:
    if best[0] in (SYMBOLS, SPARSE) and len(best[1]) < words.nbytes // 8:
        return False  # deflate cannot get under 1 bit per byte of an order-0 coded stream that small
    return words.dtype.itemsize == 1 or words.nbytes <= SMALL_DEFLATE_BYTES


_ESTIMATES: dict[int, Callable[[WordStats], float | None]] = {
    SPARSE: _sparse_estimate, SYMBOLS: _symbols_estimate, BYTEPLANE: _byteplane_estimate,
}


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

"""Canonical Huffman coding of integer symbol streams, with bitarray's C decoder doing the bit work.

Why bitarray: a Huffman decoder written in Python runs at 2–5 MB/s, far below the 100 MB/s of decoded
weights we promise; bitarray's ``canonical_decode`` walks the bit stream in C (~28 M symbols/s measured here,
i.e. >100 MB/s of float32 weights even at one symbol per weight). We keep the *table* format our own:
a code is stored as one length per alphabet symbol (0 = symbol absent), and the canonical assignment
(shorter codes first, ties by symbol number) is rebuilt from those lengths on both sides, so files never
depend on how a library orders its codes.

Every table read from a file is validated (lengths in range, Kraft sum not over-subscribed) before use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode

from onnxcomp.errors import InputError

#: Longest code we write or accept; bitarray's canonical decoder handles up to 31.
MAX_CODE_LENGTH = 31


@dataclass(frozen=True)
class HuffmanTable:
    """A canonical Huffman code over symbols ``0 .. len(lengths) - 1``.

    Attributes:
        lengths: code length per symbol, 0 when the symbol never occurs.
    """

    lengths: np.ndarray

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> HuffmanTable:
        """Build the optimal code for symbol frequencies ``counts`` (lengths capped at MAX_CODE_LENGTH).

        A single used symbol gets a 1-bit code, so every symbol costs at least one bit: this keeps
        "symbols ≤ bits" true, which the reader relies on to bound allocations.
        """
        counts = np.asarray(counts, dtype=np.int64)
        scaled = counts.copy()
        while True:
            lengths = _lengths_for(scaled)
            if lengths.max(initial=0) <= MAX_CODE_LENGTH:
                return cls(lengths)
            # Too deep (Fibonacci-like frequencies): flatten the distribution and try again.
            scaled = np.where(scaled > 0, np.maximum(scaled >> 1, 1), 0)

    def validate(self) -> None:
        """Refuse tables a corrupt file could carry: out-of-range lengths or an over-full code."""
        lengths = self.lengths
        if lengths.size == 0 or not lengths.any():
            raise InputError("Huffman table has no symbols")
        if int(lengths.max()) > MAX_CODE_LENGTH:
            raise InputError(f"Huffman code length {int(lengths.max())} exceeds {MAX_CODE_LENGTH}")
        used = lengths[lengths > 0].astype(np.int64)
        kraft = int(np.sum(np.left_shift(np.int64(1), MAX_CODE_LENGTH - used)))
        if kraft > 1 << MAX_CODE_LENGTH:
            raise InputError("Huffman table is over-subscribed (corrupt code lengths)")

    def canonical(self) -> tuple[list[int], list[int]]:
        """``(count, symbol)``: codes per length and symbols in canonical order (bitarray's decoder input)."""
        used = np.flatnonzero(self.lengths)
        order = used[np.lexsort((used, self.lengths[used]))]
        count = np.bincount(self.lengths[used], minlength=int(self.lengths.max()) + 1)
        count[0] = 0
        return count.tolist(), order.tolist()

    def codes(self) -> dict[int, bitarray]:
        """The canonical code of every used symbol, for the encoder."""
        count, symbols = self.canonical()
        result: dict[int, bitarray] = {}
        code, index = 0, 0
        for length in range(1, len(count)):
            for _ in range(count[length]):
                word = bitarray(format(code, f"0{length}b"), endian="big")
                result[symbols[index]] = word
                code, index = code + 1, index + 1
            code <<= 1
        return result

    def bits(self, counts: np.ndarray) -> int:
        """Bits this code spends on a stream with symbol frequencies ``counts``."""
        return int(np.dot(self.lengths[: counts.size].astype(np.int64), counts.astype(np.int64)))


def _lengths_for(counts: np.ndarray) -> np.ndarray:
    """Optimal code lengths by the two-queue Huffman construction over the sorted counts.

    Linear after the sort, on plain ints: bitarray's ``huffman_code`` builds a heap of node objects and was
    the slowest step of packing tensors with thousands of distinct values.
    """
    lengths = np.zeros(counts.size, dtype=np.uint8)
    used = np.flatnonzero(counts)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    order = used[np.argsort(counts[used], kind="stable")]
    weights = counts[order].tolist()
    n = len(weights)
    parent = [0] * (2 * n - 1)
    merged: list[int] = []  # weights of internal nodes n, n + 1, ... (created in non-decreasing order)
    leaf = inner = 0
    for node in range(n, 2 * n - 1):
        pair = []
        for _ in range(2):
            if leaf < n and (inner >= len(merged) or weights[leaf] <= merged[inner]):
                pair.append((weights[leaf], leaf))
                leaf += 1
            else:
                pair.append((merged[inner], n + inner))
                inner += 1
        parent[pair[0][1]] = parent[pair[1][1]] = node
        merged.append(pair[0][0] + pair[1][0])
    depth = [0] * (2 * n - 1)
    for node in range(2 * n - 3, -1, -1):
        depth[node] = depth[parent[node]] + 1
    lengths[order] = np.minimum(np.array(depth[:n]), 255)
    return lengths


def encode(symbols: np.ndarray, table: HuffmanTable) -> tuple[bytes, int]:
    """Encode integer ``symbols`` with ``table``; return the packed bytes (big-endian bits) and the bit count."""
    if symbols.size == 0:
        return b"", 0
    stream = bitarray(endian="big")
    stream.encode(table.codes(), symbols.tolist())
    return stream.tobytes(), len(stream)


def decode(data: bytes | memoryview, nbits: int, count: int, table: HuffmanTable) -> np.ndarray:
    """Decode exactly ``count`` symbols from the first ``nbits`` bits of ``data``.

    The caller has checked ``count <= nbits <= 8 * len(data)``, so the output allocation is bounded by the
    payload; a stream that ends early or holds an invalid code is an :class:`InputError`.
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    table.validate()
    stream = bitarray(endian="big")
    stream.frombytes(bytes(data))
    del stream[nbits:]
    ranks, symbols = table.canonical()
    try:
        return np.fromiter(canonical_decode(stream, ranks, symbols), dtype=np.int64, count=count)
    except ValueError as exc:
        raise InputError(f"corrupt Huffman stream ({str(exc).splitlines()[0]})") from None


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon bound, in bits, of a stream with symbol frequencies ``counts`` (order-0, no table cost)."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(-(counts * np.log2(counts / total)).sum())

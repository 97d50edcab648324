"""Canonical Huffman: exact round trips, optimal lengths, and refusal of corrupt tables."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcomp.errors import InputError
from onnxcomp.packing import huffman


@pytest.mark.parametrize("alphabet", [1, 2, 7, 256, 5000])
def test_round_trip_random_streams(alphabet: int) -> None:
    rng = np.random.default_rng(alphabet)
    symbols = rng.zipf(1.5, 20_000) % alphabet
    table = huffman.HuffmanTable.from_counts(np.bincount(symbols, minlength=alphabet))
    data, nbits = huffman.encode(symbols, table)
    assert nbits == table.bits(np.bincount(symbols, minlength=alphabet))
    decoded = huffman.decode(data, nbits, symbols.size, table)
    np.testing.assert_array_equal(decoded, symbols)


def test_single_symbol_costs_one_bit() -> None:
    table = huffman.HuffmanTable.from_counts(np.array([0, 0, 9]))
    assert table.lengths.tolist() == [0, 0, 1]
    data, nbits = huffman.encode(np.full(9, 2), table)
    assert nbits == 9
    assert huffman.decode(data, nbits, 9, table).tolist() == [2] * 9


def test_code_lengths_are_within_one_bit_of_entropy() -> None:
    counts = np.array([500, 250, 125, 60, 40, 25])
    table = huffman.HuffmanTable.from_counts(counts)
    assert huffman.entropy_bits(counts) <= table.bits(counts) <= huffman.entropy_bits(counts) + counts.sum()
    assert table.lengths.tolist()[:3] == [1, 2, 3]


def test_lengths_are_capped_for_fibonacci_frequencies() -> None:
    fib = [1, 1]
    while len(fib) < 40:
        fib.append(fib[-1] + fib[-2])
    table = huffman.HuffmanTable.from_counts(np.array(fib))
    assert int(table.lengths.max()) <= huffman.MAX_CODE_LENGTH
    table.validate()


def test_over_subscribed_table_is_refused() -> None:
    with pytest.raises(InputError, match="over-subscribed"):
        huffman.HuffmanTable(np.array([1, 1, 1], dtype=np.uint8)).validate()


def test_truncated_stream_is_an_input_error() -> None:
    symbols = np.arange(100) % 5
    table = huffman.HuffmanTable.from_counts(np.bincount(symbols))
    data, nbits = huffman.encode(symbols, table)
    with pytest.raises(InputError, match="corrupt Huffman stream"):
        huffman.decode(data, nbits // 2, 100, table)


def test_entropy_of_uniform_and_constant_streams() -> None:
    assert huffman.entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(40.0)
    assert huffman.entropy_bits(np.array([12])) == 0.0

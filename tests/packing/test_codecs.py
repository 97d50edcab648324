"""Per-tensor codecs: each one round-trips exact bit patterns, and the smallest is the one chosen."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcomp.errors import InputError
from onnxcomp.packing import codecs
from onnxcomp.packing.cursor import Cursor
from onnxcomp.packing.huffman import entropy_bits

RNG = np.random.default_rng(0)
N = 60_000


def _dense() -> np.ndarray:
    return (RNG.standard_normal(N) * 0.05).astype(np.float32)


def _clustered(bits: int = 5) -> np.ndarray:
    centroids = np.sort(RNG.standard_normal(2**bits)).astype(np.float32) * 0.05
    return centroids[RNG.integers(0, 2**bits, N)]


def _pruned(values: np.ndarray, sparsity: float) -> np.ndarray:
    out = values.copy()
    out[RNG.random(out.size) < sparsity] = 0
    return out


def _round_trip(words: np.ndarray, codec_id: int) -> bytes:
    payload = codecs.CODECS[codec_id].encode(words)
    assert payload is not None
    decoded = codecs.decode_with(codec_id, Cursor(payload, "test"), words.size, words.dtype)
    assert decoded.tobytes() == words.tobytes()
    return payload


@pytest.mark.parametrize("codec_id", list(codecs.CODECS))
@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_every_codec_round_trips_every_width(codec_id: int, width: int) -> None:
    values = _pruned(_clustered(4), 0.7).astype(np.float64 if width == 8 else np.float32)
    words = np.frombuffer(values.tobytes(), dtype=codecs.WORD_TYPES[width])[: 4000]
    if codecs.CODECS[codec_id].encode(words) is None:
        pytest.skip("codec not applicable to this stream")
    _round_trip(np.ascontiguousarray(words), codec_id)


def test_odd_bit_patterns_survive() -> None:
    special = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45] * 500, dtype=np.float32)
    special.view(np.uint32)[2] = 0x7FC00123  # a NaN with a payload
    words = special.view(np.uint32)
    for codec_id in codecs.CODECS:
        if codecs.CODECS[codec_id].encode(words) is not None:
            _round_trip(words, codec_id)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 5000])
def test_sparse_all_zero_and_edge_sizes(size: int) -> None:
    words = np.zeros(size, dtype=np.uint32)
    if size:
        _round_trip(words, codecs.SPARSE)
    codec_id, payload = codecs.encode_best(words)
    decoded = codecs.decode_with(codec_id, Cursor(payload), size, words.dtype)
    assert decoded.tobytes() == words.tobytes()


@pytest.mark.parametrize(("make", "expected"), [
    (_dense, "byteplane"),
    (_clustered, "symbols"),
    (lambda: _pruned(_dense(), 0.9), "sparse"),
    (lambda: _pruned(_clustered(), 0.9), "sparse"),
])
def test_the_smallest_codec_is_chosen(make, expected: str) -> None:
    words = make().view(np.uint32)
    codec_id, payload = codecs.encode_best(words)
    assert codecs.codec_name(codec_id) == expected
    for other in codecs.CODECS.values():
        candidate = other.encode(words)
        assert candidate is None or len(candidate) >= len(payload)


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 0.95])
def test_pruned_clustered_tensors_pack_close_to_the_entropy_bound(sparsity: float) -> None:
    words = _pruned(_clustered(), sparsity).view(np.uint32)
    _, payload = codecs.encode_best(words)
    values, counts = np.unique(words, return_counts=True)
    bound = entropy_bits(counts) / 8 + values.nbytes  # the codebook is side information any decoder needs
    assert len(payload) <= 1.03 * bound


def test_sparse_beats_one_bit_per_weight() -> None:
    words = _pruned(_clustered(), 0.95).view(np.uint32)
    _, payload = codecs.encode_best(words)
    assert 8 * len(payload) / words.size < 0.6


def test_decoders_refuse_counts_their_payload_cannot_hold() -> None:
    words = _pruned(_clustered(), 0.9).view(np.uint32)
    for codec_id in (codecs.SYMBOLS, codecs.SPARSE, codecs.RAW):
        payload = codecs.CODECS[codec_id].encode(words)
        with pytest.raises(InputError):
            codecs.decode_with(codec_id, Cursor(payload, "t"), 10**12, words.dtype)


def test_unknown_codec_id_is_refused() -> None:
    with pytest.raises(InputError, match="unknown or misplaced codec id 99"):
        codecs.decode_with(99, Cursor(b"", "t"), 1, np.dtype(np.uint32))


def _dft_kernels(bins: int = 129, window: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The real and imaginary STFT kernels an audio front-end carries as conv weights."""
    n = np.arange(window)
    k = np.arange(bins)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / window)
    return ((np.cos(2 * np.pi * k * n / window) * hann).astype(np.float32),
            (-np.sin(2 * np.pi * k * n / window) * hann).astype(np.float32))


def test_lzma_wins_on_structured_tensors_and_refuses_bad_payloads() -> None:
    real, _ = _dft_kernels()
    words = real.reshape(-1).view(np.uint32)
    codec_id, payload = codecs.encode_best(words)
    assert codec_id == codecs.LZMA
    assert len(payload) < 0.5 * len(codecs.CODECS[codecs.BYTEPLANE].encode(words))
    _round_trip(words, codecs.LZMA)
    for bad in (payload[: len(payload) // 2], payload + b"\0", b"\xff" * 64):
        with pytest.raises(InputError):
            codecs.decode_with(codecs.LZMA, Cursor(bad, "test"), words.size, words.dtype)
    with pytest.raises(InputError):  # a payload must decode to exactly the declared size, not more
        codecs.decode_with(codecs.LZMA, Cursor(payload, "test"), words.size - 1, words.dtype)


def test_lzma_is_not_chosen_for_noise() -> None:
    codec_id, _ = codecs.encode_best(_dense().view(np.uint32))
    assert codec_id != codecs.LZMA

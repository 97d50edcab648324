"""The container: lossless on every fixture (hashes per tensor), external data, in-memory loading, and a
matrix of corrupt inputs that must each be one InputError."""

from __future__ import annotations

import gc
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from support import fixture_path

import onnxcomp
from onnxcomp import io
from onnxcomp.errors import InputError
from onnxcomp.packing import format as fmt
from onnxcomp.packing import pack, pack_file, pack_with_report, unpack, unpack_file, unpack_proto
from onnxcomp.packing.cursor import Cursor, varint
from onnxcomp.weights import iter_weights

FIXTURE_NAMES = ["lenet300", "lenet5", "resnet", "mobilenetv2", "yolo_block", "transformer",
                 "lenet5_opset11", "lenet300_constants", "lenet300_if"]


def tensor_hashes(model: onnx.ModelProto, base: Path | None = None) -> list[tuple[str, str]]:
    """(label, sha256 of the tensor's bytes) for every tensor, reading external data when there is any."""
    if base is not None:
        onnx.load_external_data_for_model(model, str(base))
    return [(slot.label, hashlib.sha256(_tensor_bytes(slot.tensor)).hexdigest()) for slot in fmt.walk_tensors(model)]


def _tensor_bytes(tensor: onnx.TensorProto) -> bytes:
    return tensor.raw_data or onnx.numpy_helper.to_array(tensor).tobytes()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_every_fixture_round_trips_byte_identically(name: str) -> None:
    data, report = pack_with_report(io.load(fixture_path(name)))
    assert report.packed_bytes == len(data) < fixture_path(name).stat().st_size
    restored = unpack_proto(data).model
    assert tensor_hashes(restored) == tensor_hashes(onnx.load(fixture_path(name)))
    assert [b.name for b in report.tensors] and all(b.codec for b in report.tensors)


def _prune_and_cluster(model, sparsity: float = 0.9, levels: int = 16):
    """Stand-in for the prune and cluster passes: zero the smallest weights, snap the rest to a few values."""
    for ref in iter_weights(model):
        if ref.size < 256 or ref.dtype != ir.DataType.FLOAT:
            continue
        weights = ref.numpy().copy()
        weights[np.abs(weights) < np.quantile(np.abs(weights), sparsity)] = 0
        grid = np.linspace(weights.min(), weights.max(), levels).astype(np.float32)
        nonzero = weights != 0
        weights[nonzero] = grid[np.abs(weights[nonzero, None] - grid).argmin(axis=1)]
        ref.replace(weights)
    return model


@pytest.mark.parametrize("name", ["lenet300_constants", "lenet300_if"])
def test_constant_and_subgraph_weights_are_coded_and_shrink(name: str) -> None:
    model = _prune_and_cluster(io.load(fixture_path(name)))
    before = len(io.serialize(model))
    data, report = pack_with_report(model)
    codecs_used = {block.codec for block in report.tensors if block.bytes > 10_000}
    # lenet300_if carries the same weights in both branches: the copies share one LZMA2 block
    assert codecs_used == ({"group:lzma"} if name == "lenet300_if" else {"sparse"})
    assert len(data) < before / (12 if name == "lenet300_if" else 8)
    assert tensor_hashes(unpack_proto(data).model) == tensor_hashes(onnx.load_from_string(io.serialize(model)))


def test_pruned_clustered_model_gives_identical_outputs(tmp_path: Path) -> None:
    model = _prune_and_cluster(io.load(fixture_path("lenet5")))
    plain = tmp_path / "clustered.onnx"
    io.save(model, plain)
    packed = tmp_path / "clustered.onnxc"
    pack_file(plain, packed)
    feed = {"input": np.load(fixture_path("lenet5").with_suffix(".test.npz"))["input"][:64]}
    expected = onnxcomp.open_session(plain).run(None, feed)[0]
    got = onnxcomp.open_session(packed).run(None, feed)[0]
    np.testing.assert_array_equal(got, expected)
    reloaded = io.load(packed)  # detected by magic, decoded in memory
    assert len(io.serialize(reloaded)) == len(io.serialize(io.load(plain)))


def test_external_data_packs_into_one_file_and_unpacks_to_external(tmp_path: Path) -> None:
    source = tmp_path / "ext.onnx"
    io.save(io.load(fixture_path("lenet300")), source, external_data=True)
    assert (tmp_path / "ext.onnx.data").exists()
    packed = tmp_path / "ext.onnxc"
    report = pack_file(source, packed)
    assert report.source_bytes == source.stat().st_size + (tmp_path / "ext.onnx.data").stat().st_size
    assert any(block.external for block in report.tensors)
    out = tmp_path / "out" / "back.onnx"
    out.parent.mkdir()
    result = unpack_file(packed, out)
    assert result.external_data and (out.parent / "back.onnx.data").exists()
    assert tensor_hashes(onnx.load(out, load_external_data=False), out.parent) == \
        tensor_hashes(onnx.load(fixture_path("lenet300")))


def test_pack_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    with pytest.raises(onnxcomp.errors.OutputError):
        pack_file(fixture_path("lenet5"), fixture_path("lenet5"))


# -- hardened reading -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packed() -> bytes:
    return pack(io.load(fixture_path("lenet5")))


def _with_header(data: bytes, **fields: int) -> bytes:
    """Rewrite header fields and recompute the header checksum, as a deliberate attacker would."""
    names = ["magic", "major", "minor", "flags", "blocks", "codec", "payload", "size", "crc"]
    values = dict(zip(names, fmt.HEADER.unpack(data[: fmt.HEADER.size]), strict=True))
    values.update(fields)
    head = fmt.HEADER.pack(*values.values())
    return head + struct.pack("<I", zlib.crc32(head)) + data[fmt.HEADER.size + 4:]


def _first_block_offset(data: bytes) -> int:
    payload = fmt.HEADER.unpack(data[: fmt.HEADER.size])[6]
    return fmt.HEADER.size + 4 + payload


def _with_block(data: bytes, **fields: int) -> bytes:
    """Rewrite the first block's header fields and recompute its checksum (over the new header and the
    tensor's true decoded bytes), as a deliberate attacker would; the payload is left as it is."""
    start = _first_block_offset(data)
    cur = Cursor(data[start:])
    index, kind = cur.varint("i"), cur.u8("k")
    members, group = [index], b""
    if kind & fmt.KIND_GROUP:
        group_start = cur.position
        for _ in range(cur.varint("count") - 1):
            members.append(members[-1] + cur.varint("delta"))
        group = cur.consumed(group_start)
    size, length = cur.varint("s"), cur.varint("l")
    payload_start = start + cur.position + 4
    slots = fmt.walk_tensors(unpack_proto(data).model)
    decoded = b"".join(slots[i].tensor.raw_data for i in members)
    values = {"index": index, "codec": kind & 0x0F, "width": (kind >> 4) & 3, "external": (kind >> 6) & 1,
              "size": size, "length": length} | fields
    kind = values["codec"] | values["width"] << 4 | values["external"] << 6 | (kind & fmt.KIND_GROUP)
    head = varint(values["index"]) + bytes([kind]) + group + varint(values["size"]) + varint(values["length"])
    check = struct.pack("<I", zlib.crc32(decoded, zlib.crc32(head)))
    return data[:start] + head + check + data[payload_start:]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: b"", "wrong magic"),
    (lambda d: b"PK\x03\x04" + d[4:], "wrong magic"),
    (lambda d: d[:20], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\x00", "unexpected bytes"),
    (lambda d: _with_header(d, major=2), "unsupported container version 2.0"),
    (lambda d: _with_header(d, minor=7), "unsupported container version 1.7"),
    (lambda d: d[:9] + bytes([d[9] ^ 1]) + d[10:], "unsupported container version|checksum"),
    (lambda d: _with_header(d, blocks=2**32 - 1), "block count"),
    (lambda d: _with_header(d, size=2**40), "graph size"),
    (lambda d: _with_header(d, payload=2**62), "truncated"),
    (lambda d: _with_block(d, size=2**60), "declares"),
    (lambda d: _with_block(d, index=10**6), "does not exist"),
    (lambda d: _with_block(d, length=2**40), "truncated"),
    (lambda d: _with_block(d, codec=7), "unknown or misplaced codec"),
    (lambda d: _with_block(d, width=3), "declares"),
    (lambda d: _with_block(d, width=0), "declares"),
    (lambda d: d[:_first_block_offset(d)] + b"\xff" * 11 + d[_first_block_offset(d) + 11:], "varint"),
])
def test_corrupt_containers_are_one_line_input_errors(packed: bytes, mutate, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        unpack(mutate(packed))
    assert "\n" not in str(caught.value)


def test_declared_size_over_the_memory_limit_is_refused_before_decoding(packed: bytes) -> None:
    with pytest.raises(InputError, match="limit"):
        fmt.read_container(packed, max_decoded_bytes=1000)


def test_random_bit_flips_never_crash(packed: bytes) -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        data = bytearray(packed)
        position = int(rng.integers(0, len(data)))
        data[position] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(InputError):
            unpack(bytes(data))


def test_every_truncation_is_refused(packed: bytes) -> None:
    for length in range(0, len(packed), max(1, len(packed) // 200)):
        with pytest.raises(InputError):
            unpack(packed[:length])


def test_valid_checksums_on_a_corrupt_payload_still_fail_cleanly(packed: bytes) -> None:
    start = _first_block_offset(packed) + 12
    rng = np.random.default_rng(3)
    for _ in range(50):
        data = bytearray(packed)
        data[start + int(rng.integers(0, 64))] ^= 0xFF
        with pytest.raises(InputError):
            unpack(_with_block(bytes(data)))  # recomputes the block checksum over the damaged payload


def test_load_gives_one_line_for_a_corrupt_packed_file(tmp_path: Path, packed: bytes) -> None:
    bad = tmp_path / "bad.onnx"  # the suffix does not matter: the magic does
    bad.write_bytes(packed[:200])
    with pytest.raises(InputError, match=r"bad\.onnx"):
        io.load(bad)


# -- open_session hands weights to onnxruntime without re-serializing them -------------------------------------


@pytest.mark.parametrize("name", ["resnet", "lenet300_constants", "lenet300_if"])
def test_open_session_on_packed_file_matches_the_plain_model(tmp_path: Path, name: str) -> None:
    plain = fixture_path(name)
    packed = tmp_path / f"{name}.onnxc"
    pack_file(plain, packed)
    session = onnxcomp.open_session(packed)
    arrays, _, _ = session.onnxc_weights  # kept alive with the session: onnxruntime reads them in place
    assert all(array.flags.c_contiguous for array in arrays)
    assert bool(arrays) == (name == "resnet")  # Constant-node and If-body weights stay in the proto
    reference = onnxcomp.open_session(plain)
    rng = np.random.default_rng(0)
    feed = {arg.name: rng.standard_normal([d if isinstance(d, int) else 2 for d in arg.shape]).astype(np.float32)
            for arg in reference.get_inputs()}
    del arrays
    gc.collect()
    for got, expected in zip(session.run(None, feed), reference.run(None, feed), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_group_listing_a_member_twice_is_refused() -> None:
    tensors = [onnx.numpy_helper.from_array(np.full(40, k, np.float32), f"b{k}") for k in range(3)]
    graph = onnx.helper.make_graph([], "g", [], [], initializer=tensors)
    data = pack(onnx.helper.make_model(graph))
    start = _first_block_offset(data)
    assert data[start + 1] & fmt.KIND_GROUP  # three small biases share one block
    forged = bytearray(data)
    forged[start + 3] = 0  # the first member delta
    with pytest.raises(InputError, match="lists a member twice"):
        unpack_proto(bytes(forged))
    forged = bytearray(data)
    forged[start + 2] = 0x7F  # group size far beyond what the file holds
    with pytest.raises(InputError, match=r"group size|does not exist|truncated|declares|twice"):
        unpack_proto(bytes(forged))


def test_related_structured_tensors_share_one_lzma_block_and_beat_xz(tmp_path: Path) -> None:
    """The real and imaginary DFT kernels repeat each other's values: one LZMA2 stream over both is smaller
    than two, and the packed file is smaller than ``xz -9e`` of the plain model."""
    import lzma

    from onnx import TensorProto, helper, numpy_helper

    n = np.arange(512)
    k = np.arange(257)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 512)
    real = (np.cos(2 * np.pi * k * n / 512) * hann).astype(np.float32)[:, None, :]
    imag = (-np.sin(2 * np.pi * k * n / 512) * hann).astype(np.float32)[:, None, :]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "real"], ["re"], strides=[128]),
         helper.make_node("Conv", ["x", "imag"], ["im"], strides=[128]),
         helper.make_node("Add", ["re", "im"], ["y"])],
        "stft", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(real, "real"), numpy_helper.from_array(imag, "imag")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plain = tmp_path / "stft.onnx"
    onnx.save(model, plain)
    info = pack_file(plain, tmp_path / "stft.onnxc")
    assert {tensor.codec for tensor in info.tensors} == {"group:lzma"}
    xz = len(lzma.compress(plain.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    assert (tmp_path / "stft.onnxc").stat().st_size < xz
    x = np.random.default_rng(0).standard_normal((1, 1, 2048)).astype(np.float32)
    expected = ort.InferenceSession(str(plain)).run(None, {"x": x})[0]
    packed = onnxcomp.open_session(tmp_path / "stft.onnxc").run(None, {"x": x})[0]
    np.testing.assert_array_equal(packed, expected)

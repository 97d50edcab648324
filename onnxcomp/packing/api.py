"""Pack and unpack models, and open packed models directly in onnxruntime.

Packing changes how weights are stored, not the graph, so it is not a :class:`CompressionPass`: passes hand
on a runnable ``onnx_ir.Model``, while packing is the last step and produces bytes. ``pack``/``unpack`` work
in memory; ``pack_file``/``unpack_file`` handle paths, external data and atomic writes.
"""

from __future__ import annotations

import io as _bytes_io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnx_ir as ir

from onnxcomp import io
from onnxcomp.errors import InputError, OutputError
from onnxcomp.packing import format as fmt

if TYPE_CHECKING:  # onnxruntime is imported only when a session is opened
    import onnxruntime as ort


@dataclass
class PackReport:
    """Sizes before/after and, per coded tensor, the codec and bits per weight against the entropy bound.

    Attributes:
        source_bytes: size of the model as ONNX (file plus external data when packed from a path).
        packed_bytes: size of the container.
        graph_bytes / graph_packed_bytes / graph_codec: the graph section without weights, before/after.
        tensors: one entry per coded tensor.
        seconds: wall time of encoding.
    """

    source_bytes: int
    packed_bytes: int
    graph_bytes: int
    graph_packed_bytes: int
    graph_codec: str
    tensors: list[fmt.BlockInfo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def weight_bytes(self) -> int:
        return sum(block.bytes for block in self.tensors)

    @property
    def weight_packed_bytes(self) -> int:
        return sum(block.packed_bytes for block in self.tensors)

    @property
    def entropy_bytes(self) -> float:
        """Order-0 Shannon bound of all coded tensors' words (no codebook cost)."""
        return sum(block.entropy_bytes for block in self.tensors)

    @property
    def bound_bytes(self) -> float:
        """Entropy bound plus each tensor's distinct values (see :attr:`BlockInfo.bound_bytes`)."""
        return sum(block.bound_bytes for block in self.tensors)

    @property
    def ratio(self) -> float:
        return self.source_bytes / self.packed_bytes if self.packed_bytes else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "source_bytes": self.source_bytes,
            "packed_bytes": self.packed_bytes,
            "ratio": round(self.ratio, 4),
            "graph": {"bytes": self.graph_bytes, "packed_bytes": self.graph_packed_bytes, "codec": self.graph_codec},
            "weights": {"bytes": self.weight_bytes, "packed_bytes": self.weight_packed_bytes,
                        "entropy_bytes": round(self.entropy_bytes, 1), "bound_bytes": round(self.bound_bytes, 1)},
            "seconds": round(self.seconds, 4),
            "tensors": [block.to_dict() for block in self.tensors],
        }


@dataclass
class UnpackReport:
    """What unpacking produced: sizes, external-data use and decode speed."""

    packed_bytes: int
    weight_bytes: int
    tensors: int
    external_data: bool
    seconds: float

    @property
    def megabytes_per_second(self) -> float:
        return self.weight_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def to_dict(self) -> dict[str, object]:
        return {"packed_bytes": self.packed_bytes, "weight_bytes": self.weight_bytes, "tensors": self.tensors,
                "external_data": self.external_data, "seconds": round(self.seconds, 4),
                "decode_mb_per_s": round(self.megabytes_per_second, 1)}


# -- packing -------------------------------------------------------------------------------------------------------


def pack(model: ir.Model | onnx.ModelProto) -> bytes:
    """Pack a model into ``.onnxc`` bytes (external data of an ``ir.Model`` is read and embedded)."""
    return pack_with_report(model)[0]


def pack_with_report(model: ir.Model | onnx.ModelProto, source_bytes: int | None = None,
                     ) -> tuple[bytes, PackReport]:
    """Pack a model and say what each tensor became."""
    start = time.perf_counter()
    buffer = _bytes_io.BytesIO()
    proto, reader = _proto_and_reader(model)
    info = fmt.write_container(proto, buffer, reader)
    data = buffer.getvalue()
    if source_bytes is None:
        source_bytes = info.graph_bytes + sum(block.bytes for block in info.blocks)
    report = PackReport(source_bytes, len(data), info.graph_bytes, info.graph_packed_bytes, info.graph_codec,
                        info.blocks, time.perf_counter() - start)
    return data, report


def pack_file(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
              overwrite: bool = False) -> PackReport:
    """Pack the ONNX file ``source`` (with its external data) into one ``.onnxc`` file, atomically."""
    out = io.check_output_path(output, inputs=(source,), overwrite=overwrite)
    model = io.load(source)
    data, report = pack_with_report(model, _on_disk_bytes(Path(source), model))
    try:
        with io.atomic_write(out) as handle:
            handle.write(data)
        os.chmod(out, 0o666 & ~_umask())  # mkstemp's 0600 would make the packed model private
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return report


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _proto_and_reader(model: ir.Model | onnx.ModelProto):
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto, None
    external = {
        _external_key(value.const_value.location, value.const_value.offset, value.const_value.length):
            value.const_value
        for graph in model.graphs() for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    }

    def read(tensor: onnx.TensorProto) -> bytes:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        key = _external_key(entries.get("location", ""), entries.get("offset"), entries.get("length"))
        if key not in external:
            raise InputError(f"external tensor {tensor.name!r} cannot be found in the loaded model")
        return external[key].tobytes()

    return ir.serde.serialize_model(model), read


def _external_key(location: object, offset: object, length: object) -> tuple[str, int, int]:
    return (os.fspath(location), int(offset or 0), int(length or 0))  # type: ignore[arg-type]


def _on_disk_bytes(path: Path, model: ir.Model) -> int:
    files = {path.resolve()}
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor):
                files.add((Path(tensor.base_dir) / tensor.location).resolve())
    return sum(f.stat().st_size for f in files if f.is_file())


# -- unpacking -----------------------------------------------------------------------------------------------------


def unpack_proto(data: bytes | memoryview, *, where: str = "") -> fmt.Decoded:
    """Decode container bytes into a model proto with every weight restored."""
    return fmt.read_container(data, where=where)


def unpack(data: bytes | memoryview) -> ir.Model:
    """Decode container bytes into an ``onnx_ir`` model, all in memory."""
    return ir.serde.deserialize_model(unpack_proto(data).model)


def load_packed(path: str | os.PathLike[str]) -> ir.Model:
    """Load an ``.onnxc`` file as an ``onnx_ir`` model without writing the unpacked model anywhere."""
    return ir.serde.deserialize_model(unpack_proto(_read(path), where=os.fspath(path)).model)


def unpack_file(source: str | os.PathLike[str], output: str | os.PathLike[str], *, overwrite: bool = False,
                external_data: bool | None = None) -> UnpackReport:
    """Unpack ``source`` to the ONNX file ``output``.

    Args:
        external_data: ``None`` (default) restores external data when the packed model had it (or when it
            is too large for one protobuf); ``True``/``False`` force it.
    """
    out = io.check_output_path(output, inputs=(source,), overwrite=overwrite)
    data = _read(source)
    start = time.perf_counter()
    decoded = unpack_proto(data, where=os.fspath(source))
    seconds = time.perf_counter() - start
    if external_data is None:
        external_data = bool(decoded.external) or None
    io.save(ir.serde.deserialize_model(decoded.model), out, external_data=external_data, overwrite=True)
    weight_bytes = sum(block.bytes for block in decoded.info.blocks)
    return UnpackReport(len(data), weight_bytes, len(decoded.info.blocks), bool(external_data), seconds)


def _read(path: str | os.PathLike[str]) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read ({exc.strerror or exc})") from None


def is_packed_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a file starting with the container magic (the suffix does not matter)."""
    try:
        with open(path, "rb") as handle:
            return fmt.is_container(handle.read(len(fmt.MAGIC)))
    except OSError:
        return False


def open_session(path: str | os.PathLike[str], providers: str | Sequence[str] = "cpu",
                 **options: object) -> ort.InferenceSession:
    """An onnxruntime session for an ``.onnx`` or ``.onnxc`` file; packed files are decoded in memory.

    Decoded main-graph initializers are handed to onnxruntime as ``OrtValue``s over numpy arrays
    (``SessionOptions.add_external_initializers``) instead of being copied into the protobuf and parsed back:
    the graph declares them as external-data placeholders, which onnxruntime replaces by name. The arrays are
    kept alive on the session (``session.onnxc_weights``) for as long as it exists.

    Args:
        path: the model file.
        providers: ``cpu``, ``cuda`` or an onnxruntime provider name (or a sequence: the first is used,
            and it must really be active; see :func:`onnxcomp.session.create_session`).
        options: ``intra_op_threads`` and ``graph_optimization``, as for
            :func:`onnxcomp.session.create_session`.
    """
    from onnxcomp.session import create_session

    provider = providers if isinstance(providers, str) else (list(providers) or ["cpu"])[0]
    if not is_packed_file(path):
        return create_session(path, provider, **options)  # type: ignore[arg-type]
    weights = _InitializerHandOff()
    proto = fmt.read_container(_read(path), where=os.fspath(path), accept=weights.accept).model
    if proto.ByteSize() > io.PROTOBUF_LIMIT:
        raise InputError(f"{path}: unpacked model is over 2 GiB; unpack it to a file with external data first")
    return weights.session(proto.SerializeToString(), os.fspath(path), provider, **options)  # type: ignore[arg-type]


#: ONNX data types whose raw bytes are a plain little-endian numpy array (others stay in the proto).
_NUMPY_TYPES: dict[int, np.dtype] = {
    onnx.TensorProto.FLOAT: np.dtype("<f4"), onnx.TensorProto.DOUBLE: np.dtype("<f8"),
    onnx.TensorProto.FLOAT16: np.dtype("<f2"), onnx.TensorProto.INT8: np.dtype("i1"),
    onnx.TensorProto.UINT8: np.dtype("u1"), onnx.TensorProto.INT16: np.dtype("<i2"),
    onnx.TensorProto.UINT16: np.dtype("<u2"), onnx.TensorProto.INT32: np.dtype("<i4"),
    onnx.TensorProto.UINT32: np.dtype("<u4"), onnx.TensorProto.INT64: np.dtype("<i8"),
    onnx.TensorProto.UINT64: np.dtype("<u8"), onnx.TensorProto.BOOL: np.dtype("?"),
}
#: The external-data location placeholders carry; onnxruntime never opens it (the initializer is replaced).
_PLACEHOLDER = "onnxc-in-memory"
#: Arrays handed to onnxruntime start on this byte boundary, as numpy's own allocations do (a raw block is a view
#: into the file at any offset and is copied when it is not aligned).
_ALIGNMENT = 16


class _InitializerHandOff:
    """Collects decoded main-graph initializers as arrays and creates a session that uses them in place."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []
        self._taken: set[str] = set()

    def accept(self, slot: fmt.Slot, words: np.ndarray) -> bool:
        """Take ``words`` for a top-level initializer of a plain numpy type; leave anything else to the proto.

        Subgraph, Constant-node and function tensors stay in the proto (onnxruntime only replaces main-graph
        initializers by name), and so does a second initializer with a name already taken.
        """
        tensor = slot.tensor
        dtype = _NUMPY_TYPES.get(tensor.data_type)
        if dtype is None or not slot.top_level or not tensor.name or tensor.name in self._taken:
            return False
        array = words.view(dtype).reshape(tuple(tensor.dims))
        if array.ctypes.data % _ALIGNMENT:
            array = array.copy()  # raw blocks are views into the file at any offset; kernels expect alignment
        self._taken.add(tensor.name)
        self.names.append(tensor.name)
        self.arrays.append(array)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", _PLACEHOLDER), ("length", str(words.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        return True

    def session(self, model: bytes, label: str, provider: str, *, intra_op_threads: int | None = None,
                graph_optimization: object = "all") -> ort.InferenceSession:
        """A :func:`onnxcomp.session.create_session` session with the collected arrays as external initializers."""
        import onnxruntime as ort

        from onnxcomp.session import create_session

        values = [ort.OrtValue.ortvalue_from_numpy(array) for array in self.arrays]
        kept: list[ort.SessionOptions] = []

        def hand_over(options: ort.SessionOptions) -> None:
            kept.append(options)
            if values:
                options.add_external_initializers(self.names, values)

        session = create_session(model, provider, intra_op_threads=intra_op_threads,
                                 graph_optimization=graph_optimization,  # type: ignore[arg-type]
                                 configure=hand_over, label=label)
        session.onnxc_weights = (self.arrays, values, kept)  # type: ignore[attr-defined]
        return session

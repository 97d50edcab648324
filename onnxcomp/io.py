"""Loading and saving models without ever losing the user's files.

Why this module exists instead of calling ``onnx_ir.load``/``onnx_ir.save`` directly:

* Every failure a user can cause (missing file, a file that is not ONNX, a truncated file, external data
  pointing outside the model's folder) must become one clear :class:`InputError`, not a protobuf traceback.
* External-data locations are attacker-controlled strings inside the file: ``../../etc/passwd`` or an
  absolute path must be refused before anything is memory-mapped.
* Writes are atomic: the model (and its external data) is written into a temporary folder next to the
  destination and renamed into place, so an interrupted run never leaves a half-written file, and the input
  is never overwritten unless the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxcomp.errors import InputError, OutputError

#: Protobuf cannot serialise a message of 2 GiB or more; above this many tensor bytes we write external data.
PROTOBUF_LIMIT = 2**31 - 1
_EXTERNAL_DATA_THRESHOLD = int(1.8 * 2**30)


def load(path: str | os.PathLike[str]) -> ir.Model:
    """Load an ONNX model into onnx-ir, validating it and its external data first.

    External tensors stay lazy (memory-mapped on first use), so loading a multi-GiB model is cheap.

    A packed ``.onnxc`` file (recognised by its magic bytes, whatever its suffix) is decoded in memory.

    Raises:
        InputError: the file is missing, is not an ONNX model, is truncated, or references external data
            that is missing, too short, or outside the model's folder; or it is a corrupt packed file.
    """
    model_path = Path(path)
    from onnxcomp.packing import api as packing  # imported here: the packing package itself uses this module

    if packing.is_packed_file(model_path):
        return packing.load_packed(model_path)
    proto = _read_proto(model_path)
    for tensor in _all_tensor_protos(proto.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external_tensor(tensor, model_path)
    model = ir.serde.deserialize_model(proto)
    ir.external_data.set_base_dir(model.graph, str(model_path.parent))
    return model


def _read_proto(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a valid ONNX model ({reason})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # A file cut at a field boundary can still parse; what it loses first is the graph's tail and the
    # opset imports, which are serialised after the graph.
    if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.opset_import:
        raise InputError(f"{path}: not a valid ONNX model (no graph, IR version or opset: truncated?)")
    return proto


def _all_tensor_protos(graph: onnx.GraphProto):
    """Yield every TensorProto of a graph, including Constant nodes' and subgraphs' tensors."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensor_protos(attr.g)
            for sub in attr.graphs:
                yield from _all_tensor_protos(sub)


def _check_external_tensor(tensor: onnx.TensorProto, model_path: Path) -> None:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    where = f"{model_path}: tensor {tensor.name!r}"
    if not location:
        raise InputError(f"{where} is marked external but names no location")
    if os.path.isabs(location) or Path(location).is_absolute():
        raise InputError(f"{where} refers to an absolute external-data path {location!r}; refused")
    if ".." in Path(location).parts:
        raise InputError(f"{where} refers to external data outside the model's folder ({location!r}); refused")
    base = model_path.resolve().parent
    data_path = (base / location).resolve()
    if not data_path.is_relative_to(base):
        raise InputError(f"{where} refers to external data outside the model's folder ({location!r}); refused")
    if not data_path.is_file():
        raise InputError(f"{where} needs external data file {location!r}, which is missing")
    end = int(info.get("offset", 0)) + int(info.get("length", 0))
    if end > data_path.stat().st_size:
        raise InputError(f"{where} reads past the end of {location!r} (truncated external data?)")


def check_output_path(output: str | os.PathLike[str], *, inputs: tuple[str | os.PathLike[str], ...] = (),
                      overwrite: bool = False) -> Path:
    """Refuse an output that would clobber an input or cannot be written, before any work is done.

    Calling this up front (the CLI does) means a long optimisation never ends in "cannot write".

    Raises:
        OutputError: the output equals one of ``inputs`` (and ``overwrite`` is false), its folder does not
            exist or is not writable, or it names an existing folder.
    """
    out = Path(output)
    for source in inputs:
        if _same_file(out, Path(source)) and not overwrite:
            raise OutputError(f"{out}: output is the input model; choose another path or pass --force")
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputError(f"{out}: is a folder, expected a file path")
    if not folder.is_dir():
        raise OutputError(f"{out}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: output folder {folder} is not writable")
    return out


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def tensor_bytes(model: ir.Model) -> int:
    """Bytes of tensor data held by initializers of all graphs (what would go to external data)."""
    return sum(
        value.const_value.nbytes
        for graph in model.graphs()
        for value in graph.initializers.values()
        if value.const_value is not None
    )


def save(model: ir.Model, path: str | os.PathLike[str], *, external_data: bool | None = None,
         overwrite: bool = False, source: str | os.PathLike[str] | None = None) -> Path:
    """Save a model atomically; large models get their weights in ``<name>.data`` next to the file.

    Args:
        model: the model to write. It is not modified.
        path: destination ``.onnx`` path.
        external_data: ``True`` writes weights to ``<file name>.data`` beside the model, ``False`` embeds them,
            ``None`` (default) decides: external when the model was loaded with external data or when its
            tensors approach protobuf's 2 GiB limit.
        overwrite: allow ``path`` to be the file the model came from (``source``).
        source: the input model's path, so that it is never overwritten by accident.

    Returns:
        The path written.

    Raises:
        OutputError: the destination is the source (without ``overwrite``), or cannot be written.
    """
    out = check_output_path(path, inputs=(source,) if source is not None else (), overwrite=overwrite)
    if external_data is None:
        external_data = _has_external_tensors(model) or tensor_bytes(model) > _EXTERNAL_DATA_THRESHOLD
    data_name = out.name + ".data"
    folder = out.parent if str(out.parent) else Path(".")
    staging: Path | None = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder))
        staged_model = staging / out.name
        if external_data:
            ir.save(model, staged_model, external_data=data_name)
        else:
            ir.save(model, staged_model)
        staged_data = staging / data_name
        if staged_data.exists():
            os.replace(staged_data, folder / data_name)
        os.replace(staged_model, out)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:
        if "2GiB" in str(exc) or "2GB" in str(exc) or "larger than" in str(exc):
            raise OutputError(f"{out}: model exceeds protobuf's 2 GiB limit; save with external data") from None
        raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _has_external_tensors(model: ir.Model) -> bool:
    return any(
        isinstance(value.const_value, ir.ExternalTensor)
        for graph in model.graphs()
        for value in graph.initializers.values()
    )


def serialize(model: ir.Model) -> bytes:
    """The model as ONNX bytes, for handing to onnxruntime without touching the disk.

    Raises:
        ValueError: the model is too large for one protobuf message (save it and load by path instead).
    """
    proto = ir.serde.serialize_model(model)
    size = proto.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise ValueError(f"model is {size} bytes, over protobuf's 2 GiB limit")
    return proto.SerializeToString()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb"):
    """Open a temporary file beside ``path`` and rename it over ``path`` only if the block succeeds.

    For reports and other outputs that are not models (models go through :func:`save`).
    """
    out = Path(path)
    folder = out.parent if str(out.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

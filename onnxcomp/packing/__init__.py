"""The packed ``.onnxc`` container and its entropy codecs (lossless weight storage).

``pack(model) -> bytes`` and ``unpack(bytes) -> ir.Model`` work in memory; ``pack_file``/``unpack_file``
handle paths and external data; ``open_session`` runs a packed file without unpacking it to disk. The byte
layout is documented in docs/FORMAT.md.
"""

from onnxcomp.packing.api import (
    PackReport,
    UnpackReport,
    is_packed_file,
    load_packed,
    open_session,
    pack,
    pack_file,
    pack_with_report,
    unpack,
    unpack_file,
    unpack_proto,
)

__all__ = [
    "PackReport",
    "UnpackReport",
    "is_packed_file",
    "load_packed",
    "open_session",
    "pack",
    "pack_file",
    "pack_with_report",
    "unpack",
    "unpack_file",
    "unpack_proto",
]

"""Real files on disk for the file-type models: the Python standard library and this environment's site-packages.

Both trees hold many formats next to source code (JSON, XML, HTML, CSV, PEM, WAV, PNG, GIF, ZIP, gzip, xz, tar,
ELF shared objects, PE launchers, NumPy arrays, pickles, ONNX files...). Files are listed by sorted path within
each root, shuffled per extension by a seeded generator, then dealt out alternately to the two splits, so
calibration and evaluation never share a file and a run on the same environment picks the same files.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path

import numpy as np

#: File name endings to draw from, roughly one per content type a detector should tell apart.
EXTENSIONS = ("py", "pyi", "pyc", "c", "h", "cpp", "hpp", "f90", "pyx", "json", "xml", "html", "txt", "csv", "rst",
              "md", "toml", "yaml", "ini", "css", "js", "pem", "jinja", "proto", "bat", "sh", "ps1", "so", "exe",
              "onnx", "pb", "npy", "npz", "pkl", "mat", "wav", "aiff", "au", "png", "gif", "jpg", "bmp", "tiff",
              "webp", "ico", "gz", "bz2", "xz", "zip", "tar", "whl", "dectest")


def roots() -> tuple[Path, ...]:
    """The standard library (without the base interpreter's own site-packages) and this environment's packages."""
    paths = sysconfig.get_paths()
    found = []
    for key in ("stdlib", "purelib", "platlib"):
        path = Path(paths[key])
        if path.is_dir() and path not in found:
            found.append(path)
    return tuple(found)


@cache
def catalogue(extensions: tuple[str, ...] = EXTENSIONS) -> dict[str, tuple[Path, ...]]:
    """Regular files per extension (lower-cased), in sorted path order, each real file once."""
    wanted = set(extensions)
    by_ext: dict[str, list[tuple[int, str, Path]]] = {e: [] for e in extensions}
    seen: set[str] = set()
    all_roots = roots()
    for rank, root in enumerate(all_roots):
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            # the base interpreter's site-packages differs from machine to machine (the venv's is a root of its own);
            # bytecode outside the standard library is written on import, so it would change what gets picked
            dirs[:] = sorted(d for d in dirs if (d != "site-packages" or here / d in all_roots)
                             and (d != "__pycache__" or rank == 0))
            for name in names:
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                path = here / name
                if ext not in wanted or path.is_symlink() or not path.is_file():
                    continue
                real = os.path.realpath(path)
                if real not in seen:
                    seen.add(real)
                    by_ext[ext].append((rank, str(path.relative_to(root)), path))
    return {e: tuple(p for *_, p in sorted(items)) for e, items in by_ext.items()}


def pick(split: str, count: int, *, extensions: Sequence[str] = EXTENSIONS, seed: int = 0,
         accept: Callable[[Path], bool] | None = None) -> list[Path]:
    """``count`` files of the split, taking the extensions in turn so every stretch of the list mixes formats.

    ``accept`` filters files (e.g. too short for the model); rejected files are skipped, not moved to the other
    split.
    """
    if split not in ("calib", "eval"):
        raise ValueError(f"split must be 'calib' or 'eval', not {split!r}")
    files = catalogue(tuple(extensions))
    queues = [_dealt(files[ext], split, seed, index, accept) for index, ext in enumerate(extensions)]
    out: list[Path] = []
    while len(out) < count and queues:
        live = []
        for queue in queues:
            path = next(queue, None)
            if path is not None and len(out) < count:
                out.append(path)
                live.append(queue)
        queues = live
    if len(out) < count:
        raise RuntimeError(f"only {len(out)} files found for {split!r}, {count} wanted")
    return out


def _dealt(files: Sequence[Path], split: str, seed: int, index: int,
           accept: Callable[[Path], bool] | None) -> Iterator[Path]:
    """The split's half of one extension's files, shuffled; lazy, so only the files taken are read by ``accept``."""
    order = np.random.default_rng([seed, index]).permutation(len(files))
    for i in order[(0 if split == "calib" else 1) :: 2]:
        if accept is None or accept(files[i]):
            yield files[i]

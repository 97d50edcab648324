"""Packaging: the built wheel holds every folder of code, with passes/ as onnxcomp.passes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _code_folders() -> set[str]:
    """Every folder under onnxcomp/ and passes/ that holds Python code, as its package path in the wheel."""
    folders = set()
    for source_root, package in ((ROOT / "onnxcomp", "onnxcomp"), (ROOT / "passes", "onnxcomp/passes")):
        for module in source_root.rglob("*.py"):
            relative = module.parent.relative_to(source_root)
            folders.add(package if str(relative) == "." else f"{package}/{relative.as_posix()}")
    return folders


@pytest.mark.slow
def test_wheel_contains_every_code_folder(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("onnxcomp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {name.rsplit("/", 1)[0] for name in names if name.endswith(".py")}
    missing = _code_folders() - packaged
    assert not missing, f"code folders missing from the wheel (add them to [tool.setuptools] packages): {missing}"
    assert "onnxcomp/passes/cleanup.py" in names
    assert not any(name.startswith("passes/") for name in names), "a top-level 'passes' package must not ship"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "onnxcomp = onnxcomp.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

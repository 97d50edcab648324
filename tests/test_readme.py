"""The README's promises: its two fresh-machine commands exist, and its Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_first_screen_has_the_two_fresh_machine_commands():
    first_screen = "\n".join(README.splitlines()[:15])
    assert "make demo" in first_screen and "make test" in first_screen
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_python_api_example_runs(monkeypatch: pytest.MonkeyPatch):
    (block,) = re.findall(r"## Python API\n\n```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["check"].passed
    assert namespace["out"].exists()

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
    assert "onnxcomp optimize" in makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_python_api_example_runs_as_written(monkeypatch: pytest.MonkeyPatch):
    """load → passes → check → save, then a preset under a budget, exactly as the README shows it."""
    (block,) = re.findall(r"## Python API\n\n```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["check"].passed and namespace["out"].exists()
    assert "pass: quantize" in namespace["recipe_yaml"]
    assert [r.name for r in namespace["report"].passes] == ["cleanup", "quantize"]
    assert namespace["result"].budget_met
    assert namespace["out"].with_name("report.html").read_text().count('class="plot"') >= 5

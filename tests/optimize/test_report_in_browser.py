"""The HTML report opened in a real headless Chromium: every plot is in the rendered DOM, nothing is fetched.

Chromium comes from Debian's ``chromium`` package (``make test`` installs it when missing); without it the
test is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support import FIXTURES, fixture_path

from onnxcomp.cli import run

PLOTS = ["size-by-stage", "layer-sparsity", "channels-kept", "error-logits", "latency", "sensitivity"]
RECIPE = """\
budget: {min_cosine: 0.9999999}   # so tight that quantization must rank its kernels (the sensitivity plot)
passes:
  - pass: cleanup
    exact: true
  - pass: prune
    config: {sparsity: 0.5}
    fallbacks: [{sparsity: 0.01}]
  - pass: quantize
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    reason = "Chromium not found (Debian: apt-get install chromium; `make test` installs it)"
    if os.environ.get("CI"):  # CI installs it: a missing browser there is a broken setup, not a reason to skip
        pytest.fail(reason)
    pytest.skip(reason)


def _browser(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    recipe = folder / "tight.yaml"
    recipe.write_text(RECIPE)
    out = folder / "report.html"
    code = run(["optimize", str(fixture_path("lenet300")), "--recipe", str(recipe), "--data",
                str(FIXTURES / "lenet300.calib.npz"), "--batch-size", "64", "--runs", "10", "-q",
                "-o", str(folder / "out.onnx"), "--report", str(out)])
    assert code == 0
    return out


def test_report_is_self_contained(report: Path):
    text = report.read_text()
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", text), "the report must not load anything"


def test_plots_render_in_headless_chromium(report: Path, tmp_path: Path):
    result = _browser(["--dump-dom", report.as_uri()], tmp_path / "profile")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for plot in PLOTS:
        match = re.search(rf'<svg[^>]*data-plot="{plot}".*?</svg>', dom, re.S)
        assert match, f"plot {plot} missing from the rendered DOM"
        assert match.group(0).count("<rect") >= 1, f"plot {plot} has no bars"
    assert "Budget kept" in dom


def test_screenshot_is_not_blank(report: Path, tmp_path: Path):
    shot = tmp_path / "shot.png"
    result = _browser(["--window-size=1000,2400", f"--screenshot={shot}", report.as_uri()], tmp_path / "profile")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few KB

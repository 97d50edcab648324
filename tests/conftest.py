"""Fixtures shared by all tests (helpers that tests import live in support.py)."""

from __future__ import annotations

import json

import pytest
from support import FIXTURES


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())

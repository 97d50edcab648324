"""Fixtures for the check tests; the model builders live in ``check_models``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from check_models import IN_FEATURES, Models


@pytest.fixture
def models(tmp_path: Path) -> Models:
    return Models(tmp_path)


@pytest.fixture
def feeds() -> list[dict[str, np.ndarray]]:
    """Three batches of four rows for the classifier."""
    rng = np.random.default_rng(42)
    return [{"x": rng.standard_normal((4, IN_FEATURES)).astype(np.float32)} for _ in range(3)]

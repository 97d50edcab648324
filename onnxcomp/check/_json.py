"""JSON-safe numbers for reports.

``json.dumps`` writes ``NaN``/``Infinity`` tokens that strict parsers (jq, JavaScript, most CI
tooling) reject. Reports therefore map non-finite floats before serialising:

* ``+inf`` → the string ``"inf"`` and ``-inf`` → ``"-inf"``: an infinite SNR means "identical"
  and must stay distinguishable from "unknown"; ``float("inf")`` reads the string back;
* ``NaN`` → ``None`` (``null``): the value is undefined.
"""

from __future__ import annotations

import math


def json_float(value: float | None) -> float | str | None:
    """Return ``value`` as something ``json.dumps(..., allow_nan=False)`` accepts."""
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)

"""Progress bars on stderr, for loops a person would otherwise stare at (evaluation, latency, steps).

They appear only when stderr is a terminal and the user did not ask for quiet: a log file or a CI job gets no
carriage-return noise, and ``--json`` on stdout is never touched.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

_WIDTH = 24


class Progress:
    """A one-line bar, e.g. ``latency  [#########.......]  30/80``; a no-op when disabled.

    Use as a context manager and call :meth:`advance` per item; the line is cleared at the end.
    """

    def __init__(self, label: str, total: int | None, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and _is_terminal(self.stream)
        self.label = label
        self.total = total
        self.done = 0
        self._last = 0.0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def advance(self, count: int = 1) -> None:
        self.done += count
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1 and self.done != self.total:
            return  # redrawing more often than 10 times a second costs more than it shows
        self._last = now
        if self.total:
            filled = min(_WIDTH, round(_WIDTH * self.done / self.total))
            text = f"{self.label:<12} [{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done}/{self.total}"
        else:
            text = f"{self.label:<12} {self.done}"
        self.stream.write("\r\033[K" + text)
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams (pytest capture) are not terminals
        return False

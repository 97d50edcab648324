"""Progress bars: drawn on a terminal, never on a pipe or a log, never with -q."""

from __future__ import annotations

import io

from onnxcomp.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_and_clears_on_a_terminal():
    stream = _Terminal()
    with Progress("latency", 4, stream=stream) as bar:
        for _ in range(4):
            bar.advance()
    text = stream.getvalue()
    assert "latency" in text and "4/4" in text and "[" + "#" * 24 + "]" in text
    assert text.endswith("\r\033[K")  # the line is cleared, leaving stderr clean for the summary


def test_no_bar_on_a_pipe_or_when_quiet():
    pipe = io.StringIO()
    with Progress("latency", 4, stream=pipe) as bar:
        bar.advance(4)
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    with Progress("latency", 4, enabled=False, stream=terminal) as bar:
        bar.advance(4)
    assert terminal.getvalue() == ""


def test_unknown_total_counts_up():
    stream = _Terminal()
    with Progress("calibrating", None, stream=stream) as bar:
        bar.advance(3)
    assert "calibrating" in stream.getvalue()

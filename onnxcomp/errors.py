"""Errors that reach the user as one line and a documented exit code.

The CLI catches :class:`OnnxcompError` and prints ``onnxcomp: error: <message>`` with the
error's ``exit_code``; anything else is a bug and exits 3. Library users get ordinary
exceptions they can catch by class.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class OnnxcompError(Exception):
    """Base of every error onnxcomp raises on purpose."""

    exit_code: int = EXIT_INTERNAL


class InputError(OnnxcompError, ValueError):
    """The user gave something unusable: a missing file, a broken model, mismatched data."""

    exit_code = EXIT_BAD_INPUT


class OutputError(OnnxcompError):
    """The output cannot be written where asked (same as the input, unwritable folder)."""

    exit_code = EXIT_BAD_INPUT


class MissingRequirementError(OnnxcompError):
    """A pass needs something the pipeline was not given (calibration data, a session)."""

    exit_code = EXIT_BAD_INPUT

"""The ``onnxcomp`` command line: the group, its subcommands (one module each), and error handling.

Subcommands live in ``onnxcomp/commands/``, one module each exposing a click command named ``command``; they
are discovered here. Human-readable output and progress go to stderr; ``--json`` prints exactly one JSON
document on stdout. Exit codes: 0 ok, 1 a gate failed, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback

import click

from onnxcomp import commands
from onnxcomp.commands.common import say
from onnxcomp.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, OnnxcompError


class _CommandFolder(click.Group):
    """A click group whose subcommands are the modules of ``onnxcomp.commands``, imported when used.

    Lazy loading keeps ``onnxcomp --help`` fast and means a new command is just a new module.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(info.name.replace("_", "-") for info in pkgutil.iter_modules(commands.__path__)
                      if not info.name.startswith("_") and info.name != "common")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        module = importlib.import_module(f"{commands.__name__}.{cmd_name.replace('-', '_')}")
        return module.command


@click.group(cls=_CommandFolder, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onnxcomp")
def cli() -> None:
    """Compress ONNX models and check the result with onnxruntime."""


# -- entry point ------------------------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code; our errors become one line on stderr.

    Anything that is not an :class:`OnnxcompError` is a bug: exit 3, with the traceback only when
    ``ONNXCOMP_DEBUG`` is set.
    """
    try:
        result = cli.main(args=argv, prog_name="onnxcomp", standalone_mode=False)
    except click.ClickException as exc:  # usage errors: one line too, with where to look for help
        say(f"onnxcomp: error: {exc.format_message()} (see 'onnxcomp --help')")
        return exc.exit_code
    except click.exceptions.Abort:
        say("onnxcomp: aborted; nothing was written")
        return EXIT_BAD_INPUT
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    except OnnxcompError as exc:
        say(f"onnxcomp: error: {exc}")
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("ONNXCOMP_DEBUG"):
            traceback.print_exc()
        detail = str(exc).splitlines()[0] if str(exc) else ""
        say(f"onnxcomp: internal error: {type(exc).__name__}: {detail} "
             "(set ONNXCOMP_DEBUG=1 for the traceback, and please report it)")
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())

"""The ``gdyn`` command: ``list``, ``analyze``, ``sweep`` and ``reproduce``.

Each subcommand lives in ``gdyn_jax.commands.<name>`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import only light modules
at their top, and reach numpy, jax and matplotlib when ``run`` runs (through ``gdyn_jax``'s lazy
subpackage attributes, :mod:`gdyn_jax.extras` or a helper of :mod:`gdyn_jax.commands`), so
that ``gdyn --help`` is instant. While a command runs, the working directory is at the front
of ``sys.path`` (as with ``python -m``), so import paths such as ``--optimizer rules:qhm``
find a ``rules.py`` beside the user. User errors (``ValueError``, ``KeyError``,
``FileNotFoundError``) become a one-line message and exit status 2, other ``OSError`` errors (a
full disk, a permission) a one-line message and status 1; set ``GDYN_DEBUG=1`` for the
traceback. Output into a closed pipe (``gdyn list | head -3``) ends quietly with the status of
SIGPIPE, 141.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

COMMANDS = ("list", "analyze", "sweep", "reproduce")


def _command_module(name: str):
    return importlib.import_module(
        f"gdyn_jax.commands.{name}_" if name == "list" else f"gdyn_jax.commands.{name}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdyn",
        description="Learning dynamics of gradient-descent optimizers as control systems.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command_module(name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def _error_message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


@contextlib.contextmanager
def _working_directory_importable() -> Iterator[None]:
    """The working directory first on ``sys.path`` for the duration of a command."""
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, cwd)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(cwd)


def _stdout_closed() -> int:
    """The reader of our output went away (``gdyn list | head -3``): stop quietly.

    As Python's documentation recommends, the rest of the output goes to ``/dev/null`` (so
    that flushing at exit does not fail again); the status is the shell's for SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


@contextlib.contextmanager
def _messages_on_stderr(command: str) -> Iterator[None]:
    """The library's INFO messages (a resumed sweep, a stale lock taken over) on stderr."""
    logger = logging.getLogger("gdyn_jax")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"gdyn {command}: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _working_directory_importable(), _messages_on_stderr(args.command):
            status = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except (ValueError, KeyError, OSError) as error:
        if os.environ.get("GDYN_DEBUG"):
            raise
        message = " ".join(_error_message(error).split())
        print(f"gdyn {args.command}: error: {message}", file=sys.stderr)
        # Bad input (a usage error) is 2; a failing disk or filesystem is 1.
        usage = not isinstance(error, OSError) or isinstance(error, FileNotFoundError)
        return 2 if usage else 1


if __name__ == "__main__":
    sys.exit(main())

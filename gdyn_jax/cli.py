"""The ``gdyn`` command: ``list``, ``analyze``, ``sweep`` and ``reproduce``.

Each subcommand lives in ``gdyn_jax.commands.<name>`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen inside ``run`` so
that ``gdyn --help`` is instant. While a command runs, the working directory is at the front
of ``sys.path`` (as with ``python -m``), so import paths such as ``--optimizer rules:qhm``
find a ``rules.py`` beside the user. User errors (``ValueError``, ``KeyError``,
``FileNotFoundError``) become a one-line message and exit status 2; set ``GDYN_DEBUG=1`` for
the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _working_directory_importable():
            return int(args._run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as error:
        if os.environ.get("GDYN_DEBUG"):
            raise
        message = " ".join(_error_message(error).split())
        print(f"gdyn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

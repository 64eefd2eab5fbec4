"""The ``gdyn`` command: ``list``, ``analyze``, ``sweep`` and ``reproduce``.

Each subcommand lives in ``gdyn_jax.commands.<name>`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports happen inside ``run`` so
that ``gdyn --help`` is instant. User errors (``ValueError``, ``KeyError``,
``FileNotFoundError``) become a one-line message and exit status 2; set ``GDYN_DEBUG=1`` for
the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as error:
        if os.environ.get("GDYN_DEBUG"):
            raise
        message = " ".join(_error_message(error).split())
        print(f"gdyn {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

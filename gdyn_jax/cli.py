"""The ``gdyn`` command: ``list``, ``analyze``, ``sweep``, ``preflight``, ``predict``, ``plot``
and ``reproduce``.

Each subcommand lives in ``gdyn_jax.commands.<name>`` and exposes ``HELP`` (one line),
``EXAMPLES`` (shown at the end of its ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``. Command modules import only light modules
at their top, and reach numpy, jax and matplotlib when ``run`` runs (through ``gdyn_jax``'s lazy
subpackage attributes, :mod:`gdyn_jax.extras` or a helper of :mod:`gdyn_jax.commands`), so
that ``gdyn --help`` is instant. While a command runs, the working directory is at the front
of ``sys.path`` (as with ``python -m``), so import paths such as ``--optimizer rules:qhm``
find a ``rules.py`` beside the user. User errors (``ValueError``, ``KeyError``,
``FileNotFoundError``) become a one-line message and exit status 2, other ``OSError`` errors (a
full disk, a permission) a one-line message and status 1; set ``GDYN_DEBUG=1`` for the
traceback. Output into a closed pipe (``gdyn list | head -3``) ends quietly with the status of
SIGPIPE, 141. ``gdyn --version`` prints the versions of gdyn_jax, jax and jaxlib.

JAX's persistent compilation cache is on while a command runs (compiled programs are kept on
disk, so a second ``gdyn analyze`` does not compile again): in ``$GDYN_COMPILATION_CACHE`` if
set (``0`` turns it off), else in the user's cache folder (``$XDG_CACHE_HOME/gdyn_jax/jax``,
``~/.cache/gdyn_jax/jax``). A cache the user set up for JAX (``$JAX_COMPILATION_CACHE_DIR``)
is used as it is, with JAX's own settings; so is one configured before the command ran.

On CPU the commands that train (``sweep``, ``reproduce``) use every core: before they run,
``gdyn_jax.sweep`` is imported, which asks JAX for one CPU device per core unless the user set
a device count (``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS``; see ``gdyn_jax.sweep.cores``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import gdyn_jax

COMMANDS = ("list", "analyze", "sweep", "preflight", "predict", "plot", "reproduce")

EPILOG = """\
examples:
  gdyn list optimizers
  gdyn analyze momentum --hp learning_rate=0.1 --hp beta=0.9 --curvature 1.0
  gdyn sweep --optimizer momentum --grid learning_rate=0.01,0.1 --out runs/demo --plot demo.png
  gdyn predict --model fc --loss mse --optimizer sgd --hp learning_rate=0.02 --check
  gdyn plot runs/demo --out demo.png
  gdyn reproduce all --quick --out runs/quick

`gdyn COMMAND --help` describes each command. Names of optimizers, models, datasets and losses
may be import paths `pkg.module:attr` (the working directory is importable).
environment:
  GDYN_DATA_DIR            datasets (else $TFDS_DATA_DIR, else ~/tensorflow_datasets)
  GDYN_COMPILATION_CACHE   JAX's compilation cache folder (0: off; default
                           ~/.cache/gdyn_jax/jax, or $JAX_COMPILATION_CACHE_DIR if set)
  GDYN_DEBUG=1             a traceback instead of the one-line error
  JAX_NUM_CPU_DEVICES      CPU devices (default for sweep/reproduce: one per core)
"""

#: The commands that train networks: they start JAX with one CPU device per core.
_TRAINING = ("sweep", "reproduce")

#: Values of $GDYN_COMPILATION_CACHE that turn the cache off.
_OFF = ("0", "off", "false", "no", "none")


def _command_module(name: str):
    return importlib.import_module(
        f"gdyn_jax.commands.{name}_" if name == "list" else f"gdyn_jax.commands.{name}"
    )


class _Version(argparse.Action):
    """``--version``: the versions, read from the installed distributions when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parts = []
        for dist in ("jax", "jaxlib"):
            try:
                parts.append(f"{dist} {importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                parts.append(f"{dist} not installed")
        print(f"gdyn {gdyn_jax.__version__} ({', '.join(parts)})")  # on stdout, as argparse's
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gdyn",
        description="Learning dynamics of gradient-descent optimizers as control systems.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the versions and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command_module(name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.HELP,
            epilog=getattr(module, "EXAMPLES", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
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


def cache_folder() -> Path | None:
    """Where ``gdyn`` keeps JAX's compilation cache by default (None: off; see the module doc)."""
    choice = os.environ.get("GDYN_COMPILATION_CACHE")
    if choice is not None:
        return None if choice.strip().lower() in (*_OFF, "") else Path(choice).expanduser()
    if sys.platform == "darwin":
        base = Path("~/Library/Caches").expanduser()
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path("~/AppData/Local").expanduser())
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser())
    return base / "gdyn_jax" / "jax"


@contextlib.contextmanager
def _compilation_cache() -> Iterator[None]:
    """JAX's persistent compilation cache in :func:`cache_folder` for the command (unless the
    user set one up, or jax was imported already: its settings are then left alone).

    JAX reads ``$JAX_COMPILATION_CACHE_DIR`` and the minimum compile time of a cached program
    when it is imported, which a command does when it runs: the variables are set for that
    and restored afterwards. Every program is cached (minimum compile time 0): ``gdyn
    analyze`` compiles some sixty small ones, each far under JAX's default of 1 s.
    """
    folder = cache_folder()
    if folder is None or "jax" in sys.modules or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        yield
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:  # a read-only home: run without the cache
        yield
        return
    settings = {
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update({k: v for k, v in settings.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def _cpu_devices(command: str) -> None:
    """Before a training command, every core (``gdyn_jax.sweep.cores``): the sweep package is
    imported (its import sets the device default, before any JAX operation)."""
    if command in _TRAINING:
        gdyn_jax.sweep  # noqa: B018 (the lazy import is the point)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with (
            _working_directory_importable(),
            _messages_on_stderr(args.command),
            _compilation_cache(),
        ):
            _cpu_devices(args.command)
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

"""Subcommands of the ``gdyn`` command line, one module each (see ``gdyn_jax.cli``).

A command's module holds its arguments and its ``run``, and imports only the standard library
and the package's light modules at its top: ``gdyn --help`` imports them all. What a command
computes with numpy, jax or matplotlib is reached when it runs, through ``gdyn_jax.<subpackage>``
(the package's lazy attributes), :mod:`gdyn_jax.extras`, or a helper module of this package
named in ``_HELPERS`` (e.g. :mod:`gdyn_jax.commands.closed_loop` for ``gdyn analyze``,
:mod:`gdyn_jax.commands.sweep_figure` for ``gdyn plot``), which this package's ``__getattr__``
imports on first access.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_HELPERS = ("closed_loop", "sweep_figure")


def __getattr__(name: str) -> ModuleType:
    if name in _HELPERS:
        return importlib.import_module(f"gdyn_jax.commands.{name}")
    raise AttributeError(f"module 'gdyn_jax.commands' has no attribute {name!r}")

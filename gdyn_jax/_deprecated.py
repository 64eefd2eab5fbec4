"""Old import paths of moved public names, kept for one release with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forwarder(old: str, *new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the old module ``old`` that forwards to the modules ``new``.

    A name is looked up in each of ``new`` in turn (a module whose names went to several
    places lists them all); the first that has it answers, with a ``DeprecationWarning`` naming
    the new path. The targets are imported on first use, so the old module stays cheap.
    """
    if not new:
        raise TypeError("forwarder: expected at least one target module")

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for module in new:
            target = importlib.import_module(module)
            if hasattr(target, name):
                break
        else:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} moved to {module}.{name}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(target, name)

    return __getattr__

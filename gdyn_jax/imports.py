"""Objects named by import paths (``pkg.module:attr``), and the paths that name objects.

Wherever gdyn_jax takes the name of an optimizer, a model, a loss or a dataset it also takes
an import path ``"pkg.module:attr"`` (``attr`` may be dotted, ``"pkg.module:Outer.inner"``).
The path is imported with :func:`importlib.import_module` from the current ``sys.path``; the
``gdyn`` command line puts the working directory at the front of ``sys.path`` first, as
``python -m`` does, so a ``rules.py`` beside the user is importable as ``rules:qhm``.

:func:`path_of` goes the other way: the ``module:qualname`` of a function or class (or of an
instance's class), used to record in results which object was swept. A record of an object
defined in ``__main__`` or inside a function (``<locals>`` in its name) describes it but
cannot be imported back.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

__all__ = ["is_import_path", "load", "path_of"]


def is_import_path(text: Any) -> bool:
    """Whether ``text`` is a string of the form ``module:attr``."""
    return isinstance(text, str) and ":" in text


def load(path: str, what: str) -> Any:
    """The object at ``path`` (``"pkg.module:attr"``); a one-line ``ValueError`` naming ``what``.

    Raises ``ValueError`` when the path is malformed, the module cannot be imported (the
    message carries the import error) or it has no such attribute.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr or "<" in attr:
        raise ValueError(f"{what}: {path!r} is not an importable path 'pkg.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module, reported in one line
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{what}: cannot import module {module_name!r} ({first})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def path_of(obj: Any) -> str:
    """``module:qualname`` of a function or class, of an instance's class, or of a partial.

    A ``functools.partial`` is written ``functools.partial(module:qualname, k=v, ...)`` (a
    description, not an importable path).
    """
    if isinstance(obj, functools.partial):
        args = [path_of(obj.func), *map(repr, obj.args)]
        args += [f"{k}={v!r}" for k, v in sorted(obj.keywords.items())]
        return f"functools.partial({', '.join(args)})"
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(target, "__module__", None) or "<unknown>"
    return f"{module}:{target.__qualname__}"

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
from collections.abc import Mapping
from typing import Any

from gdyn_jax.errors import UsageError

__all__ = ["is_import_path", "load", "load_callable", "path_of", "resolve"]


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
        raise UsageError(f"{what}: {path!r} is not an importable path 'pkg.module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as error:  # any failure of the user's module, reported in one line
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"{what}: cannot import module {module_name!r} ({first})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_callable(path: str, what: str) -> Any:
    """:func:`load`, and a one-line ``ValueError`` naming ``what`` unless the object is callable."""
    obj = load(path, what)
    if not callable(obj):
        raise UsageError(f"{what}: {path!r} is not callable (got {type(obj).__name__})")
    return obj


def resolve(spec: Any, what: str, named: Mapping[str, Any], example: str) -> Any:
    """A callable ``spec`` itself, the callable at an import path, or ``named[spec]``.

    A one-line ``ValueError`` naming ``what`` for an unknown name (listing ``named`` and an
    ``example`` path) or a path that cannot be imported or is not callable.
    """
    if callable(spec):
        return spec
    if is_import_path(spec):
        return load_callable(spec, what)
    if not isinstance(spec, str) or spec not in named:
        raise UsageError(
            f"{what}: unknown {what} {spec!r}; expected one of {', '.join(named)} or an "
            f"import path {example!r}"
        )
    return named[spec]


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

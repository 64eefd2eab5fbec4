"""The local Sphinx extension of the gdyn_jax documentation.

- ``api``, ``notebooks``, ``results``: the generated pages (``docs/conf.py`` calls them when a
  build starts);
- references through any import path: a name is documented once, at its public path
  (``gdyn_jax.measurements.top_eigenvalue``), and a docstring that names it through the module
  that defines it (``gdyn_jax.measurements.hessian.top_eigenvalue``) or an old path kept for one
  release links to that entry; a module without a page links to its nearest documented
  package.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MISSING = object()
_CACHE: dict[int, dict[int, str]] = {}


def _import(target: str) -> Any:
    """The object a dotted path names, or ``_MISSING``."""
    parts = target.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for cut in range(len(parts), 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                value = getattr(value, attr, _MISSING)
                if value is _MISSING:
                    return _MISSING
            return value
    return _MISSING


def _documented(domain) -> dict[int, str]:
    """``id(object) -> documented name`` for the package's documented functions and classes."""
    key = len(domain.objects)
    if key in _CACHE:
        return _CACHE[key]
    found = _CACHE[key] = {}
    for name, entry in domain.objects.items():
        if name.startswith("gdyn_jax.") and entry.objtype in ("function", "class"):
            value = _import(name)
            if value is not _MISSING:
                found.setdefault(id(value), name)
    return found


def resolve_alias(app, env, node, contnode):
    """``missing-reference``: a gdyn_jax name under another import path than its entry's."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("gdyn_jax."):
        return None
    domain = env.get_domain("py")
    value = _import(target)
    if value is _MISSING:
        return None
    if node.get("reftype") == "mod" or type(value).__name__ == "module":
        parts = target.split(".")
        for cut in range(len(parts) - 1, 1, -1):
            parent = ".".join(parts[:cut])
            if parent in domain.modules:
                return domain.resolve_xref(
                    env, node["refdoc"], app.builder, "mod", parent, node, contnode
                )
        return None
    documented = _documented(domain).get(id(value))
    if documented is None or documented == target:
        return None
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", documented, node, contnode)


def setup(app) -> dict[str, Any]:
    app.connect("missing-reference", resolve_alias)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

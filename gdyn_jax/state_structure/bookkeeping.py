"""Bookkeeping declared by the user, and the name-based fallback when the rule is not at hand.

:func:`register_bookkeeping` declares fields of a user's state class bookkeeping: never
dynamics, held fixed, with or without the rule. Without the rule, a leaf is taken as dynamic
when it is a float and no entry of its path is one of :data:`BOOKKEEPING_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BOOKKEEPING_FIELDS",
    "by_name_mask",
    "entry_name",
    "is_inexact",
    "register_bookkeeping",
    "registered_bookkeeping",
    "registered_mask",
]

#: Path entries (NamedTuple field names or dict keys) that mark a subtree as
#: bookkeeping in the name-based fallback (no rule given): optax's step counts,
#: ``inject_hyperparams``' ``hyperparams``/``hyperparams_states``, ``MultiSteps``
#: and ``apply_if_finite`` counters.
BOOKKEEPING_FIELDS: frozenset[str] = frozenset(
    {
        "count",
        "hyperparams",
        "hyperparams_states",
        "mini_step",
        "gradient_step",
        "notfinite_count",
        "last_finite",
        "total_notfinite",
        "step",
    }
)

_REGISTRY: dict[type, frozenset[str]] = {}


def register_bookkeeping(state_class: type, fields: Iterable[str]) -> type:
    """Declare fields of a NamedTuple state class bookkeeping: never dynamics, held fixed.

    An override on top of the classification:
    :func:`~gdyn_jax.state_structure.dynamic_state_mask` marks these fields ``False`` with or
    without the rule, and ``linearize`` holds them at their value (as it holds frozen leaves).
    Registering with no fields declares nothing. Returns the class, so it can be used after the
    class definition or as ``register_bookkeeping(MyState, ('scale',))``.

    Raises:
      TypeError: ``state_class`` is not a NamedTuple class.
      ValueError: a field is not one of the class's fields.
    """
    field_names = getattr(state_class, "_fields", None)
    if not isinstance(state_class, type) or field_names is None:
        raise TypeError(f"state_class: expected a NamedTuple class, got {state_class!r}")
    fields = frozenset(fields)
    unknown = sorted(fields - set(field_names))
    if unknown:
        raise ValueError(
            f"fields: {unknown} are not fields of {state_class.__name__} {tuple(field_names)}"
        )
    _REGISTRY[state_class] = fields
    return state_class


def registered_bookkeeping(state_class: type) -> frozenset[str] | None:
    """The registered bookkeeping fields of ``state_class`` (None if unregistered)."""
    return _REGISTRY.get(state_class)


def entry_name(entry: Any) -> Any:
    """The name of one entry of a pytree path: a field name or a dict key (None otherwise)."""
    for attr in ("name", "key"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return None


def is_inexact(leaf: Any) -> bool:
    """Whether a leaf (array, ``jax.ShapeDtypeStruct`` or Python number) is a float."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        dtype = np.asarray(leaf).dtype
    return bool(jnp.issubdtype(dtype, jnp.inexact))  # jnp: bfloat16 & co are inexact


def _is_registered(node: Any) -> bool:
    return type(node) in _REGISTRY


def _mark(state: Any, inside: Callable[[tuple, Any], bool]) -> Any:
    """Bools with ``state``'s structure: ``inside(path, leaf)`` for leaves outside registered
    bookkeeping fields, False under them."""

    def mark(path: tuple[Any, ...], node: Any, prefix: tuple = ()) -> Any:
        full = prefix + path
        if _is_registered(node):
            bookkeeping = _REGISTRY[type(node)]
            return type(node)(
                *(
                    jax.tree.map(lambda _: False, value)
                    if field in bookkeeping
                    else jax.tree_util.tree_map_with_path(
                        lambda p, n, f=field: mark(p, n, full + (f,)), value, is_leaf=_is_registered
                    )
                    for field, value in zip(node._fields, node, strict=True)
                )
            )
        return inside(full, node)

    return jax.tree_util.tree_map_with_path(mark, state, is_leaf=_is_registered)


def registered_mask(state: Any) -> list[bool]:
    """Flat list (``jax.tree.leaves`` order): is the leaf under a registered bookkeeping field?"""
    outside = _mark(state, lambda path, node: True)
    return [not flag for flag in jax.tree.leaves(outside)]


def _by_names(path: tuple[Any, ...], node: Any) -> bool:
    names = {entry_name(e) if not isinstance(e, str) else e for e in path}
    return is_inexact(node) and not (names & BOOKKEEPING_FIELDS)


def by_name_mask(state: Any) -> Any:
    """The name-based fallback, a pytree of bools with ``state``'s structure: a float leaf is
    dynamic unless an entry of its path is in :data:`BOOKKEEPING_FIELDS` or it lies under a
    registered bookkeeping field."""
    return _mark(state, _by_names)

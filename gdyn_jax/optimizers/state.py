"""Which optimizer-state leaves are dynamics and which are bookkeeping.

``linearize`` flattens the dynamic leaves (moments, traces, previous gradients)
into the state vector of the closed loop; bookkeeping leaves (step counts,
hyperparameters injected by :func:`optax.inject_hyperparams`, schedule states)
are held fixed, so they never show up as false poles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BOOKKEEPING_FIELDS",
    "dynamic_state_mask",
    "register_bookkeeping",
    "registered_bookkeeping",
]

#: Path entries (NamedTuple field names or dict keys) that mark a subtree as
#: bookkeeping wherever they occur in a state, whatever the state's class.
#: Covers optax's own states: step counts, ``inject_hyperparams``'
#: ``hyperparams``/``hyperparams_states``, ``MultiSteps`` and ``apply_if_finite``
#: counters.
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
    """Declare the bookkeeping fields of a NamedTuple state class.

    Fields listed here are marked ``False`` by :func:`dynamic_state_mask`, on top
    of the generic rules. Registering with no fields declares every inexact leaf
    of the class dynamic. Returns the class, so it can be used after the class
    definition or as ``register_bookkeeping(MyState, ('count',))``.

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


def _entry_name(entry: Any) -> Any:
    for attr in ("name", "key"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return None


def _is_inexact(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        dtype = np.asarray(leaf).dtype
    return bool(jnp.issubdtype(dtype, jnp.inexact))  # jnp: bfloat16 & co are inexact


def _all_false(tree: Any) -> Any:
    return jax.tree.map(lambda _: False, tree)


def _is_registered(node: Any) -> bool:
    return type(node) in _REGISTRY


def dynamic_state_mask(state: Any) -> Any:
    """A pytree of bools with ``state``'s structure: True for dynamic leaves.

    Rules, for any optax state (optax's own included):

    1. a leaf whose dtype is not inexact (integer counts, booleans) is False;
    2. a leaf under a path entry named in :data:`BOOKKEEPING_FIELDS` is False
       (e.g. everything under ``inject_hyperparams``' ``hyperparams``);
    3. a leaf under a field registered with :func:`register_bookkeeping` for its
       state class is False;
    4. every other leaf (moments, traces, previous gradients) is True.

    Works on arrays and on ``jax.ShapeDtypeStruct`` leaves (e.g. from
    ``jax.eval_shape(opt.init, params)``).
    """

    def mark(path: tuple[Any, ...], node: Any) -> Any:
        if any(_entry_name(entry) in BOOKKEEPING_FIELDS for entry in path):
            return _all_false(node)
        if _is_registered(node):
            bookkeeping = _REGISTRY[type(node)]
            return type(node)(
                *(
                    _all_false(value)
                    if field in bookkeeping or field in BOOKKEEPING_FIELDS
                    else dynamic_state_mask(value)
                    for field, value in zip(node._fields, node, strict=True)
                )
            )
        return _is_inexact(node)

    return jax.tree_util.tree_map_with_path(mark, state, is_leaf=_is_registered)

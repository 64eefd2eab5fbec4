"""Which optimizer-state leaves are dynamics and which are the rule's clock.

A leaf is *dynamic* when its next value depends on the parameters or the gradient, directly
or through other dynamic leaves (moments, traces, previous gradients, accumulated gradients);
a leaf that evolves on its own (step counts, schedule states, weight sums, injected
hyperparameters, random keys) is the rule's *clock*. Given the rule,
:func:`dynamic_state_mask` decides this from what one update step does: the dependencies of
its jaxpr, grown to a fixed point (:mod:`gdyn_jax.linearize.structure`), whatever the leaves
are called. ``linearize`` linearises the dynamic leaves and advances the clock.

Names are only a fallback and an override: without the rule, the mask follows the dtype and
:data:`BOOKKEEPING_FIELDS`; :func:`register_bookkeeping` lets a user declare fields of their own
state class bookkeeping, which then are held fixed in both cases.
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

    An override on top of the classification: :func:`dynamic_state_mask` marks these fields
    ``False`` with or without the rule, and ``linearize`` holds them at their value (as it
    holds frozen leaves). Registering with no fields declares nothing. Returns the class, so it
    can be used after the class definition or as ``register_bookkeeping(MyState, ('scale',))``.

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


def _is_registered(node: Any) -> bool:
    return type(node) in _REGISTRY


def _mark(state: Any, inside: Any) -> Any:
    """Bools with ``state``'s structure: ``inside(path)`` for leaves outside registered
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
    names = {_entry_name(e) if not isinstance(e, str) else e for e in path}
    return _is_inexact(node) and not (names & BOOKKEEPING_FIELDS)


def dynamic_state_mask(state: Any, opt: Any = None, *, params: Any = None) -> Any:
    """A pytree of bools with ``state``'s structure: True for dynamic leaves.

    With the rule (``opt`` and the ``params`` its state was made for), a leaf is dynamic when
    one update step makes its next value depend on the parameters, the gradient or another
    dynamic leaf, read from the step's jaxpr: optax's own states, ``inject_hyperparams``,
    ``MultiSteps``, schedule-free, lookahead and user-written rules alike, whatever their field
    names. Without the rule, the name-based fallback: a non-float leaf or one under a
    :data:`BOOKKEEPING_FIELDS` entry is False. In both cases fields declared with
    :func:`register_bookkeeping` are False. Works on arrays and on ``jax.ShapeDtypeStruct``
    leaves (e.g. from ``jax.eval_shape(opt.init, params)``).

    Raises:
      ValueError: naming ``params`` when ``opt`` is given without them.
    """
    if opt is None:
        return _mark(state, _by_names)
    if params is None:
        raise ValueError("params: the structural mask needs the parameters the state is for")
    from gdyn_jax.linearize.structure import analyse

    registered = registered_mask(state)
    grads = getattr(params, "fast", params)  # optax.LookaheadParams: the gradient is at .fast
    structure = analyse(opt.update, grads, state, params, registered)
    flags = iter(role == "dynamic" for role in structure.roles)
    return jax.tree.map(lambda _: next(flags), state)

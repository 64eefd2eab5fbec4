"""Which optimizer-state leaves are dynamic and which are the rule's clock: the one owner.

A leaf is *dynamic* when its next value depends on the parameters or the gradient, directly
or through other dynamic leaves (moments, traces, previous gradients, accumulated gradients);
a leaf that evolves on its own (step counts, schedule states, weight sums, injected
hyperparameters, random keys) is the rule's *clock*. Given the rule,
:func:`dynamic_state_mask` decides this from what one update step does: the dependencies of
its jaxpr, grown to a fixed point (:func:`analyse`, which also proves the step affine or not,
for ``linearize``), whatever the leaves are called. ``gdyn_jax.linearize`` linearises the
dynamic leaves and advances the clock; ``gdyn_jax.optimizers`` re-exports the mask and the
registration.

Names are only a fallback and an override: without the rule, the mask follows the dtype and
:data:`BOOKKEEPING_FIELDS`; :func:`register_bookkeeping` lets a user declare fields of their own
state class bookkeeping, which then are held fixed in both cases.

Modules: ``bookkeeping`` (registration and the name-based fallback), ``roles`` (the roles of
the leaves in one step), ``interpret`` (the abstract interpretation of a jaxpr: dependencies
and affinity) and ``primitives`` (its tables). This package is the foundation layer: it
imports only jax and numpy.

>>> import jax.numpy as jnp, optax
>>> from gdyn_jax import state_structure
>>> opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
>>> params = jnp.zeros(3)
>>> mask = state_structure.dynamic_state_mask(opt.init(params), opt, params=params)
>>> mask.hyperparams, mask.inner_state[0].trace  # the injected values are clock
({'learning_rate': False, 'momentum': False}, True)
"""

from gdyn_jax.state_structure.bookkeeping import (
    BOOKKEEPING_FIELDS,
    entry_name,
    register_bookkeeping,
    registered_bookkeeping,
    registered_mask,
)
from gdyn_jax.state_structure.roles import RuleStructure, analyse, dynamic_state_mask, trace_update

__all__ = [
    "BOOKKEEPING_FIELDS",
    "RuleStructure",
    "analyse",
    "dynamic_state_mask",
    "entry_name",
    "register_bookkeeping",
    "registered_bookkeeping",
    "registered_mask",
    "trace_update",
]

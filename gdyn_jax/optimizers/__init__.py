"""Optimizers as optax-style transforms, and their registry.

Every constructor returns an ``optax.GradientTransformation(ExtraArgs)`` whose
numeric hyperparameters may be traced (jit / vmap over them), so
``optax.chain``, ``optax.inject_hyperparams`` and ``optax.apply_updates`` work
unchanged. Hyperparameters are checked at construction: their type always (a real number or
real-valued array, or a schedule where the rule takes one; ``"0.1"``, ``True`` or a complex
number is refused in one line naming the argument), their range when the value is concrete
(Python and numpy numbers and JAX arrays alike: ``sgd(jnp.asarray(-0.1))`` is refused as
``sgd(-0.1)`` is). A traced value cannot be looked at while tracing: its range is the caller's
business. ``register(name, factory)`` adds a user's factory under a name; ``get`` and
``hyperparameters`` also take an import path ``"pkg.module:factory"`` or the factory itself.
Which state leaves are dynamic (:func:`dynamic_state_mask`, :func:`register_bookkeeping`) is
answered by :mod:`gdyn_jax.state_structure` and re-exported here.
"""

from gdyn_jax.optimizers._adaptive import (
    adadelta,
    adagrad,
    adam,
    adam_preconditioner,
    adamw,
    amsgrad,
    rmsprop,
)
from gdyn_jax.optimizers._lars import lars
from gdyn_jax.optimizers._momentum import (
    EmaMomentumState,
    MomentumState,
    NesterovState,
    ema_momentum,
    momentum,
    nesterov,
    scale_by_ema_momentum,
    scale_by_momentum,
    scale_by_nesterov,
    sgd,
)
from gdyn_jax.optimizers._pid import PIDState, pid, scale_by_pid
from gdyn_jax.optimizers._robust_momentum import (
    robust_momentum,
    robust_momentum_output,
    robust_momentum_parameters,
)
from gdyn_jax.optimizers._triple_momentum import (
    TripleMomentumState,
    scale_by_triple_momentum,
    triple_momentum,
    triple_momentum_output,
    triple_momentum_parameters,
)
from gdyn_jax.optimizers.registry import (
    get,
    hyperparameters,
    names,
    register,
    required_hyperparameters,
    state_bytes_per_param,
)
from gdyn_jax.state_structure import (
    BOOKKEEPING_FIELDS,
    dynamic_state_mask,
    register_bookkeeping,
    registered_bookkeeping,
)

__all__ = [
    "BOOKKEEPING_FIELDS",
    "EmaMomentumState",
    "MomentumState",
    "NesterovState",
    "PIDState",
    "TripleMomentumState",
    "adadelta",
    "adagrad",
    "adam",
    "adam_preconditioner",
    "adamw",
    "amsgrad",
    "dynamic_state_mask",
    "ema_momentum",
    "get",
    "hyperparameters",
    "lars",
    "momentum",
    "names",
    "nesterov",
    "pid",
    "register",
    "register_bookkeeping",
    "registered_bookkeeping",
    "required_hyperparameters",
    "rmsprop",
    "scale_by_ema_momentum",
    "scale_by_momentum",
    "scale_by_nesterov",
    "scale_by_pid",
    "robust_momentum",
    "robust_momentum_output",
    "robust_momentum_parameters",
    "scale_by_triple_momentum",
    "sgd",
    "state_bytes_per_param",
    "triple_momentum",
    "triple_momentum_output",
    "triple_momentum_parameters",
]

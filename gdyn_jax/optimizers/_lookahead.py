r"""Lookahead around gradient descent on plain parameters.

Zhang, Lucas, Hinton and Ba, `Lookahead Optimizer: k steps forward, 1 step back
<https://arxiv.org/abs/1907.08610>`_, NeurIPS 2019: the fast weights take ``sync_period``
gradient steps, then the slow weights move ``slow_step_size`` of the way to them and the fast
weights restart there,

.. math::
    \phi_{t+1} = \phi_t - a\, g(\phi_t), \qquad
    \text{every } k \text{ steps: } s \leftarrow s + \alpha(\phi - s),\ \phi \leftarrow s .

``optax.lookahead`` does the same on ``optax.LookaheadParams`` (fast and slow weights in the
parameter pytree); here the slow weights live in the state, so the rule takes plain parameters
like every other optimizer of the registry. Its loop is periodic with period :math:`k`
(``linearize.linearize_periodic`` lifts it): on a curvature :math:`h` one period multiplies
the error by :math:`1 - \alpha + \alpha(1 - a h)^k`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.errors import UsageError
from gdyn_jax.optimizers._checks import check_learning_rate, check_range

__all__ = ["LookaheadState", "lookahead_sgd"]


class LookaheadState(NamedTuple):
    """The slow weights and the step within the sync period."""

    slow: optax.Params
    count: jax.Array


def _check_period(sync_period) -> None:
    check_range("sync_period", sync_period, 1.0)
    if isinstance(sync_period, jax.core.Tracer):
        return
    value = np.asarray(sync_period, np.float64)
    if not np.all(value == np.round(value)):
        raise UsageError(f"sync_period: expected a whole number of steps >= 1, got {sync_period}")
    if np.any(value > np.iinfo(np.int32).max):  # the step count is an int32
        raise UsageError(
            f"sync_period: expected at most {np.iinfo(np.int32).max} steps, got {sync_period}"
        )


def lookahead_sgd(
    learning_rate: float, sync_period: int = 5, slow_step_size: float = 0.5
) -> optax.GradientTransformation:
    r"""Lookahead (module docstring) with gradient descent as the inner rule.

    Args:
      learning_rate: the fast weights' step :math:`a \ge 0` (may be traced).
      sync_period: :math:`k \ge 1`, fast steps per synchronisation (a whole number; may be
        traced, as a sweep passes it).
      slow_step_size: :math:`\alpha \in [0, 1]`, how far the slow weights move to the fast.

    Returns:
      An ``optax.GradientTransformation`` on plain parameters; its trajectory is the fast
      weights of ``optax.lookahead(optax.sgd(learning_rate), sync_period, slow_step_size)``.
    """
    check_learning_rate(learning_rate)
    _check_period(sync_period)
    check_range("slow_step_size", slow_step_size, 0.0, 1.0, high_open=False)

    def init(params):
        return LookaheadState(jax.tree.map(jnp.asarray, params), jnp.zeros([], jnp.int32))

    def update(grads, state, params):
        if params is None:
            raise UsageError("params: lookahead_sgd needs the parameters in update()")
        count = jnp.mod(state.count + 1, jnp.asarray(sync_period).astype(jnp.int32))
        sync = count == 0
        fast = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
        synced = jax.tree.map(lambda s, f: s + slow_step_size * (f - s), state.slow, fast)
        slow = jax.tree.map(lambda a, b: jnp.where(sync, a, b), synced, state.slow)
        target = jax.tree.map(lambda a, b: jnp.where(sync, a, b), synced, fast)
        return jax.tree.map(jnp.subtract, target, params), LookaheadState(slow, count)

    return optax.GradientTransformation(init, update)

r"""The momentum family: SGD, heavy ball, EMA momentum and Nesterov.

Each rule is a small transform of its own, with a NamedTuple state holding the
velocity, chained with :func:`optax.scale_by_learning_rate` (so
``learning_rate`` may be a scalar, a traced scalar or an optax schedule).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gdyn_jax.optimizers._checks import check_decay, check_learning_rate
from gdyn_jax.state_structure import register_bookkeeping

__all__ = [
    "EmaMomentumState",
    "MomentumState",
    "NesterovState",
    "ema_momentum",
    "momentum",
    "nesterov",
    "scale_by_ema_momentum",
    "scale_by_momentum",
    "scale_by_nesterov",
    "sgd",
]


class MomentumState(NamedTuple):
    """State of :func:`scale_by_momentum`: the heavy-ball velocity."""

    velocity: optax.Updates


class EmaMomentumState(NamedTuple):
    """State of :func:`scale_by_ema_momentum`: the EMA velocity."""

    velocity: optax.Updates


class NesterovState(NamedTuple):
    """State of :func:`scale_by_nesterov`: the velocity."""

    velocity: optax.Updates


for _cls in (MomentumState, EmaMomentumState, NesterovState):
    register_bookkeeping(_cls, ())


def _zeros(params: optax.Params) -> optax.Updates:
    return jax.tree.map(jnp.zeros_like, params)


def _decayed_sum(decay: jax.typing.ArrayLike, scale_g: Any):
    """Per-leaf ``decay * v + scale_g * g`` kept in the velocity's dtype."""

    def step(g: jax.Array, v: jax.Array) -> jax.Array:
        new = decay * v + (g if scale_g is None else scale_g * g)
        return new.astype(v.dtype)

    return step


def scale_by_momentum(beta: jax.typing.ArrayLike = 0.9) -> optax.GradientTransformation:
    r"""Heavy-ball velocity: :math:`v \leftarrow \beta v + g`, output :math:`v`.

    Equal to ``optax.trace(beta)``, with its own state class.
    """
    check_decay("beta", beta)

    def update_fn(updates, state, params=None):
        del params
        velocity = jax.tree.map(_decayed_sum(beta, None), updates, state.velocity)
        return velocity, MomentumState(velocity)

    return optax.GradientTransformation(lambda p: MomentumState(_zeros(p)), update_fn)


def scale_by_ema_momentum(beta: jax.typing.ArrayLike = 0.9) -> optax.GradientTransformation:
    r"""EMA velocity: :math:`v \leftarrow \beta v + (1-\beta) g`, output :math:`v`.

    Equal to ``optax.ema(beta, debias=False)``, with its own state class.
    """
    check_decay("beta", beta)

    def update_fn(updates, state, params=None):
        del params
        velocity = jax.tree.map(_decayed_sum(beta, 1.0 - beta), updates, state.velocity)
        return velocity, EmaMomentumState(velocity)

    return optax.GradientTransformation(lambda p: EmaMomentumState(_zeros(p)), update_fn)


def scale_by_nesterov(beta: jax.typing.ArrayLike = 0.9) -> optax.GradientTransformation:
    r"""Nesterov velocity: :math:`v \leftarrow \beta v + g`, output :math:`g + \beta v`.

    Equal to ``optax.trace(beta, nesterov=True)``, with its own state class.
    """
    check_decay("beta", beta)

    def update_fn(updates, state, params=None):
        del params
        velocity = jax.tree.map(_decayed_sum(beta, None), updates, state.velocity)
        out = jax.tree.map(lambda g, v: g + beta * v, updates, velocity)
        return out, NesterovState(velocity)

    return optax.GradientTransformation(lambda p: NesterovState(_zeros(p)), update_fn)


def sgd(learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformationExtraArgs:
    r"""Plain gradient descent.

    .. math::
      \theta \leftarrow \theta - a\, g

    The state is empty (a schedule's step count when ``learning_rate`` is a
    schedule): 0 bytes per parameter. In the z-domain, on a curvature :math:`h`,
    the loop has the single pole :math:`z = 1 - a h`.

    Args:
      learning_rate: :math:`a \ge 0`, a scalar (may be traced) or an optax schedule.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; equal to ``optax.sgd(learning_rate)``.

    References:
      Robbins & Monro, `A Stochastic Approximation Method
      <https://doi.org/10.1214/aoms/1177729586>`_, 1951
    """
    check_learning_rate(learning_rate)
    return optax.chain(optax.scale_by_learning_rate(learning_rate))


def momentum(
    learning_rate: optax.ScalarOrSchedule, beta: jax.typing.ArrayLike = 0.9
) -> optax.GradientTransformationExtraArgs:
    r"""Heavy-ball momentum (PyTorch / optax form).

    .. math::
      \begin{align*}
      v &\leftarrow \beta v + g \\
      \theta &\leftarrow \theta - a\, v
      \end{align*}

    with :math:`v_0 = 0`. State: the velocity :math:`v` (4 bytes per float32
    parameter).

    Args:
      learning_rate: :math:`a \ge 0`, a scalar (may be traced) or an optax schedule.
      beta: momentum coefficient :math:`\beta \in [0, 1)`, default 0.9.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; equal to
      ``optax.sgd(learning_rate, momentum=beta)``.

    References:
      Polyak, `Some methods of speeding up the convergence of iteration methods
      <https://doi.org/10.1016/0041-5553(64)90137-5>`_, 1964
    """
    check_learning_rate(learning_rate)
    check_decay("beta", beta)
    return optax.chain(scale_by_momentum(beta), optax.scale_by_learning_rate(learning_rate))


def ema_momentum(
    learning_rate: optax.ScalarOrSchedule, beta: jax.typing.ArrayLike = 0.9
) -> optax.GradientTransformationExtraArgs:
    r"""Momentum as an exponential moving average of the gradients (no debiasing).

    .. math::
      \begin{align*}
      v &\leftarrow \beta v + (1 - \beta)\, g \\
      \theta &\leftarrow \theta - a\, v
      \end{align*}

    with :math:`v_0 = 0`. The trajectory (and so the closed-loop poles) equals that
    of :func:`momentum` with learning rate :math:`a (1-\beta)`; the open-loop DC
    gain from gradient to step is :math:`a` instead of heavy ball's
    :math:`a / (1-\beta)`, so changing :math:`\beta` does not change the effective
    step size. State: the velocity (4 bytes per float32 parameter).

    Args:
      learning_rate: :math:`a \ge 0`, a scalar (may be traced) or an optax schedule.
      beta: averaging coefficient :math:`\beta \in [0, 1)`, default 0.9.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; equal to
      ``optax.sgd(learning_rate * (1 - beta), momentum=beta)`` up to rounding.

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015 (the first moment, without bias
      correction)
    """
    check_learning_rate(learning_rate)
    check_decay("beta", beta)
    return optax.chain(scale_by_ema_momentum(beta), optax.scale_by_learning_rate(learning_rate))


def nesterov(
    learning_rate: optax.ScalarOrSchedule, beta: jax.typing.ArrayLike = 0.9
) -> optax.GradientTransformationExtraArgs:
    r"""Nesterov momentum in optax's (and PyTorch's) form.

    .. math::
      \begin{align*}
      v &\leftarrow \beta v + g \\
      \theta &\leftarrow \theta - a\, (g + \beta v)
      \end{align*}

    with :math:`v_0 = 0` (the look-ahead is folded into the update, so no
    gradient is taken at a shifted point). State: the velocity (4 bytes per
    float32 parameter).

    Args:
      learning_rate: :math:`a \ge 0`, a scalar (may be traced) or an optax schedule.
      beta: momentum coefficient :math:`\beta \in [0, 1)`, default 0.9.

    Returns:
      An ``optax.GradientTransformationExtraArgs``; equal to
      ``optax.sgd(learning_rate, momentum=beta, nesterov=True)``.

    References:
      Sutskever et al., `On the importance of initialization and momentum in
      deep learning <https://proceedings.mlr.press/v28/sutskever13.html>`_, 2013
    """
    check_learning_rate(learning_rate)
    check_decay("beta", beta)
    return optax.chain(scale_by_nesterov(beta), optax.scale_by_learning_rate(learning_rate))

r"""The Triple Momentum method of Van Scoy, Freeman and Lynch (2018).

The fastest known method with a global rate guarantee over all :math:`\mu`-strongly convex,
:math:`L`-smooth functions: :math:`\rho = 1 - 1/\sqrt\kappa`, :math:`\kappa = L/\mu`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.errors import UsageError
from gdyn_jax.optimizers._checks import _concrete_values, check_number, check_range
from gdyn_jax.state_structure import register_bookkeeping

__all__ = [
    "TripleMomentumState",
    "scale_by_triple_momentum",
    "triple_momentum",
    "triple_momentum_output",
    "triple_momentum_parameters",
]


class TripleMomentumState(NamedTuple):
    """State of :func:`scale_by_triple_momentum`: the velocity :math:`v` (gradient units)."""

    velocity: optax.Updates


register_bookkeeping(TripleMomentumState, ())


def triple_momentum_parameters(mu: jax.typing.ArrayLike, L: jax.typing.ArrayLike) -> dict:
    r"""The published tuning: :math:`\rho = 1 - \sqrt{\mu/L}` and

    .. math::
      \alpha = \frac{1+\rho}{L},\quad \beta = \frac{\rho^2}{2-\rho},\quad
      \gamma = \frac{\rho^2}{(1+\rho)(2-\rho)},\quad \delta = \frac{\rho^2}{1-\rho^2}

    (Van Scoy, Freeman, Lynch 2018, eq. (2)). Returns a dict with keys ``rho``, ``alpha``,
    ``beta``, ``gamma``, ``delta``; values may be traced. ``delta`` is undefined
    (division by 0) only at :math:`\mu = 0`, which the factory rejects.
    """
    rho = 1.0 - jnp.sqrt(jnp.asarray(mu) / jnp.asarray(L))
    return {
        "rho": rho,
        "alpha": (1.0 + rho) / L,
        "beta": rho**2 / (2.0 - rho),
        "gamma": rho**2 / ((1.0 + rho) * (2.0 - rho)),
        "delta": rho**2 / (1.0 - rho**2),
    }


def scale_by_triple_momentum(
    beta: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike
) -> optax.GradientTransformation:
    r"""Velocity :math:`v \leftarrow \beta v + g`, output :math:`(1+\gamma) v_{\text{new}} -
    \gamma v_{\text{old}}` (see :func:`triple_momentum`).

    With :math:`\gamma = 0` it is heavy ball's ``optax.trace(beta)``; with
    :math:`\gamma = \beta` it is Nesterov's ``optax.trace(beta, nesterov=True)``: the
    three-parameter family of Lessard, Recht, Packard (2016, eq. (6.1)).
    """
    check_range("beta", beta, 0.0, 1.0)
    check_number("gamma", gamma)

    def init_fn(params):
        return TripleMomentumState(jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        velocity = jax.tree.map(
            lambda g, v: (beta * v + g).astype(v.dtype), updates, state.velocity
        )
        out = jax.tree.map(
            lambda new, old: (1.0 + gamma) * new - gamma * old, velocity, state.velocity
        )
        return out, TripleMomentumState(velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def _check_class(mu, L) -> None:
    """``0 < mu <= L`` (checked on concrete values; traced ones pass)."""
    check_range("mu", mu, 0.0, low_open=True)
    check_range("L", L, 0.0, low_open=True)
    mu_value, L_value = _concrete_values(mu), _concrete_values(L)
    if mu_value is not None and L_value is not None and bool(np.any(L_value < mu_value)):
        raise UsageError(f"L: expected a value >= mu = {mu_value.item():g}, got {L_value.item():g}")


def triple_momentum(
    mu: jax.typing.ArrayLike, L: jax.typing.ArrayLike
) -> optax.GradientTransformationExtraArgs:
    r"""The Triple Momentum method, tuned for :math:`\mu`-strongly convex, :math:`L`-smooth losses.

    The published recursion, with :math:`\nabla f` evaluated at :math:`y_k` and
    :math:`\xi_{-1} = \xi_0`, is

    .. math::
      \begin{align*}
      \xi_{k+1} &= (1+\beta)\,\xi_k - \beta\,\xi_{k-1} - \alpha \nabla f(y_k) \\
      y_k &= (1+\gamma)\,\xi_k - \gamma\,\xi_{k-1} \\
      x_k &= (1+\delta)\,\xi_k - \delta\,\xi_{k-1}
      \end{align*}

    with the parameters of :func:`triple_momentum_parameters`; :math:`x_k` converges to the
    minimiser at the rate :math:`\rho = 1 - 1/\sqrt\kappa`, the fastest rate known to hold for
    every function of the class. Here the parameters :math:`\theta` are the points
    :math:`y_k` where the gradient is taken (as in optax's Nesterov), so with the velocity
    :math:`v_k = -(\xi_k - \xi_{k-1})/\alpha` the same recursion reads

    .. math::
      v_{k+1} = \beta v_k + g_k,\qquad
      \theta_{k+1} = \theta_k - \alpha\big((1+\gamma) v_{k+1} - \gamma v_k\big),

    starting from :math:`v_0 = 0`, :math:`\theta_0 = y_0 = \xi_0`. The output point
    :math:`x_k` is :func:`triple_momentum_output` of the parameters and state. State: the
    velocity (4 bytes per float32 parameter).

    Args:
      mu: strong convexity :math:`\mu > 0`, a scalar (may be traced).
      L: smoothness :math:`L \ge \mu` (may be traced).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from gdyn_jax import optimizers
      >>> opt = optimizers.triple_momentum(mu=1.0, L=4.0)
      >>> params = jnp.array([1.0])
      >>> state = opt.init(params)
      >>> updates, state = opt.update(4.0 * params, state, params)  # f = 2 theta^2
      >>> print(optax.apply_updates(params, updates).round(4))  # 1 - alpha (1 + gamma) 4
      [-0.6667]

    References:
      Van Scoy, Freeman, Lynch, `The Fastest Known Globally Convergent First-Order Method
      for Minimizing Strongly Convex Functions <https://doi.org/10.1109/LCSYS.2017.2722406>`_,
      IEEE Control Systems Letters 2(1):49-54, 2018
    """
    _check_class(mu, L)
    p = triple_momentum_parameters(mu, L)
    return optax.chain(
        scale_by_triple_momentum(p["beta"], p["gamma"]),
        optax.scale_by_learning_rate(p["alpha"]),
    )


def triple_momentum_output(params: optax.Params, state, mu, L) -> optax.Params:
    r"""The method's output point :math:`x_k = y_k + \alpha(\gamma - \delta) v_k`.

    ``state`` is the state of :func:`triple_momentum` (its first element holds the
    velocity); ``params`` are the current :math:`\theta_k = y_k`.
    """
    p = triple_momentum_parameters(mu, L)
    velocity = state[0].velocity
    shift = p["alpha"] * (p["gamma"] - p["delta"])
    return jax.tree.map(lambda y, v: y + (shift * v).astype(y.dtype), params, velocity)

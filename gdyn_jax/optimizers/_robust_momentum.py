r"""Robust momentum of Cyrus, Hu, Van Scoy and Lessard (ACC 2018).

A one-parameter family over :math:`\mu`-strongly convex, :math:`L`-smooth losses that trades
speed for robustness to gradient noise: :math:`\lambda = 0` is Triple Momentum's rate
:math:`1 - 1/\sqrt\kappa`, :math:`\lambda = 1` gradient descent's :math:`1 - 1/\kappa`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.errors import UsageError
from gdyn_jax.optimizers._checks import _concrete_values, check_range
from gdyn_jax.optimizers._triple_momentum import _check_class, scale_by_triple_momentum

__all__ = ["robust_momentum", "robust_momentum_output", "robust_momentum_parameters"]


def robust_momentum_parameters(
    mu: jax.typing.ArrayLike, L: jax.typing.ArrayLike, lam: jax.typing.ArrayLike
) -> dict:
    r"""The published tuning (Cyrus et al. 2018, eq. (5)), :math:`\kappa = L/\mu`:

    .. math::
      \rho = \lambda(1 - 1/\kappa) + (1-\lambda)(1 - 1/\sqrt\kappa),\quad
      \alpha = \frac{\kappa(1-\rho)^2(1+\rho)}{L},\quad
      \beta = \frac{\kappa\rho^3}{\kappa - 1},\quad
      \gamma = \frac{\rho^3}{(\kappa-1)(1-\rho)^2(1+\rho)}.

    Returns a dict with keys ``rho``, ``alpha``, ``beta``, ``gamma``: Python floats (computed in
    float64) for scalar concrete inputs, else arrays (values may be traced).
    """
    concrete = all(_concrete_values(x) is not None for x in (mu, L, lam))
    xp = np if concrete else jnp  # float64 where it can: the tuning is tight to 1e-6
    mu, L, lam = (xp.asarray(x, np.float64 if concrete else None) for x in (mu, L, lam))
    kappa = L / mu
    rho = lam * (1.0 - 1.0 / kappa) + (1.0 - lam) * (1.0 - 1.0 / xp.sqrt(kappa))
    p = {
        "rho": rho,
        "alpha": kappa * (1.0 - rho) ** 2 * (1.0 + rho) / L,
        "beta": kappa * rho**3 / (kappa - 1.0),
        "gamma": rho**3 / ((kappa - 1.0) * (1.0 - rho) ** 2 * (1.0 + rho)),
    }
    if concrete and rho.ndim == 0:  # Python floats: weakly typed, they keep the params' dtype
        return {k: float(v) for k, v in p.items()}
    return p


def robust_momentum(
    mu: jax.typing.ArrayLike, L: jax.typing.ArrayLike, lam: jax.typing.ArrayLike = 0.5
) -> optax.GradientTransformationExtraArgs:
    r"""Robust momentum, tuned for :math:`\mu`-strongly convex, :math:`L`-smooth losses.

    The published recursion, with :math:`x_{-1} = x_0`, is

    .. math::
      x_{k+1} = x_k + \beta(x_k - x_{k-1}) - \alpha\nabla f(y_k),\qquad
      y_k = x_k + \gamma(x_k - x_{k-1}),

    with the parameters of :func:`robust_momentum_parameters`; it converges at the rate
    :math:`\rho` over the whole class. As in :func:`~gdyn_jax.optimizers.triple_momentum`
    (this is its recursion with :math:`\delta = 0`), the parameters :math:`\theta` are the
    points :math:`y_k` where the gradient is taken: with the velocity
    :math:`v_k = -(x_k - x_{k-1})/\alpha`,

    .. math::
      v_{k+1} = \beta v_k + g_k,\qquad
      \theta_{k+1} = \theta_k - \alpha\big((1+\gamma) v_{k+1} - \gamma v_k\big),

    from :math:`v_0 = 0`, :math:`\theta_0 = x_0`. State: the velocity only (the recursion's one
    extra state per parameter); :math:`x_k` is :func:`robust_momentum_output`.

    Args:
      mu: strong convexity :math:`\mu > 0` (may be traced).
      L: smoothness :math:`L > \mu` (may be traced).
      lam: :math:`\lambda \in [0, 1]`: 0 is the fastest (Triple Momentum's rate), 1 the most
        robust to gradient noise (gradient descent's rate).

    Example:
      >>> from gdyn_jax import optimizers
      >>> p = optimizers.robust_momentum_parameters(0.1, 1.0, 0.2)
      >>> print(f"{float(p['rho']) ** 2:.6f}")  # PEPit's robust momentum example
      0.528555

    References:
      Cyrus, Hu, Van Scoy, Lessard, `A Robust Accelerated Optimization Algorithm for Strongly
      Convex Functions <https://doi.org/10.23919/ACC.2018.8430824>`_, ACC 2018
    """
    _check_class(mu, L)
    mu_value, L_value = _concrete_values(mu), _concrete_values(L)
    if mu_value is not None and L_value is not None and bool(np.any(L_value <= mu_value)):
        raise UsageError(f"L: expected a value > mu = {mu_value.item():g}, got {L_value.item():g}")
    check_range("lam", lam, 0.0, 1.0, high_open=False)
    p = robust_momentum_parameters(mu, L, lam)
    return optax.chain(
        scale_by_triple_momentum(p["beta"], p["gamma"]),
        optax.scale_by_learning_rate(p["alpha"]),
    )


def robust_momentum_output(params: optax.Params, state, mu, L, lam) -> optax.Params:
    r"""The recursion's point :math:`x_k = y_k + \alpha\gamma v_k` from the parameters
    :math:`\theta_k = y_k` and the state of :func:`robust_momentum`."""
    p = robust_momentum_parameters(mu, L, lam)
    shift = p["alpha"] * p["gamma"]
    return jax.tree.map(lambda y, v: y + (shift * v).astype(y.dtype), params, state[0].velocity)

r"""A rule's closed loops joined to a network's curvature: the loss on the quadratic model.

:func:`quadratic_model_loss` is the loss an optimizer reaches on the quadratic model of a loss
whose gradient sees the Hessian spectrum as a measure (nodes, weights; measured by
:func:`gdyn_jax.measurements.spectral_measure`), from the exact closed loops of
:mod:`gdyn_jax.linearize`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from gdyn_jax import linearize

__all__ = ["quadratic_model_loss"]


def quadratic_model_loss(
    factory: Callable[..., Any],
    grid: Mapping[str, Any],
    nodes,
    weights,
    steps: int,
    **fixed: Any,
) -> np.ndarray:
    r"""The loss change an optimizer makes on a quadratic model, from its exact closed loops.

    The model is :math:`L(\theta_0 + \delta) = L_0 + g^\top \delta + \tfrac12 \delta^\top H
    \delta`. Along an eigenvector of :math:`H` with curvature :math:`\lambda` and gradient
    component :math:`g_i`, the optimizer's displacement is :math:`\delta_i(k) = g_i\, y_k(\lambda)`,
    where :math:`y_k(\lambda)` is the step response of the loop from its gradient input (the
    ``'noise'`` input of :func:`gdyn_jax.linearize.linearize`), so

    .. math::
        L_k - L_0 = \sum_i g_i^2 \big(y_k(\lambda_i) + \tfrac12 \lambda_i\, y_k(\lambda_i)^2\big)
        \approx \sum_j w_j \big(y_k(\theta_j) + \tfrac12 \theta_j\, y_k(\theta_j)^2\big),

    with the gradient's spectral measure as nodes :math:`\theta_j` and weights :math:`w_j`
    (:func:`gdyn_jax.measurements.spectral_measure`; the sum is exact for :math:`k` up to
    the number of nodes, since the summand is a polynomial of degree :math:`2k-1` in
    :math:`\lambda`).
    A node :math:`\theta_j \le 0` is taken as flat (:math:`\theta_j = 0`, the open loop): the
    quadratic model is unbounded below along a negative curvature, and only its first-order
    descent is kept.

    Args:
      factory: optimizer factory (e.g. ``gdyn_jax.optimizers.momentum``).
      grid: hyperparameter name -> 1-D values, as for ``linearize.linearize_grid``.
      nodes, weights: the measure, shape ``(m,)`` each.
      steps: the number of steps ``k = 0 .. steps-1``.
      fixed: further constant hyperparameters.

    Returns:
      :math:`L_k - L_0`, shape ``grid_shape + (steps,)`` (``inf`` or NaN once an unstable loop's
      response overflows).
    """
    nodes = np.maximum(np.asarray(nodes, dtype=np.float64).ravel(), 0.0)
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if nodes.shape != weights.shape or nodes.size == 0:
        raise ValueError(
            f"weights: expected one weight per node ({nodes.size}), got {weights.size}"
        )
    with jax.enable_x64(True):
        system = linearize.linearize_grid(factory, dict(grid), np.diag(nodes), **fixed)
        y = np.asarray(linearize.step_response(system, steps, input="noise"))
    if nodes.size == 1:
        y = y[..., None]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sum(weights * (y + 0.5 * nodes * y**2), axis=-1)

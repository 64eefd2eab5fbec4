r"""The third-order term of a central flow: gradients of Hessian quadratic forms.

Cohen, Damian, Talwalkar, Kolter, Lee, ICLR 2025: the oscillation's covariance
:math:`\Sigma = UXU^\top` pulls the averaged weights by :math:`\tfrac12\nabla\langle\Sigma,
\nabla^2 L\rangle = \tfrac12\sum_{ab} X_{ab} G_{ab}`. Shared by the affine rules' flow
(``central_flow``) and RMSProp's (``_rmsprop_flow``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["flow_derivatives"]


def flow_derivatives(loss: Callable, w: jax.Array, u: jax.Array) -> jax.Array:
    r""":math:`G_{ab} = \nabla_w\big(u_a^\top \nabla^2 L(w)\, u_b\big)`, shape (k, k, n).

    The gradient of a Hessian-vector product (reverse over forward over reverse), one per pair
    :math:`a \le b`, filled symmetrically.
    """
    k = u.shape[1]
    rows, cols = np.triu_indices(k)

    def pair(ua, ub):
        def quad(x):
            return jnp.vdot(ua, jax.jvp(jax.grad(loss), (x,), (ub,))[1])

        return jax.grad(quad)(w)

    upper = jax.vmap(pair, in_axes=(1, 1))(u[:, rows], u[:, cols])  # (pairs, n)
    return upper[_pair_index(k)]


def _pair_index(k: int) -> np.ndarray:
    """(k, k) the row of pair (a, b) among the upper-triangle pairs of ``np.triu_indices``."""
    rows, cols = np.triu_indices(k)
    index = np.zeros((k, k), int)
    index[rows, cols] = index[cols, rows] = np.arange(rows.size)
    return index

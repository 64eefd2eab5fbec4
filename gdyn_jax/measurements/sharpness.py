r"""Batch sharpness: the curvature mini-batch SGD actually sees (the edge of stochastic stability).

Andreyev & Beneventano, "Edge of Stochastic Stability: Revisiting the Edge of Stability for
SGD", arXiv:2412.20553: under mini-batch SGD with step :math:`\eta` the full-batch sharpness
:math:`\lambda_{\max}(\nabla^2 L)` settles *below* :math:`2/\eta`, the lower the smaller the
batch; what settles at :math:`2/\eta` is the *batch sharpness*, the expected curvature of a
mini-batch loss along its own gradient,

.. math::
    \mathrm{BS}(\theta) = \mathbb{E}_B\!\left[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\right],
    \qquad g_B = \nabla L_B(\theta),\ H_B = \nabla^2 L_B(\theta),

over mini-batches :math:`B` of the training batch size. One step of SGD on :math:`L_B` along
:math:`g_B` is a step on the quadratic of curvature :math:`g_B^\top H_B g_B/\|g_B\|^2` along
that direction, stable below :math:`2/\eta`. ``ratio_of_means=True`` gives the ratio of the
expectations :math:`\mathbb{E}[g_B^\top H_B g_B] / \mathbb{E}\|g_B\|^2` instead.

Each term is one gradient and one Hessian-vector product (forward over reverse); the batches are
``jax.vmap``-ed, so the function is pure and composes with ``jax.jit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = ["batch_sharpness", "directional_curvatures"]

PyTree = Any
BatchLoss = Callable[[PyTree, Any], jax.Array]


def directional_curvatures(
    loss_fn: BatchLoss, params: PyTree, batches: Any
) -> tuple[jax.Array, jax.Array]:
    r"""Per mini-batch, :math:`g_B^\top H_B g_B` and :math:`\|g_B\|^2`.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, the mean loss of one mini-batch.
      params: the parameters (a pytree).
      batches: a pytree of arrays whose leading axis indexes the mini-batches (e.g.
        ``(x, y)`` of shapes ``(m, b, ...)``, ``(m, b)``).

    Returns:
      ``(quadratic, squared_norm)``, each of shape ``(m,)``.
    """

    def one(batch):
        def loss(p):
            return loss_fn(p, batch)

        grad = jax.grad(loss)(params)
        hg = jax.jvp(jax.grad(loss), (params,), (grad,))[1]
        g, _ = ravel_pytree(grad)
        h, _ = ravel_pytree(hg)
        return jnp.vdot(g, h), jnp.vdot(g, g)

    return jax.lax.map(one, batches) if _count(batches) > 64 else jax.vmap(one)(batches)


def _count(batches: Any) -> int:
    leaves = jax.tree.leaves(batches)
    if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
        raise ValueError("batches: expected a pytree of arrays with a leading mini-batch axis")
    sizes = {int(jnp.shape(x)[0]) for x in leaves}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"batches: expected one non-zero leading (mini-batch) axis, got sizes {sorted(sizes)}"
        )
    return sizes.pop()


def batch_sharpness(
    loss_fn: BatchLoss, params: PyTree, batches: Any, *, ratio_of_means: bool = False
) -> jax.Array:
    r"""Batch sharpness :math:`\mathbb{E}_B[g_B^\top H_B g_B / \|g_B\|^2]` over ``batches``.

    Andreyev & Beneventano (arXiv:2412.20553): under SGD with step :math:`\eta` it settles at
    :math:`2/\eta` (the edge of stochastic stability) while :math:`\lambda_{\max}` stays below.
    A mini-batch whose gradient is exactly zero contributes nothing (it is left out of the mean).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss of one mini-batch.
      params: the parameters.
      batches: mini-batches stacked on a leading axis (sample them at the training batch size).
      ratio_of_means: return :math:`\mathbb{E}[g^\top H g]/\mathbb{E}\|g\|^2` instead.
    """
    quadratic, norm2 = directional_curvatures(loss_fn, params, batches)
    if ratio_of_means:
        return jnp.sum(quadratic) / jnp.sum(norm2)
    used = norm2 > 0
    ratios = jnp.where(used, quadratic / jnp.where(used, norm2, 1.0), 0.0)
    return jnp.sum(ratios) / jnp.maximum(jnp.sum(used), 1)

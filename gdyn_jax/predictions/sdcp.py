r"""A small solver for the semidefinite complementarity problem of a central flow.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with
Central Flows", ICLR 2025: each substep of a central flow chooses the oscillation covariance
:math:`X \in \mathrm{Sym}_k` (in the basis of the critical Hessian eigenvectors) solving

.. math::
    X \succeq 0, \qquad Y = A + \mathcal{B}[X] \succeq 0, \qquad \langle X, Y \rangle = 0,

with :math:`A` the stability margin predicted without oscillation and :math:`\mathcal{B}` a PSD
operator (the margin the oscillation buys back). For PSD :math:`\mathcal{B}` this is the
optimality condition of the convex program
:math:`\min_{X \succeq 0} \tfrac12 \langle X, \mathcal{B}[X]\rangle + \langle A, X\rangle`,
solved here by accelerated projected gradient (FISTA with adaptive restart, Beck & Teboulle
2009; O'Donoghue & Candès 2015) with the projection onto the PSD cone by an eigendecomposition.
:math:`k` is a handful, so a fixed number of iterations costs microseconds, stays inside
``jax.jit`` and needs no ``[robust]`` extra. The residual returned measures how far the triple
is from complementarity: :math:`\max(0, -\lambda_{\min}(Y)) + |\langle X, Y\rangle| /
\max(\|X\|, \epsilon)`, in the units of :math:`A`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["psd_projection", "solve_sdcp"]


def psd_projection(x: jax.Array) -> jax.Array:
    """The nearest PSD matrix in Frobenius norm: negative eigenvalues clipped to 0."""
    sym = 0.5 * (x + x.T)
    vals, vecs = jnp.linalg.eigh(sym)
    return (vecs * jnp.maximum(vals, 0.0)[None, :]) @ vecs.T


def solve_sdcp(
    a: jax.Array, b: jax.Array, start: jax.Array | None = None, iters: int = 400
) -> tuple[jax.Array, jax.Array]:
    r"""Solve :math:`0 \preceq X \perp A + \mathcal{B}[X] \succeq 0`.

    Args:
      a: (k, k) symmetric :math:`A`.
      b: (k, k, k, k) PSD operator, :math:`\mathcal{B}[X]_{ij} = \sum_{lm} b_{ijlm} X_{lm}`,
        symmetric under :math:`(ij) \leftrightarrow (lm)` and within each pair.
      start: (k, k) warm start (the last substep's solution), or None for 0.
      iters: FISTA iterations.

    Returns:
      ``(X, residual)``.
    """
    k = a.shape[0]
    bmat = b.reshape(k * k, k * k)
    bmat = 0.5 * (bmat + bmat.T)
    lipschitz = jnp.maximum(jnp.linalg.eigvalsh(bmat)[-1], jnp.finfo(a.dtype).tiny)
    step = 1.0 / lipschitz

    def grad(x):
        return a + (bmat @ x.reshape(-1)).reshape(k, k)

    def objective(x):
        return 0.5 * jnp.vdot(x, (bmat @ x.reshape(-1)).reshape(k, k)) + jnp.vdot(a, x)

    def body(_, carry):
        x, y, t = carry
        x_new = psd_projection(y - step * grad(y))
        restart = objective(x_new) > objective(x)  # adaptive restart (function scheme)
        t_new = jnp.where(restart, 1.0, 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)))
        y_new = jnp.where(restart, x_new, x_new + ((t - 1.0) / t_new) * (x_new - x))
        return x_new, y_new, t_new

    def fista(x0):
        one = jnp.asarray(1.0, a.dtype)
        return jax.lax.fori_loop(0, iters, body, (x0, x0, one))[0]

    x0 = jnp.zeros_like(a) if start is None else psd_projection(start)
    stable = jnp.linalg.eigvalsh(0.5 * (a + a.T))[0] >= 0  # A is PSD: X = 0 solves it
    x = jax.lax.cond(stable, jnp.zeros_like, fista, x0)
    return x, sdcp_residual(a, bmat, x)


def sdcp_residual(a: jax.Array, bmat: jax.Array, x: jax.Array) -> jax.Array:
    r"""How far ``x`` is from solving the SDCP, in the units of :math:`A`: the violation of
    :math:`Y \succeq 0` plus the complementarity gap :math:`|\langle X, Y\rangle| / \|X\|`."""
    k = a.shape[0]
    y = a + (bmat @ x.reshape(-1)).reshape(k, k)
    violation = jnp.maximum(0.0, -jnp.linalg.eigvalsh(0.5 * (y + y.T))[0])
    norm = jnp.linalg.norm(x)
    gap = jnp.abs(jnp.vdot(x, y)) / jnp.maximum(norm, jnp.finfo(a.dtype).tiny)
    return violation + jnp.where(norm > 0, gap, 0.0)

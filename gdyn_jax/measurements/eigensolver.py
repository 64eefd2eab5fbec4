r"""A warm-started block eigensolver for the top eigenpairs of a symmetric operator.

LOBPCG (Knyazev 2001, "Toward the optimal preconditioned eigensolver") without a
preconditioner: each iteration takes the Rayleigh-Ritz approximation of the top ``k``
eigenpairs on the span of the current block :math:`X`, its residuals
:math:`R = AX - X\Theta` and the previous search directions :math:`P`. Started from the
previous step's vectors (the Hessian moves little between optimizer steps) it converges in a few
iterations, which is how the central-flows code of Cohen et al. (ICLR 2025) tracks the critical
Hessian eigenvectors along a trajectory.

The basis :math:`[X, R, P]` is orthonormalised by a Householder QR, which returns orthonormal
columns even when the block is rank deficient (converged residuals, a vanished :math:`P`), so
the Rayleigh-Ritz step never divides by a small norm. The relative residual
:math:`\|Av - \theta v\| / \max(|\theta|, \text{scale})` of every pair is checked; when a warm
start fails the check, the solve is repeated from random vectors (a *cold start*) with more
iterations, inside the same traced function (``jax.lax.cond``), so :func:`eigenpairs` is a pure
function of ``(matvec, previous, key)`` usable under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Eigenpairs", "eigenpairs", "lobpcg"]

MatVec = Callable[[jax.Array], jax.Array]


class Eigenpairs(NamedTuple):
    """The top ``k`` eigenpairs, largest first.

    ``values`` (k,), ``vectors`` (n, k) orthonormal columns, ``residuals`` (k,) relative
    residuals :math:`\\|Av_i - \\theta_i v_i\\| / \\max(|\\theta_i|, \\text{scale})`,
    ``converged`` whether all are below the tolerance, ``restarted`` whether the warm start
    failed and a cold start was taken.
    """

    values: jax.Array
    vectors: jax.Array
    residuals: jax.Array
    converged: jax.Array
    restarted: jax.Array


def _block_matvec(matvec: MatVec, block: jax.Array) -> jax.Array:
    return jax.vmap(matvec, in_axes=1, out_axes=1)(block)


def _residuals(values, vectors, avectors, floor):
    r = jnp.linalg.norm(avectors - vectors * values[None, :], axis=0)
    scale = jnp.maximum(jnp.abs(values), floor)
    return r / scale


def lobpcg(
    matvec: MatVec, start: jax.Array, iters: int, tol: float = 1e-6
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``iters`` LOBPCG iterations for the top ``k`` eigenpairs of the symmetric ``matvec``.

    Args:
      matvec: :math:`v \mapsto Av` on flat vectors of length n (symmetric :math:`A`).
      start: (n, k) starting block (its span matters, not its scale or orthogonality).
      iters: number of iterations (fixed: a ``lax.while_loop`` that stops early once every
        relative residual is below ``tol``).
      tol: the relative residual at which to stop.

    Returns:
      ``(values, vectors, residuals)``: (k,) eigenvalues largest first, (n, k) orthonormal
      vectors, (k,) relative residuals.
    """
    k = start.shape[1]
    x, _ = jnp.linalg.qr(start)
    ax = _block_matvec(matvec, x)
    theta, c = jnp.linalg.eigh(x.T @ ax)
    order = jnp.argsort(-theta)
    theta, c = theta[order], c[:, order]
    x, ax = x @ c, ax @ c
    floor = jnp.finfo(x.dtype).eps * jnp.maximum(jnp.max(jnp.abs(theta)), 1e-30)
    p = jnp.zeros_like(x)

    def cond(carry):
        i, _, _, _, _, res = carry
        return (i < iters) & (jnp.max(res) > tol)

    def body(carry):
        i, x, ax, theta, p, _ = carry
        r = ax - x * theta[None, :]
        basis = jnp.concatenate([x, r, p], axis=1)
        q, _ = jnp.linalg.qr(basis)  # orthonormal even if the block is rank deficient
        aq = _block_matvec(matvec, q)
        gram = 0.5 * (q.T @ aq + aq.T @ q)
        vals, vecs = jnp.linalg.eigh(gram)
        top = jnp.argsort(-vals)[:k]
        theta_new, c = vals[top], vecs[:, top]
        x_new, ax_new = q @ c, aq @ c
        # P: the part of the new block outside the old one (its R and P components)
        p_new = x_new - x @ (x.T @ x_new)
        res = _residuals(theta_new, x_new, ax_new, floor)
        return i + 1, x_new, ax_new, theta_new, p_new, res

    res0 = _residuals(theta, x, ax, floor)
    carry = (jnp.asarray(0), x, ax, theta, p, res0)
    _, x, ax, theta, _, res = jax.lax.while_loop(cond, body, carry)
    return theta, x, res


def eigenpairs(
    matvec: MatVec,
    previous: jax.Array,
    key: jax.Array,
    *,
    iters: int = 30,
    cold_iters: int = 200,
    tol: float = 1e-5,
) -> Eigenpairs:
    r"""Top ``k`` eigenpairs of ``matvec`` warm-started from ``previous``, with a cold fallback.

    Runs :func:`lobpcg` from the columns of ``previous`` (n, k) for at most ``iters``
    iterations; if any relative residual is still above ``tol``, runs it again from
    ``k`` random vectors (``key``) mixed with ``previous`` for at most ``cold_iters`` (a cold
    start that still sees the old directions). Pure and traceable: use it under ``jax.jit``.
    Eigenvectors are signed to agree with ``previous`` (for smooth tracking). The residual
    check certifies eigenpairs, not that they are the top ones: a block of exact lower
    eigenvectors passes it; warm starting finds the top ones because ``previous`` is close.

    Args:
      matvec: :math:`v \mapsto Av` on flat vectors (symmetric :math:`A`, e.g. a Hessian).
      previous: (n, k) the last step's vectors, or random ones for the first call.
      key: a PRNG key for the cold start.
      iters, cold_iters: iteration budgets of the warm and cold solves.
      tol: relative residual below which a pair counts as converged.
    """
    if previous.ndim != 2 or not 1 <= previous.shape[1] <= previous.shape[0]:
        raise ValueError(
            f"previous: expected an (n, k) block with 1 <= k <= n, got shape {previous.shape}"
        )
    warm = lobpcg(matvec, previous, iters, tol)

    def cold(_):
        noise = jax.random.normal(key, previous.shape, previous.dtype)
        start = noise * jnp.linalg.norm(previous, axis=0, keepdims=True) + previous
        return lobpcg(matvec, start, cold_iters, tol)

    failed = jnp.max(warm[2]) > tol
    values, vectors, res = jax.lax.cond(failed, cold, lambda _: warm, None)
    signs = jnp.sign(jnp.sum(vectors * previous, axis=0))
    vectors = vectors * jnp.where(signs == 0, 1.0, signs)[None, :]
    return Eigenpairs(values, vectors, res, jnp.max(res) <= tol, failed)

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

Under ``jax.vmap`` a ``lax.cond`` on a batched predicate computes both branches, so
:func:`eigenpairs` then always pays for the cold solve. :func:`track_top` tracks the top pair
for the sweep: Lanczos warm-started from the previous vector, stopped by the same residual
check, with the cold start as a restart inside one ``lax.while_loop`` (batched, it runs the
steps its slowest member needs). Lanczos rather than LOBPCG there: the Krylov space of the
warm vector contains the LOBPCG iterates from it, at one Hessian-vector product per step where
the QR-based LOBPCG above takes three (measured in ``BENCHMARKS.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Eigenpairs", "Tracked", "eigenpairs", "lobpcg", "track_top"]

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


class Tracked(NamedTuple):
    """The top eigenpair of :func:`track_top`: ``value`` (scalar), ``vector`` (n,) of unit
    norm, ``residual`` its relative residual, ``converged`` (residual within the tolerance),
    ``restarted`` (the warm start failed and a cold start was taken), ``products`` (operator
    products used)."""

    value: jax.Array
    vector: jax.Array
    residual: jax.Array
    converged: jax.Array
    restarted: jax.Array
    products: jax.Array


def _tridiagonal(alphas, betas, j):
    """The Lanczos matrix of steps ``0..j`` in a fixed-size array; the rows past ``j`` are
    decoupled, below every Ritz value (so the top eigenpair is the active block's)."""
    idx = jnp.arange(alphas.shape[0])
    low = alphas[0] - jnp.abs(alphas[0]) - 1.0
    diag = jnp.where(idx <= j, alphas, low)
    off = jnp.where(idx[:-1] < j, betas[:-1], 0.0)
    return jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _starts(previous: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(warm start, cold start, whether there is no previous vector), unit vectors."""
    n = previous.size
    pnorm = jnp.linalg.norm(previous)
    noise = jax.random.normal(key, (n,), previous.dtype)
    cold = noise * jnp.where(pnorm > 0, pnorm / jnp.sqrt(n), 1.0) + previous
    cold = cold / jnp.linalg.norm(cold)
    none = pnorm == 0
    return jnp.where(none, cold, previous / jnp.where(none, 1.0, pnorm)), cold, none


def _lanczos_step(matvec: MatVec, cold: jax.Array, iters: int, tol: float) -> Callable:
    """One step of :func:`track_top`'s loop: a Lanczos step, the residual check, the restart."""
    tiny = jnp.finfo(cold.dtype).eps * 10

    def body(c):
        j, basis, alphas, betas, v, v_prev, beta_prev, s, _, restarted, used, _ = c
        w = matvec(v) - beta_prev * v_prev
        alpha = jnp.vdot(w, v)
        w = w - alpha * v
        basis = basis.at[j].set(v)
        w = w - basis.T @ (basis @ w)  # full reorthogonalisation (twice is enough)
        w = w - basis.T @ (basis @ w)
        beta = jnp.linalg.norm(w)
        alphas, betas = alphas.at[j].set(alpha), betas.at[j].set(beta)
        theta, vecs = jnp.linalg.eigh(_tridiagonal(alphas, betas, j))
        s = vecs[:, -1]
        scale = jnp.maximum(jnp.abs(theta[-1]), tiny)
        res = jnp.abs(beta * s[j]) / scale
        done = (res <= tol) | (beta <= tiny * scale)
        switch = ~restarted & ~done & (j + 1 == iters)

        def reset(x):
            return jnp.where(switch, jnp.zeros_like(x), x)

        v_next = jnp.where(switch, cold, w / jnp.where(beta > 0, beta, 1.0))
        j_next = jnp.where(switch, 0, j + 1)
        vectors = (reset(basis), reset(alphas), reset(betas), v_next, reset(v), reset(beta))
        return (j_next, *vectors, s, done, restarted | switch, used + 1, res)

    return body


def track_top(
    matvec: MatVec, previous: jax.Array, key: jax.Array, *, iters: int = 20, tol: float = 3e-3
) -> Tracked:
    r"""The top eigenpair of the symmetric ``matvec``, by Lanczos warm-started from ``previous``.

    Lanczos with full reorthogonalisation from ``previous`` (n,) (the last evaluation's
    vector; all zeros for none) stops as soon as the top Ritz pair's relative residual
    :math:`|\beta_j s_j| / |\theta|` (exact with full reorthogonalisation) is at most ``tol``;
    a residual :math:`r` puts :math:`\theta` within :math:`r|\theta|` of an eigenvalue, and
    within about :math:`r^2\theta^2/\text{gap}` of it. Started from a close vector it takes a
    few products (the Krylov space of ``previous`` holds every LOBPCG iterate from it, at one
    product per step instead of three). If ``iters`` steps do not converge (or ``previous`` is
    zero) it restarts from a cold start, random (``key``) mixed with ``previous`` as in
    :func:`eigenpairs`, for at most ``iters`` steps more. One ``lax.while_loop``: under
    ``jax.vmap`` a batch runs the steps its slowest member needs, the others frozen. As for
    :func:`eigenpairs`, the check certifies an eigenpair, not that it is the top one: a
    ``previous`` that is exactly a lower eigenvector stays there.
    """
    if previous.ndim != 1 or previous.size < 1:
        raise ValueError(f"previous: expected a vector, got shape {previous.shape}")
    if int(iters) < 1:
        raise ValueError(f"iters: expected >= 1, got {iters}")
    n, dtype = previous.size, previous.dtype
    iters = min(int(iters), n)
    v0, cold, none = _starts(previous, key)

    def cond(c):
        j, done, restarted = c[0], c[8], c[9]
        return ~done & ~(restarted & (j == iters))

    z = jnp.zeros((iters,), dtype)
    carry = (0, jnp.zeros((iters, n), dtype), z, z, v0, jnp.zeros_like(v0), jnp.zeros((), dtype))
    carry += (z, jnp.asarray(False), none, jnp.asarray(0), jnp.asarray(jnp.inf, dtype))
    out = jax.lax.while_loop(cond, _lanczos_step(matvec, cold, iters, tol), carry)
    j, basis, alphas, betas, _, _, _, s, done, restarted, used, res = out
    value = jnp.linalg.eigvalsh(_tridiagonal(alphas, betas, j - 1))[-1]
    vector = basis.T @ s
    vector = vector / jnp.linalg.norm(vector)
    sign = jnp.sign(jnp.vdot(vector, previous))
    return Tracked(value, vector * jnp.where(sign == 0, 1.0, sign), res, done, restarted, used)

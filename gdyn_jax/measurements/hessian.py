r"""Hessian-vector products and the top Hessian eigenvalue (sharpness) of a loss.

The sharpness of a loss :math:`L` at parameters :math:`\theta` is the largest eigenvalue
:math:`\lambda_{\max}(\nabla^2 L(\theta))`. Cohen et al. (2021, "Gradient descent on neural
networks typically occurs at the edge of stability") track it on a fixed subset of the training
set with Lanczos iterations on Hessian-vector products; under gradient descent with step size
:math:`\eta` it rises to about :math:`2/\eta` and hovers there.

Everything here is pure, works on any parameter pytree, uses a fixed number of iterations (no
Python branching on traced values) and so composes with ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import eigensolver

__all__ = [
    "METHODS",
    "hvp",
    "spectral_measure",
    "top_eigenpairs",
    "top_eigenvalue",
    "tracked_top_eigenvalue",
]

PyTree = Any
LossFn = Callable[[PyTree], jax.Array]

METHODS = ("lanczos", "power")


def hvp(loss_fn: LossFn, params: PyTree, vector: PyTree) -> PyTree:
    r"""Hessian-vector product :math:`\nabla^2 L(\theta)\, v` by forward-over-reverse.

    .. math::
        \nabla^2 L(\theta)\, v = \frac{d}{d\epsilon} \nabla L(\theta + \epsilon v)\Big|_{0},

    computed as ``jax.jvp(jax.grad(loss_fn), (params,), (vector,))``: one gradient's cost
    (Pearlmutter 1994), never forming the Hessian.

    Args:
      loss_fn: scalar loss of the parameters.
      params: the point :math:`\theta` (a pytree).
      vector: the direction :math:`v`, a pytree with the structure of ``params``.

    Returns:
      :math:`\nabla^2 L(\theta) v` with the structure of ``params``.
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def _flat_hvp(loss_fn: LossFn, params: PyTree) -> tuple[Callable[[jax.Array], jax.Array], int]:
    flat, unravel = ravel_pytree(params)

    def matvec(v: jax.Array) -> jax.Array:
        return ravel_pytree(hvp(loss_fn, params, unravel(v.astype(flat.dtype))))[0]

    return matvec, flat.size


def _power(matvec, v0: jax.Array, num_iters: int) -> jax.Array:
    def body(v, _):
        w = matvec(v)
        norm = jnp.linalg.norm(w)
        safe = jnp.where(norm > 0, norm, 1.0)
        return jnp.where(norm > 0, w / safe, v), None

    v, _ = jax.lax.scan(body, v0, None, length=num_iters)
    return jnp.vdot(v, matvec(v))


def _lanczos(matvec, v0: jax.Array, num_iters: int) -> tuple[jax.Array, jax.Array]:
    r"""The tridiagonal Lanczos matrix :math:`T` and the basis :math:`V` (rows) from the unit
    vector ``v0``, with full reorthogonalisation: :math:`T = V \nabla^2 L\, V^\top`."""
    n = v0.size
    basis = jnp.zeros((num_iters, n), v0.dtype)
    tiny = jnp.finfo(v0.dtype).eps * 10

    def body(carry, i):
        basis, v, v_prev, beta_prev, alive, alpha0 = carry
        w = matvec(v) - beta_prev * v_prev
        alpha = jnp.vdot(w, v)
        w = w - alpha * v
        basis = basis.at[i].set(v)
        # Full reorthogonalisation against every stored vector (twice is enough).
        w = w - basis.T @ (basis @ w)
        w = w - basis.T @ (basis @ w)
        beta = jnp.linalg.norm(w)
        alpha0 = jnp.where(i == 0, alpha, alpha0)
        # After an invariant subspace is found (beta ~ 0) the remaining rows are decoupled and
        # given alpha_0, a Rayleigh quotient, so they can never exceed the true maximum.
        alpha_out = jnp.where(alive, alpha, alpha0)
        next_alive = alive & (beta > tiny * jnp.maximum(jnp.abs(alpha), 1.0))
        beta_out = jnp.where(next_alive, beta, 0.0)
        v_next = jnp.where(next_alive, w / jnp.where(next_alive, beta, 1.0), 0.0)
        carry = (basis, v_next, v, beta_out, next_alive, alpha0)
        return carry, (alpha_out, beta_out)

    init = (
        basis,
        v0,
        jnp.zeros_like(v0),
        jnp.zeros((), v0.dtype),
        jnp.array(True),
        jnp.zeros((), v0.dtype),
    )
    (basis, *_), (alphas, betas) = jax.lax.scan(body, init, jnp.arange(num_iters))
    off = betas[:-1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1), basis


def top_eigenvalue(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    num_iters: int = 20,
    *,
    method: str = "lanczos",
    preconditioner: PyTree | None = None,
) -> jax.Array:
    r"""Largest eigenvalue of the Hessian of ``loss_fn`` at ``params`` (the sharpness).

    ``method='lanczos'`` (default) runs ``num_iters`` Lanczos steps with full
    reorthogonalisation from a random unit vector and returns the largest eigenvalue of the
    tridiagonal matrix :math:`T_k`,

    .. math::
        \lambda_{\max}(T_k) \le \lambda_{\max}(\nabla^2 L), \qquad
        T_k = V_k^\top \nabla^2 L\, V_k,

    which converges to the largest *algebraic* eigenvalue (Cohen et al. 2021 use Lanczos for
    sharpness). ``method='power'`` runs power iteration and returns the Rayleigh quotient of the
    final vector: it converges to the eigenvalue of largest *magnitude*, which is the sharpness
    when that eigenvalue is positive.

    With a ``preconditioner`` :math:`P` (a pytree of positive values shaped like ``params``,
    a diagonal matrix), the iterations run on the symmetric
    :math:`P^{-1/2} \nabla^2 L\, P^{-1/2}`, whose eigenvalues are those of
    :math:`P^{-1} \nabla^2 L`: the *preconditioned sharpness* of an adaptive method frozen at
    :math:`P` (Cohen et al. 2022; :func:`gdyn_jax.optimizers.adam_preconditioner`).

    Args:
      loss_fn: scalar loss of the parameters (close over a fixed data subset).
      params: parameter pytree.
      key: PRNG key for the starting vector.
      num_iters: number of Hessian-vector products (static).
      method: ``'lanczos'`` or ``'power'`` (static).
      preconditioner: optional diagonal :math:`P > 0`, a pytree shaped like ``params``.

    Returns:
      A float scalar.

    References:
      Lanczos, "An iteration method for the solution of the eigenvalue problem", 1950.
      Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient Descent on Neural Networks Typically
      Occurs at the Edge of Stability", ICLR 2021.
      Cohen et al., "Adaptive Gradient Methods at the Edge of Stability", arXiv:2207.14484.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if int(num_iters) < 1:
        raise ValueError(f"num_iters: expected >= 1, got {num_iters}")
    matvec, n = _flat_hvp(loss_fn, params)
    dtype = ravel_pytree(params)[0].dtype
    if preconditioner is not None:
        matvec = _preconditioned(matvec, params, preconditioner)
    v0 = jax.random.normal(key, (n,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    if method == "power":
        return _power(matvec, v0, int(num_iters))
    return jnp.linalg.eigvalsh(_lanczos(matvec, v0, int(num_iters))[0])[-1]


def tracked_top_eigenvalue(
    loss_fn: LossFn,
    params: PyTree,
    previous: jax.Array,
    key: jax.Array,
    num_iters: int = 20,
    tol: float = 3e-3,
    *,
    preconditioner: PyTree | None = None,
) -> eigensolver.Tracked:
    r"""The sharpness (or, with ``preconditioner``, the preconditioned sharpness, as in
    :func:`top_eigenvalue`) warm-started from ``previous``, the flat top eigenvector of the
    last evaluation (zeros for none): :func:`eigensolver.track_top` on Hessian-vector
    products, stopped at relative residual ``tol``, at most ``num_iters`` steps warm and
    ``num_iters`` cold. Returns the ``Tracked`` pair (keep ``vector`` for the next call)."""
    matvec, n = _flat_hvp(loss_fn, params)
    if previous.shape != (n,):
        raise ValueError(f"previous: expected shape ({n},), got {previous.shape}")
    if preconditioner is not None:
        matvec = _preconditioned(matvec, params, preconditioner)
    return eigensolver.track_top(matvec, previous, key, iters=num_iters, tol=tol)


def _preconditioned(matvec, params: PyTree, preconditioner: PyTree):
    r""":math:`v \mapsto P^{-1/2} H P^{-1/2} v` for a diagonal ``preconditioner``."""
    if jax.tree.structure(preconditioner) != jax.tree.structure(params):
        raise ValueError("preconditioner: expected a pytree with the structure of params")
    flat = ravel_pytree(params)[0]
    scale = jax.lax.rsqrt(ravel_pytree(preconditioner)[0].astype(flat.dtype))
    return lambda v: scale * matvec(scale * v)


def _check_iters(num_iters: int, n: int, minimum: int = 1) -> int:
    if int(num_iters) < minimum:
        raise ValueError(f"num_iters: expected >= {minimum}, got {num_iters}")
    if int(num_iters) > n:
        raise ValueError(f"num_iters: expected <= {n} (the number of parameters), got {num_iters}")
    return int(num_iters)


def top_eigenpairs(
    loss_fn: LossFn, params: PyTree, key: jax.Array, k: int, num_iters: int = 40
) -> tuple[jax.Array, jax.Array]:
    r"""The ``k`` largest eigenvalues of the Hessian and their eigenvectors (Ritz pairs).

    ``num_iters`` Lanczos steps with full reorthogonalisation from a random unit vector give
    :math:`T = V \nabla^2 L\, V^\top = U \Theta U^\top`; the Ritz pairs are
    :math:`(\theta_i, U_{:,i}^\top V)`. The largest converge first (their residuals
    :math:`\|\nabla^2 L\, x_i - \theta_i x_i\|` fall geometrically with the iterations), and
    every Ritz value is a Rayleigh quotient, :math:`\theta_i = x_i^\top \nabla^2 L\, x_i`.

    Args:
      loss_fn, params, key: as for :func:`top_eigenvalue`.
      k: number of pairs (static), ``1 <= k <= num_iters``.
      num_iters: Lanczos steps (static), at most the number of parameters.

    Returns:
      ``(values, vectors)``: ``values`` of shape ``(k,)`` in decreasing order, ``vectors`` of
      shape ``(k, n)``, orthonormal rows in the order of ``ravel_pytree(params)`` (use its
      ``unravel`` for a parameter pytree).
    """
    matvec, n = _flat_hvp(loss_fn, params)
    num_iters = _check_iters(num_iters, n)
    if not 1 <= int(k) <= num_iters:
        raise ValueError(f"k: expected 1 <= k <= num_iters = {num_iters}, got {k}")
    v0 = jax.random.normal(key, (n,), ravel_pytree(params)[0].dtype)
    tri, basis = _lanczos(matvec, v0 / jnp.linalg.norm(v0), num_iters)
    values, vectors = jnp.linalg.eigh(tri)
    top = vectors[:, ::-1][:, : int(k)]
    return values[::-1][: int(k)], top.T @ basis


def spectral_measure(
    loss_fn: LossFn, params: PyTree, vector: PyTree, num_iters: int
) -> tuple[jax.Array, jax.Array]:
    r"""Gauss quadrature of the Hessian's spectral measure seen from ``vector``.

    Lanczos from :math:`u = v / \|v\|` gives :math:`T_m = U \Theta U^\top`; with nodes
    :math:`\theta_j` and weights :math:`w_j = \|v\|^2 U_{1j}^2`,

    .. math::
        \sum_j w_j\, f(\theta_j) \approx v^\top f(\nabla^2 L)\, v
        = \sum_i (q_i^\top v)^2 f(\lambda_i),

    exactly for every polynomial :math:`f` of degree below :math:`2m` (Golub and Meurant):
    the weights are how much of :math:`v` lies along each part of the spectrum. With the
    gradient as ``vector``, this is the loss's own view of the curvature.

    Args:
      loss_fn, params: as for :func:`top_eigenvalue`.
      vector: a pytree with the structure of ``params`` (non-zero).
      num_iters: quadrature nodes ``m`` (static), at most the number of parameters.

    Returns:
      ``(nodes, weights)``, each of shape ``(m,)``; the weights sum to :math:`\|v\|^2`.

    References:
      Golub, Meurant, "Matrices, Moments and Quadrature with Applications", 2010.
    """
    matvec, n = _flat_hvp(loss_fn, params)
    num_iters = _check_iters(num_iters, n)
    flat = ravel_pytree(vector)[0]
    norm = jnp.linalg.norm(flat)
    tri, _ = _lanczos(matvec, flat / norm, num_iters)
    nodes, vectors = jnp.linalg.eigh(tri)
    return nodes, norm**2 * vectors[0] ** 2

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


def _lanczos(matvec, v0: jax.Array, num_iters: int) -> jax.Array:
    r"""Largest eigenvalue of the tridiagonal Lanczos matrix, full reorthogonalisation."""
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
    _, (alphas, betas) = jax.lax.scan(body, init, jnp.arange(num_iters))
    off = betas[:-1]
    tri = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(tri)[-1]


def top_eigenvalue(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    num_iters: int = 20,
    *,
    method: str = "lanczos",
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

    Args:
      loss_fn: scalar loss of the parameters (close over a fixed data subset).
      params: parameter pytree.
      key: PRNG key for the starting vector.
      num_iters: number of Hessian-vector products (static).
      method: ``'lanczos'`` or ``'power'`` (static).

    Returns:
      A float scalar.

    References:
      Lanczos, "An iteration method for the solution of the eigenvalue problem", 1950.
      Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient Descent on Neural Networks Typically
      Occurs at the Edge of Stability", ICLR 2021.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if int(num_iters) < 1:
        raise ValueError(f"num_iters: expected >= 1, got {num_iters}")
    matvec, n = _flat_hvp(loss_fn, params)
    dtype = ravel_pytree(params)[0].dtype
    v0 = jax.random.normal(key, (n,), dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    if method == "power":
        return _power(matvec, v0, int(num_iters))
    return _lanczos(matvec, v0, int(num_iters))

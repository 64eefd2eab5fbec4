r"""Central flows: the time-averaged trajectory of an update rule at the edge of stability.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with
Central Flows", ICLR 2025. At the edge of stability gradient descent oscillates along the top
Hessian eigenvectors with period two; averaged over the oscillation (covariance :math:`\Sigma`
in the span of the critical eigenvectors) the gradient picks up the third-order term
:math:`\tfrac12\nabla\langle\Sigma, \nabla^2L\rangle`, and the averaged weights follow

.. math::
    \frac{dw}{dt} = -\eta_{\text{eff}}\Big[\nabla L(w) + \tfrac12\nabla\langle\Sigma,
    \nabla^2 L(w)\rangle\Big],
    \qquad 0 \preceq \Sigma \perp S^* I - U^\top\nabla^2L\,U \succeq 0,

the smallest oscillation that keeps the sharpness at the rule's limit :math:`S^*` (a
semidefinite complementarity problem, :mod:`gdyn_jax.predictions.sdcp`). The loss averaged over
the oscillation is predicted as :math:`L(w) + \tfrac12 S^*\operatorname{tr}\Sigma`
(:math:`L + \operatorname{tr}\Sigma/\eta` for GD).

The paper derives it for GD and RMSProp. Here the rule enters only through
:func:`gdyn_jax.predictions.edge.rule_edge`, from its own code: the limit :math:`S^*`, a check
that it leaves stability with a real pole at :math:`z=-1` (a period-2 oscillation: heavy ball
and Nesterov do; a rule leaving with a complex pair is refused), and the effective step
:math:`\eta_{\text{eff}}` (the open loop's gain at :math:`z=1`: :math:`\eta/(1-\beta)` for
heavy ball and Nesterov). One unit of time is one optimizer step, integrated by Euler with
``substeps`` substeps, as the authors' ``minimal.py``: at each substep the top ``num_eigs``
eigenpairs come from the warm-started block eigensolver
(:func:`gdyn_jax.measurements.eigensolver.eigenpairs`), the third derivatives
:math:`\nabla_w(u_a^\top\nabla^2L\,u_b)` as gradients of Hessian-vector products, and
:math:`\Sigma = UXU^\top` from the complementarity problem on the margin linearised one substep
ahead. Beside it, gradient flow with the same effective step (the *stable* flow).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax.errors import UsageError
from gdyn_jax.measurements.eigensolver import eigenpairs
from gdyn_jax.predictions.edge import RuleEdge, rule_edge
from gdyn_jax.predictions.sdcp import solve_sdcp
from gdyn_jax.predictions.smoothness import nonsmooth_operations

__all__ = ["CentralFlow", "central_flow", "flow_derivatives"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class CentralFlow:
    r"""A rule's central flow and stable flow, one row per optimizer step :math:`t = 0..T-1`.

    ``params`` (T+1, n) flat time-averaged weights :math:`w(t)` (``unravel`` maps a row back
    to the pytree); ``loss`` :math:`L(w)`; ``predicted_loss`` :math:`L(w) + \tfrac12 S^*
    \operatorname{tr}\Sigma`; ``sharpness`` :math:`\lambda_1(\nabla^2L(w))`; ``eigenvalues``
    (T, k); ``sigma`` (T, k, k) :math:`X` with :math:`\Sigma = UXU^\top` in the eigenvector
    basis of that step; ``sdcp_residual`` and ``eig_residual`` the solvers' residuals (largest
    over the step's substeps); ``stable_params`` and ``stable_loss`` the gradient flow with the
    effective step; ``edge`` the rule's :class:`~gdyn_jax.predictions.edge.RuleEdge`.
    """

    params: np.ndarray
    loss: np.ndarray
    predicted_loss: np.ndarray
    sharpness: np.ndarray
    eigenvalues: np.ndarray
    sigma: np.ndarray
    sdcp_residual: np.ndarray
    eig_residual: np.ndarray
    stable_params: np.ndarray
    stable_loss: np.ndarray
    edge: RuleEdge
    unravel: Callable[[Any], PyTree]


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
    index = np.zeros((k, k), int)
    index[rows, cols] = index[cols, rows] = np.arange(rows.size)
    return upper[index]


def _substep(loss, edge: RuleEdge, dt: float, eig_options: dict, sdcp_iters: int):
    eta, limit = edge.effective_step, edge.limit

    def hvp(w, v):
        return jax.jvp(jax.grad(loss), (w,), (v,))[1]

    def substep(carry, _):
        w, u, x, key = carry
        key, sub = jax.random.split(key)
        value, grad = jax.value_and_grad(loss)(w)
        eig = eigenpairs(lambda v: hvp(w, v), u, sub, **eig_options)
        k, u = eig.values.size, eig.vectors
        drift = -eta * grad

        def projected(x_):  # U^T H(x_) U, whose derivative along the drift is forward mode
            return u.T @ jax.vmap(lambda v: hvp(x_, v), 1, 1)(u)

        dh = jax.jvp(projected, (w,), (drift,))[1]
        margin = limit * jnp.eye(k) - (jnp.diag(eig.values) + dt * 0.5 * (dh + dh.T))

        def oscillating(x0):  # the margin closes within the substep: solve for Sigma
            gflat = flow_derivatives(loss, w, u).reshape(k * k, -1)
            coupling = (0.5 * dt * eta) * (gflat @ gflat.T).reshape(k, k, k, k)
            x_, residual = solve_sdcp(margin, coupling, x0, sdcp_iters)
            return x_, residual, -0.5 * eta * (gflat.T @ x_.reshape(-1))

        def stable(x0):  # the margin stays PSD: Sigma = 0, gradient flow
            return jnp.zeros_like(x0), jnp.zeros((), w.dtype), jnp.zeros_like(w)

        open_ = jnp.linalg.eigvalsh(margin)[0] >= 0
        x, residual, pull = jax.lax.cond(open_, stable, oscillating, x)
        w_next = w + dt * (drift + pull)
        row = (value, value + 0.5 * limit * jnp.trace(x), eig.values, x, residual / limit)
        return (w_next, u, x, key), (*row, jnp.max(eig.residuals))

    return substep


def _check(steps, num_eigs, substeps, n):
    for name, value, low, high in (
        ("steps", steps, 1, None),
        ("num_eigs", num_eigs, 1, n),
        ("substeps", substeps, 1, None),
    ):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise UsageError(f"{name}: expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise UsageError(f"{name}: expected an integer {bound}, got {value}")


def central_flow(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    optimizer: optax.GradientTransformation,
    steps: int,
    *,
    num_eigs: int = 2,
    substeps: int = 4,
    stable_substeps: int = 10,
    sdcp_iters: int = 200,
    eig_iters: int = 30,
    eig_tol: float | None = None,
    seed: int = 0,
    check_smooth: bool = True,
) -> CentralFlow:
    r"""Integrate the central flow of ``optimizer`` on ``loss_fn`` from ``params`` for ``steps``.

    Args:
      loss_fn: the full-batch loss, a scalar function of the parameter pytree (three times
        differentiable: a tanh/GELU network, not ReLU).
      params: the initial parameters (the real run's initialisation).
      optimizer: an optax-style transform, affine in the gradient, leaving stability at
        :math:`z=-1` (GD, heavy ball, Nesterov, or a user's rule that does).
      steps: optimizer steps to integrate (one unit of time each).
      num_eigs: Hessian eigenpairs tracked (at least the number that reach the limit).
      substeps, stable_substeps: Euler substeps per step of the central and the stable flow
        for GD; the central flow's are multiplied by :math:`\eta_{\text{eff}} S^*/2` (Euler's
        stability on the stiffest critical direction: 19 for heavy ball at :math:`\beta=0.9`).
      sdcp_iters, eig_iters, eig_tol: solver budgets (``eig_tol`` default
        :math:`10\sqrt{\epsilon}` of the parameters' dtype).
      seed: the eigensolver's random start.
      check_smooth: refuse a loss with non-smooth operations (:func:`nonsmooth_operations`).

    Returns :class:`CentralFlow`.
    """
    flat, unravel = ravel_pytree(params)
    sizes = (flat.size, steps, num_eigs, substeps, stable_substeps)
    edge = _validate(loss_fn, params, optimizer, *sizes, check_smooth)

    def loss(w):
        return loss_fn(unravel(w))

    # Euler is stable on a direction of curvature S* only if dt * eta_eff * S* < 2: GD's
    # eta * S* = 2, heavy ball's is 38 at beta = 0.9, so the substeps scale with it
    substeps = max(substeps, int(np.ceil(substeps * edge.effective_step * edge.limit / 2)))
    tol = float(10 * np.sqrt(np.finfo(flat.dtype).eps)) if eig_tol is None else eig_tol
    options = dict(iters=eig_iters, tol=tol)
    rows = _integrate(loss, flat, edge, steps, num_eigs, substeps, sdcp_iters, options, seed)
    stable, stable_loss = _stable(loss, flat, edge.effective_step, steps, stable_substeps)
    return CentralFlow(*rows, stable, stable_loss, edge, unravel)


def _validate(
    loss_fn, params, optimizer, n, steps, num_eigs, substeps, stable_substeps, check_smooth
) -> RuleEdge:
    """One-line errors on bad input, before any expensive work; the rule's edge."""
    _check(steps, num_eigs, substeps, n)
    _check(steps, num_eigs, stable_substeps, n)
    if not callable(loss_fn):
        raise UsageError(f"loss_fn: expected a function of the parameters, got {loss_fn!r}")
    if check_smooth and (ops := nonsmooth_operations(loss_fn, params)):
        raise UsageError(
            f"loss_fn: not three times differentiable (it uses {', '.join(ops)}, e.g. a ReLU-"
            "like activation); a central flow needs third derivatives (tanh, GELU, softplus)"
        )
    edge = rule_edge(optimizer)
    if not edge.supported:
        raise UsageError(f"optimizer: its exit from stability is not averaged here: {edge.reason}")

    return edge


def _integrate(loss, w0, edge, steps, k, substeps, sdcp_iters, options, seed):
    substep = _substep(loss, edge, 1.0 / substeps, options, sdcp_iters)
    key = jax.random.key(seed)
    u0 = jax.random.normal(jax.random.fold_in(key, 1), (w0.size, k), w0.dtype)

    @jax.jit
    def run(w0, u0, key):
        def step(carry, _):
            carry, rows = jax.lax.scan(substep, carry, None, length=substeps)
            loss_, pred, lam, x, res, eres = rows
            return carry, (carry[0], loss_[0], pred[0], lam[0], x[0], res.max(), eres.max())

        x0 = jnp.zeros((k, k), w0.dtype)
        _, out = jax.lax.scan(step, (w0, u0, x0, key), None, length=steps)
        return out

    ws, loss_, pred, lam, x, res, eres = map(np.asarray, run(w0, u0, key))
    params = np.concatenate([np.asarray(w0)[None], ws])
    return params, loss_, pred, lam[:, 0], lam, x, res, eres


def _stable(loss, w0, eta, steps, substeps):
    dt = 1.0 / substeps

    @jax.jit
    def run(w0):
        def step(w, _):
            value = loss(w)
            w = jax.lax.fori_loop(0, substeps, lambda _, w: w - dt * eta * jax.grad(loss)(w), w)
            return w, (w, value)

        return jax.lax.scan(step, w0, None, length=steps)[1]

    ws, values = run(w0)
    return np.concatenate([np.asarray(w0)[None], np.asarray(ws)]), np.asarray(values)

r"""Central flows: the time-averaged trajectory of an update rule at the edge of stability.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with
Central Flows", ICLR 2025. At the edge of stability gradient descent oscillates along the top
Hessian eigenvectors with period two; averaged over the oscillation (covariance :math:`\Sigma`
in the span of the critical eigenvectors) the gradient picks up the third-order term
:math:`\tfrac12\nabla\langle\Sigma, \nabla^2L\rangle`, and the averaged weights follow

.. math::
    \frac{dw}{dt} = -\eta_{\text{eff}}\,v, \qquad
    \tau\frac{dv}{dt} = \bar g - v, \qquad
    \bar g = \nabla L(w) + \tfrac12\nabla\langle\Sigma, \nabla^2 L(w)\rangle,
    \qquad 0 \preceq \Sigma \perp S^* I - U^\top\nabla^2L\,U \succeq 0,

with :math:`\Sigma` the smallest oscillation that keeps the sharpness at the rule's limit
:math:`S^*` (a semidefinite complementarity problem, :mod:`gdyn_jax.predictions.sdcp`). The
loss averaged over the oscillation is predicted as :math:`L(w) + \tfrac12 S^*\operatorname{tr}
\Sigma` (:math:`L + \operatorname{tr}\Sigma/\eta` for GD).

The paper derives it for GD (:math:`\tau = 0`, :math:`v = \bar g`: its flow) and RMSProp. Here
the rule enters only through :func:`gdyn_jax.predictions.edge.rule_edge`, from its own code: the
limit :math:`S^*`, a check that it leaves stability with a real pole at :math:`z=-1` (a
period-2 oscillation: heavy ball and Nesterov do; a rule leaving with a complex pair is
refused), the effective step :math:`\eta_{\text{eff}}` (the open loop's gain at :math:`z=1`:
:math:`\eta/(1-\beta)` for heavy ball and Nesterov) and its delay :math:`\tau` (the open loop's
group delay at :math:`z=1`: 9 steps for heavy ball at :math:`\beta=0.9`). The lag is the rule's
low-frequency dynamics to first order in :math:`z-1`: without it a momentum method's flow runs
ahead of the real run (its momentum starts at zero) and relaxes the stiff directions at
:math:`\eta_{\text{eff}}\lambda` per step (38 at the limit) where the real run relaxes them at
:math:`1/2\tau` (its poles of modulus :math:`\sqrt\beta`).

One unit of time is one optimizer step, integrated with ``substeps`` substeps as the authors'
``minimal.py`` (for GD exactly its explicit Euler step; otherwise :math:`v` first, exactly
through the lag, then :math:`w`): at each substep the top ``num_eigs`` eigenpairs come from the
warm-started block eigensolver (:func:`gdyn_jax.measurements.eigensolver.eigenpairs`), the third
derivatives :math:`\nabla_w(u_a^\top\nabla^2L\,u_b)` as gradients of Hessian-vector products,
and :math:`\Sigma = UXU^\top` from the complementarity problem on the margin linearised one
substep ahead. Beside it, the same flow with :math:`\Sigma = 0` (the *stable* flow: gradient flow
with the effective step, through the rule's lag).

Plain RMSProp, not affine in the gradient, is recognised from its state and probed update and
integrated as the paper does, in :math:`(w, \nu)`: gradient descent preconditioned by
:math:`D = \sqrt{\hat\nu+\epsilon}`, its limit :math:`S^* = 2/\eta` on the preconditioned
sharpness :math:`\lambda_{\max}(D^{-1}\nabla^2L)`, :math:`\Sigma = UXU^\top` on the critical
eigenvectors of :math:`D^{-1}\nabla^2L` (:math:`U^\top DU = I`), :math:`\nu` following
:math:`\tfrac{1-\rho}{\rho}[\nabla L^{\odot2} + \operatorname{diag}(H\Sigma H) - \nu]`, and the
predicted loss :math:`L(w) + \tfrac12 S^*\operatorname{tr}X = L(w) + \tfrac12 S^*\langle D,
\Sigma\rangle` (Cohen et al. 2025, section 5 and their ``RMSProp`` update rule; derivation in
``gdyn_jax/predictions/_rmsprop_flow.py``). The paper starts RMSProp's flow a few real steps
in (``opt_state``), past the first steps where :math:`\nu` is still small and the
preconditioned sharpness far above :math:`S^*`.
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
from gdyn_jax.predictions import _rmsprop_flow
from gdyn_jax.predictions._rmsprop_flow import RMSPropRule, rmsprop_rule
from gdyn_jax.predictions._third_order import flow_derivatives
from gdyn_jax.predictions.edge import RuleEdge, rule_edge
from gdyn_jax.predictions.sdcp import solve_sdcp
from gdyn_jax.predictions.smoothness import nonsmooth_operations

__all__ = ["CentralFlow", "central_flow", "flow_derivatives", "min_substeps"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class CentralFlow:
    r"""A rule's central flow and stable flow, one row per optimizer step :math:`t = 0..T-1`.

    ``params`` (T+1, n) flat time-averaged weights :math:`w(t)` (``unravel`` maps a row back
    to the pytree); ``loss`` :math:`L(w)`; ``predicted_loss`` :math:`L(w) + \tfrac12 S^*
    \operatorname{tr}\Sigma`; ``sharpness`` :math:`\lambda_1(\nabla^2L(w))`; ``eigenvalues``
    (T, k); ``sigma`` (T, k, k) :math:`X` with :math:`\Sigma = UXU^\top` in the eigenvector
    basis of that step; ``sdcp_residual`` and ``eig_residual`` the solvers' residuals
    (largest over the step's substeps); ``substeps`` those taken per step;
    ``stable_params`` and ``stable_loss`` the gradient flow with the effective step;
    ``edge`` the rule's :class:`~gdyn_jax.predictions.edge.RuleEdge`.

    For RMSProp (``rmsprop`` its hyperparameters, read from its code) ``sharpness`` and
    ``eigenvalues`` are the *preconditioned* ones, of :math:`D^{-1}\nabla^2L` with
    :math:`D = \sqrt{\hat\nu+\epsilon}`; ``sigma`` is :math:`X` with :math:`\Sigma = UXU^\top`,
    :math:`U^\top DU = I`; ``predicted_loss`` is :math:`L(w) + \tfrac12 S^*\operatorname{tr}X
    = L(w) + \tfrac12 S^*\langle D, \Sigma\rangle`; ``nu`` (T+1, n) and ``stable_nu`` (T, n)
    the flows' second moments :math:`\nu` (the stable flow's after each step); ``edge`` is that
    of the rule with :math:`\nu` frozen (gradient descent on the preconditioned loss,
    :math:`S^* = 2/\eta`).
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
    substeps: tuple[int, int]
    unravel: Callable[[Any], PyTree]
    rmsprop: RMSPropRule | None = None
    nu: np.ndarray | None = None
    stable_nu: np.ndarray | None = None

    def beyond_limit(self, rtol: float = 0.01) -> np.ndarray:
        """Per step, whether the flow's sharpness exceeds :math:`S^*` by more than ``rtol``:
        more directions crossed the limit than ``num_eigs`` tracks (or a solver failed), so
        that step is not the central flow: undecided, not a prediction. Count them before
        reading ``predicted_loss``; a larger ``num_eigs`` is the remedy."""
        return np.asarray(self.sharpness) > (1.0 + rtol) * self.edge.limit


def _substep(loss, edge: RuleEdge, dt: float, eig_options: dict, sdcp_iters: int):
    r"""One substep: :math:`v \leftarrow e^{-dt/\tau}v + (1-e^{-dt/\tau})\bar g`, then
    :math:`w \leftarrow w - dt\,\eta_{\text{eff}}v` (explicit Euler when :math:`\tau = 0`)."""
    eta, limit = edge.effective_step, edge.limit
    c, gain = dt * eta, float(-np.expm1(-dt / edge.delay)) if edge.delay > 0 else 1.0

    def substep(carry, _):
        w, v, u, x, key = carry
        key, sub = jax.random.split(key)
        value, grad = jax.value_and_grad(loss)(w)

        def hvp(vec):
            return jax.jvp(jax.grad(loss), (w,), (vec,))[1]

        eig = eigenpairs(hvp, u, sub, **eig_options)
        k, u = eig.values.size, eig.vectors
        gflat = flow_derivatives(loss, w, u).reshape(k * k, -1)
        v_free = (1.0 - gain) * v + gain * grad  # the lag's output without the oscillation
        # the margin S* I - U^T H U one substep ahead, w moving by -c v: without the
        # oscillation A = S* I - Lambda + c G v_free, and B[X] = (c gain / 2) G G^T X
        drift = (gflat @ v_free).reshape(k, k)
        margin = limit * jnp.eye(k) - jnp.diag(eig.values) + 0.5 * c * (drift + drift.T)
        coupling = (0.5 * c * gain) * (gflat @ gflat.T).reshape(k, k, k, k)
        x, residual = solve_sdcp(margin, coupling, x, sdcp_iters)
        v = v_free + 0.5 * gain * (gflat.T @ x.reshape(-1))
        row = (value, value + 0.5 * limit * jnp.trace(x), eig.values, x, residual / limit)
        return (w - c * v, v, u, x, key), (*row, jnp.max(eig.residuals))

    return substep


def min_substeps(edge: RuleEdge, curvature: float) -> int:
    r"""The fewest substeps per step on which the scheme is stable with margin 2 on a direction
    of ``curvature``: :math:`c\,a\,\lambda \le 2 - a` for :math:`c = \eta_{\text{eff}}/N`,
    :math:`a = 1 - e^{-1/(N\tau)}` (the update's trace bound :math:`c a \lambda < 4 - 2a`,
    halved); GD's :math:`\eta\lambda/N \le 1`."""
    for n in range(1, 10_000):
        gain = float(-np.expm1(-1.0 / (n * edge.delay))) if edge.delay > 0 else 1.0
        if edge.effective_step / n * gain * curvature <= (2.0 - gain) * (1 + 1e-9):
            return n
    return 10_000


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
    stable_substeps: int | None = None,
    sdcp_iters: int = 200,
    eig_iters: int = 30,
    eig_tol: float | None = None,
    seed: int = 0,
    check_smooth: bool = True,
    opt_state: optax.OptState | None = None,
) -> CentralFlow:
    r"""Integrate the central flow of ``optimizer`` on ``loss_fn`` from ``params`` for ``steps``.

    Args:
      loss_fn: the full-batch loss, a scalar function of the parameter pytree (three times
        differentiable: a tanh/GELU network, not ReLU).
      params: the initial parameters (the rule's state starts at zero, as optax's does).
      optimizer: an optax-style transform, affine in the gradient, leaving stability at
        :math:`z=-1` (GD, heavy ball, Nesterov, or a user's rule that does), or plain RMSProp
        (``optimizers.rmsprop`` or ``optax.rmsprop`` without momentum, schedule or centring;
        bias correction and either placement of :math:`\epsilon` are read from its update).
      steps: optimizer steps to integrate (one unit of time each).
      num_eigs: Hessian eigenpairs tracked (at least the number that reach the limit).
      substeps, stable_substeps: substeps per step of the central and the stable flow
        (``stable_substeps`` defaults to ``substeps``); each is raised to
        :func:`min_substeps` at :math:`S^*` (central) or :math:`2S^*` (stable: its sharpness
        is not held).
      sdcp_iters, eig_iters, eig_tol, seed: solver budgets (``eig_tol`` default
        :math:`10\sqrt{\epsilon}` of the parameters' dtype), the eigensolver's random start.
      check_smooth: refuse a loss with non-smooth operations (:func:`nonsmooth_operations`).
      opt_state: RMSProp only: the state to start from (default ``optimizer.init(params)``),
        e.g. a real run's a few steps in, as the paper starts it (module doc).

    Returns :class:`CentralFlow`.
    """
    flat, unravel = ravel_pytree(params)
    stable_substeps = substeps if stable_substeps is None else stable_substeps
    sizes = (flat.size, steps, num_eigs, substeps, stable_substeps)
    edge, rms = _validate(loss_fn, params, optimizer, *sizes, check_smooth)
    rms = _starting_state(rms, opt_state, params)

    def loss(w):
        return loss_fn(unravel(w))

    substeps = max(substeps, min_substeps(edge, edge.limit))
    stable_substeps = max(stable_substeps, min_substeps(edge, 2 * edge.limit))
    tol = float(10 * np.sqrt(np.finfo(flat.dtype).eps)) if eig_tol is None else eig_tol
    options = dict(iters=eig_iters, tol=tol)
    counts = (substeps, stable_substeps)
    if rms is not None:
        args = (steps, num_eigs, counts, sdcp_iters, options, seed)
        return _rmsprop_central_flow(loss, flat, unravel, rms, edge, *args)
    rows = _integrate(loss, flat, edge, steps, num_eigs, substeps, sdcp_iters, options, seed)
    stable, stable_loss = _stable(loss, flat, edge, steps, stable_substeps)
    return CentralFlow(*rows, stable, stable_loss, edge, counts, unravel)


def _rmsprop_central_flow(loss, flat, unravel, rms, edge, steps, num_eigs, counts, *solver):
    """RMSProp's central and stable flows as a :class:`CentralFlow` (``solver``: sdcp_iters,
    eigensolver options, seed)."""
    sdcp_iters, options, seed = solver
    args = (steps, num_eigs, counts[0], sdcp_iters, options, seed)
    rows, nu = _rmsprop_flow.integrate(loss, flat, rms, *args)
    stable, stable_loss, stable_nu = _rmsprop_flow.stable(loss, flat, rms, steps, counts[1])
    extra = dict(rmsprop=rms, nu=nu, stable_nu=stable_nu)
    return CentralFlow(*rows, stable, stable_loss, edge, counts, unravel, **extra)


def _starting_state(rms, opt_state, params):
    """RMSProp's flow started from ``opt_state`` (``rms`` unchanged when it is None); a
    one-line ``UsageError`` for an affine rule's or a foreign state."""
    if opt_state is None:
        return rms
    if rms is None:
        raise UsageError(
            "opt_state: only RMSProp's central flow starts from a given state (an affine "
            "rule's starts at rest)"
        )
    try:
        return _rmsprop_flow.starting_at(rms, opt_state, params)
    except ValueError as error:
        raise UsageError(f"opt_state: {error}") from None


def _validate(
    loss_fn, params, optimizer, n, steps, num_eigs, substeps, stable_substeps, check_smooth
) -> tuple[RuleEdge, RMSPropRule | None]:
    """One-line errors on bad input, before any expensive work; the rule's edge (and, for
    plain RMSProp, its hyperparameters)."""
    _check(steps, num_eigs, substeps, n)
    _check(steps, num_eigs, stable_substeps, n)
    if not callable(loss_fn):
        raise UsageError(f"loss_fn: expected a function of the parameters, got {loss_fn!r}")
    if check_smooth and (ops := nonsmooth_operations(loss_fn, params)):
        raise UsageError(
            f"loss_fn: not three times differentiable (it uses {', '.join(ops)}, e.g. a ReLU-"
            "like activation); a central flow needs third derivatives (tanh, GELU, softplus)"
        )
    if not isinstance(optimizer, optax.GradientTransformation):
        raise UsageError(f"optimizer: expected an optax GradientTransformation, got {optimizer!r}")
    rms, reason = rmsprop_rule(optimizer, params)
    if reason:
        raise UsageError(f"optimizer: not plain RMSProp ({reason})")
    if rms is not None:  # gradient descent on the preconditioned loss while nu is frozen
        return rule_edge(optax.sgd(rms.learning_rate)), rms
    try:
        edge = rule_edge(optimizer)
    except UsageError as error:
        if "not an affine rule" not in str(error):
            raise
        raise UsageError(f"{error}; plain RMSProp is the one non-affine rule accepted") from None
    if not edge.supported:
        raise UsageError(f"optimizer: its exit from stability is not averaged here: {edge.reason}")
    return edge, None


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
        _, out = jax.lax.scan(step, (w0, jnp.zeros_like(w0), u0, x0, key), None, length=steps)
        return out

    ws, loss_, pred, lam, x, res, eres = map(np.asarray, run(w0, u0, key))
    params = np.concatenate([np.asarray(w0)[None], ws])
    return params, loss_, pred, lam[:, 0], lam, x, res, eres


def _stable(loss, w0, edge: RuleEdge, steps, substeps):
    r"""The flow with :math:`\Sigma = 0`: gradient flow with the effective step, lagged."""
    c = edge.effective_step / substeps
    gain = float(-np.expm1(-1.0 / (substeps * edge.delay))) if edge.delay > 0 else 1.0

    def substep(carry, _):
        w, v = carry
        v = (1.0 - gain) * v + gain * jax.grad(loss)(w)
        return (w - c * v, v), None

    @jax.jit
    def run(w0):
        def step(carry, _):
            value = loss(carry[0])
            carry = jax.lax.scan(substep, carry, None, length=substeps)[0]
            return carry, (carry[0], value)

        return jax.lax.scan(step, (w0, jnp.zeros_like(w0)), None, length=steps)[1]

    ws, values = run(w0)
    return np.concatenate([np.asarray(w0)[None], np.asarray(ws)]), np.asarray(values)

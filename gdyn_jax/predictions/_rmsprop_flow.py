r"""RMSProp's central flow (Cohen, Damian, Talwalkar, Kolter, Lee, ICLR 2025, section 5).

RMSProp is not affine in the gradient, so :func:`~gdyn_jax.predictions.edge.rule_edge` cannot
read its edge off a transfer function. It is gradient descent with the diagonal preconditioner
:math:`D = \sqrt{\hat\nu + \epsilon}` (or :math:`\sqrt{\hat\nu} + \epsilon`), frozen over a
step: stable while the *preconditioned* sharpness :math:`\lambda_{\max}(D^{-1}H) \le 2/\eta`,
leaving with a period-2 oscillation, and :math:`\nu` is a slow state with its own flow. The
paper's central flow, in optimizer steps and written with :math:`S^* = 2/\eta`:

.. math::
    \frac{dw}{dt} = -\eta D^{-1}\big[\nabla L + \tfrac12\nabla\langle\Sigma, H\rangle\big],
    \qquad \frac{d\nu}{dt} = \kappa\big[\nabla L^{\odot 2} + \operatorname{diag}(H\Sigma H)
    - \nu\big], \qquad \kappa = \frac{1-\rho}{\rho},

with :math:`\Sigma = UXU^\top`, :math:`U` the top generalised eigenvectors of :math:`(H, D)`
normalised :math:`U^\top D U = I` (so :math:`U^\top H U = \operatorname{diag}(\lambda)`, the
eigenvalues of :math:`D^{-1}H`), and :math:`X` the solution of
:math:`0 \preceq X \perp U^\top(S^*D - H)U \succeq 0` one substep ahead. The oscillation
enters :math:`\nu` as the variance it adds to the squared gradient,
:math:`\mathbb E[(\nabla L + H\delta)^{\odot2}] = \nabla L^{\odot2} + \operatorname{diag}(H\Sigma
H)`, which is how RMSProp stabilises itself: a larger :math:`\nu` raises :math:`D` and lowers
the preconditioned sharpness. :math:`\kappa = (1-\rho)/\rho` is the paper's rate: optax updates
:math:`\nu_t = \rho\nu_{t-1} + (1-\rho)g_t^2` before the step that uses it, and
:math:`\nu_t - \nu_{t-1} = \kappa(g_t^2 - \nu_t)` exactly; :math:`\nu(0)` is that first update,
:math:`\rho\nu_{\text{init}} + (1-\rho)\nabla L(w_0)^{\odot2}`. With bias correction
:math:`\hat\nu = \nu/(1-\rho^{t+1})` (step :math:`t` uses count :math:`t+1`), else
:math:`\hat\nu = \nu`.

The averaged loss is :math:`\mathbb E[L(w+\delta)] = L(w) + \tfrac12\langle\Sigma, H\rangle =
L(w) + \tfrac12\sum_a\lambda_a X_{aa}`, which at the edge (:math:`X_{aa} > 0` only where
:math:`\lambda_a = S^*`) is :math:`L(w) + \tfrac12 S^*\operatorname{tr}X = L(w) + \tfrac12
S^*\langle D, \Sigma\rangle`: the trace is taken in the preconditioned geometry (the paper's
``L + X.sum()``, its :math:`X` in units where :math:`S^* = 2`).

The rule is recognised from its state and behaviour, not its name (:func:`rmsprop_rule`): its
state must hold one ``optax.ScaleByRmsState`` (or the count-carrying one, bias correction) and
nothing else, and its update, probed on chosen second moments and gradients, must be
:math:`-\eta g/D(\hat\nu)` to 1e-3 with one :math:`(\eta, \rho, \epsilon)` on every coordinate.
``optimizers.rmsprop`` and ``optax.rmsprop`` without momentum, schedule or centring pass.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements.eigensolver import eigenpairs
from gdyn_jax.predictions._third_order import flow_derivatives
from gdyn_jax.predictions.sdcp import solve_sdcp

__all__ = ["RMSPropRule", "rmsprop_rule"]

# the state classes of optax.scale_by_rms without and with bias correction (the second is not
# exported by optax: read it off the transform's own init)
_COUNTED = type(optax.scale_by_rms(bias_correction=True).init({}))
_RMS_STATES = (optax.ScaleByRmsState, _COUNTED)
_TOL = 1e-3


def _is_rms(x) -> bool:
    return isinstance(x, _RMS_STATES)


def _rms_leaves(tree) -> tuple[list, list]:
    """(the leaves of an optimizer state, RMSProp's second-moment states kept whole; those
    states among them)."""
    leaves = jax.tree.leaves(tree, is_leaf=_is_rms)
    return leaves, [leaf for leaf in leaves if _is_rms(leaf)]


@dataclasses.dataclass(frozen=True)
class RMSPropRule:
    r"""Plain RMSProp read from its code: ``learning_rate`` :math:`\eta`, ``decay``
    :math:`\rho`, ``eps`` :math:`\epsilon` (inside the root when ``eps_in_sqrt``),
    ``bias_correction``; ``nu0`` the flat second moment and ``count0`` the count the flow
    starts from (its ``init``'s, or a given state's: :func:`starting_at`)."""

    learning_rate: float
    decay: float
    eps: float
    eps_in_sqrt: bool
    bias_correction: bool
    nu0: np.ndarray = dataclasses.field(repr=False, compare=False)
    count0: int = 0

    @property
    def limit(self) -> float:
        r""":math:`S^* = 2/\eta`, on the preconditioned sharpness."""
        return 2.0 / self.learning_rate

    @property
    def rate(self) -> float:
        r""":math:`\kappa = (1-\rho)/\rho`, the rate of :math:`\nu`'s flow per step."""
        return (1.0 - self.decay) / self.decay

    def preconditioner(self, nu, t):
        r""":math:`D(\nu, t) = \sqrt{\hat\nu+\epsilon}` (or :math:`\sqrt{\hat\nu}+\epsilon`)."""
        nu_hat = nu / (1.0 - self.decay ** (t + 1.0)) if self.bias_correction else nu
        sqrt = np.sqrt if isinstance(nu, np.ndarray) else jnp.sqrt
        if self.eps_in_sqrt:
            return sqrt(nu_hat + self.eps)
        return sqrt(nu_hat) + self.eps


def rmsprop_rule(optimizer: optax.GradientTransformation, params) -> tuple[RMSPropRule | None, str]:
    """``(rule, "")`` for a plain RMSProp; ``(None, reason)`` when the state holds RMSProp's
    second moment but the rule is not plain RMSProp; ``(None, "")`` when it holds none."""
    state = optimizer.init(params)
    leaves, found = _rms_leaves(state)
    if not found:
        return None, ""
    if len(found) > 1 or len(leaves) > 1:
        return None, (
            "RMSProp's second moment beside other state (momentum, a schedule's count, "
            "injected hyperparameters): only plain RMSProp's central flow is derived"
        )
    template = found[0]
    counted = isinstance(template, _COUNTED)
    flat_params, unravel = ravel_pytree(params)
    dtype = flat_params.dtype

    @jax.jit
    def probe(nu, g, count):
        nu_tree = unravel(nu)
        leaf = _COUNTED(count, nu_tree) if counted else optax.ScaleByRmsState(nu_tree)
        probe = jax.tree.map(lambda x: leaf if _is_rms(x) else x, state, is_leaf=_is_rms)
        updates, new = optimizer.update(unravel(g), probe, params)
        return ravel_pytree(updates)[0], ravel_pytree(_rms_leaves(new)[1][0].nu)[0]

    def respond(nu, g, count=0):
        """The rule's step and next second moment on ``nu`` and ``g`` (one compiled probe)."""
        shape = flat_params.shape
        nu, g = (jnp.broadcast_to(jnp.asarray(v, dtype), shape) for v in (nu, g))
        updates, nu_new = probe(nu, g, jnp.asarray(count, jnp.int32))
        return np.asarray(updates, np.float64), np.asarray(nu_new, np.float64)

    _, nu_next = respond(1.0, 0.0)
    decay = float(np.mean(nu_next))
    if not 0.0 < decay < 1.0 or np.ptp(nu_next) > _TOL * decay:
        return None, "its second moment is not an exponential average with one decay in (0, 1)"
    best, reason = _fit_step(respond, decay, counted, flat_params.size)
    if best is None:
        return None, reason
    nu0 = np.asarray(ravel_pytree(template.nu)[0])
    return dataclasses.replace(best, nu0=nu0), ""


def _fit_step(respond, decay: float, counted: bool, size: int):
    """``(rule, "")``: eta and eps (and where eps sits) fitted to the probed steps and checked
    on random inputs; ``(None, reason)`` when no RMSProp step fits."""
    probes = [(1e4, 1.0), (1.0, 1.0), (1e-4, 1e-2), (0.0, 1e-4), (0.0, 1e-6), (0.0, 1e-9)]
    nu_hat, ratio = [], []
    for nu, g in probes:
        updates, nu_new = respond(nu, g)
        if np.ptp(updates) > _TOL * np.max(np.abs(updates)) or np.any(updates >= 0):
            return None, "its step is not one descent step per coordinate scaled by RMS"
        nu_hat.append(nu_new[0] / ((1.0 - decay) if counted else 1.0))
        ratio.append(-g / updates[0])  # D(nu_hat) / eta
    nu_hat, ratio = np.array(nu_hat), np.array(ratio)
    fits = []
    for in_sqrt in (True, False):
        # weighted (relative) least squares: r^2 = nu/eta^2 + eps/eta^2, or r = sqrt(nu)/eta
        # + eps/eta
        lhs, feature = (ratio**2, nu_hat) if in_sqrt else (ratio, np.sqrt(nu_hat))
        design = np.stack([feature, np.ones_like(feature)], 1) / lhs[:, None]
        slope, intercept = np.linalg.lstsq(design, np.ones_like(lhs), rcond=None)[0]
        if slope <= 0:
            continue
        eta = float(1 / np.sqrt(slope)) if in_sqrt else float(1 / slope)
        eps = max(0.0, float(intercept / slope))
        fits.append((eta, eps, in_sqrt))
    for eta, eps, in_sqrt in fits:
        rule = RMSPropRule(eta, decay, eps, in_sqrt, counted, np.zeros(0))
        if _matches(rule, respond, size):
            return rule, ""
    return None, "its step is not -eta g / sqrt(nu + eps) (nor -eta g / (sqrt(nu) + eps))"


def starting_at(rule: RMSPropRule, opt_state, params) -> RMSPropRule:
    """``rule`` started from ``opt_state`` (a later state of the same RMSProp, e.g. a real
    run's a few steps in, as the paper's ``--warm-start``): its second moment and count.

    Raises:
      ValueError: ``opt_state`` holds no second moment shaped like ``params``.
    """
    found = _rms_leaves(opt_state)[1]
    flat = ravel_pytree(params)[0]
    if len(found) != 1 or isinstance(found[0], _COUNTED) != rule.bias_correction:
        raise ValueError("expected a state of this RMSProp (its init's or a later one)")
    nu = ravel_pytree(found[0].nu)[0]
    if nu.shape != flat.shape:
        raise ValueError(f"its second moment has {nu.size} entries, the parameters {flat.size}")
    if not bool(jnp.all(jnp.isfinite(nu) & (nu >= 0))):
        raise ValueError("its second moment must be finite and non-negative")
    count = int(found[0].count) if rule.bias_correction else 0
    return dataclasses.replace(rule, nu0=np.asarray(nu), count0=count)


def _matches(rule: RMSPropRule, respond, n: int) -> bool:
    """Whether the rule's step on random second moments and gradients (and a gradient of 1e3,
    a clipped rule's) is the model's, to ``_TOL``."""
    rng = np.random.default_rng(0)
    cases = [(rng.uniform(0.1, 2.0, n), rng.normal(size=n), 2), (1.0, 1e3, 0)]
    cases += [(0.0, 1e-6, 0), (1e-4, 1e-2, 5)]
    for nu, g, count in cases:
        updates, nu_new = respond(nu, g, count)
        g = np.broadcast_to(g, (n,))
        expected_nu = rule.decay * np.broadcast_to(nu, (n,)) + (1 - rule.decay) * g**2
        d = rule.preconditioner(np.asarray(expected_nu, np.float64), float(count))
        expected = -rule.learning_rate * g / d
        scale = np.abs(expected) + 1e-30
        if np.max(np.abs(updates - expected) / scale) > _TOL:
            return False
        if np.max(np.abs(nu_new - expected_nu) / (np.abs(expected_nu) + 1e-30)) > _TOL:
            return False
    return True


def initial_nu(rule: RMSPropRule, grad0: jax.Array) -> jax.Array:
    r""":math:`\nu(0) = \rho\nu_{\text{init}} + (1-\rho)\nabla L(w_0)^{\odot2}`."""
    nu0 = jnp.asarray(rule.nu0, grad0.dtype)
    return rule.decay * nu0 + (1.0 - rule.decay) * grad0**2


def substep(loss, rule: RMSPropRule, dt: float, eig_options: dict, sdcp_iters: int):
    r"""One explicit Euler substep of the central flow in :math:`(w, \nu, t)` (module docstring);
    :math:`X` from the complementarity problem on :math:`U^\top(S^*D - H)U` linearised one
    substep ahead."""
    eta, limit, kappa = rule.learning_rate, rule.limit, rule.rate

    def step(carry, _):
        w, nu, t, s, x, key = carry
        key, sub = jax.random.split(key)
        value, grad = jax.value_and_grad(loss)(w)
        d, d_dnu = jax.jvp(lambda n: rule.preconditioner(n, t), (nu,), (jnp.ones_like(nu),))
        root = jnp.sqrt(d)

        def sym_hvp(vec):  # D^{-1/2} H D^{-1/2}
            return jax.jvp(jax.grad(loss), (w,), (vec / root,))[1] / root

        eig = eigenpairs(sym_hvp, s, sub, **eig_options)
        k, s = eig.values.size, eig.vectors
        u = s / root[:, None]  # U^T D U = I, U^T H U = diag(lambda)
        g3 = flow_derivatives(loss, w, u)  # (k, k, n)
        gflat = g3.reshape(k * k, -1)
        hu = eig.values[None, :] * (root[:, None] * s)  # H u_a = lambda_a D u_a
        w_dot = -eta * grad / d
        nu_dot = kappa * (grad**2 - nu)
        d_dot = jax.jvp(
            lambda n, tt: rule.preconditioner(n, tt), (nu, t), (nu_dot, jnp.ones_like(t))
        )[1]
        du = jnp.einsum("ia,ib,i->ab", u, u, d_dot)
        drift = (gflat @ w_dot).reshape(k, k)
        margin = (
            limit * jnp.eye(k) - jnp.diag(eig.values) + dt * (limit * du - 0.5 * (drift + drift.T))
        )
        # B[X]: the oscillation's pull on w, (eta/2) G D^-1 G^T, and its push on nu through
        # diag(H Sigma H), with H u = S* D u on the critical block (symmetric, PSD)
        pull = 0.5 * eta * (gflat / d[None, :]) @ gflat.T
        uu = (u[:, :, None] * u[:, None, :]).reshape(-1, k * k)  # (n, k*k)
        weight = kappa * limit**3 * d_dnu * d**2
        push = uu.T @ (weight[:, None] * uu)
        coupling = (dt * (pull + push)).reshape(k, k, k, k)
        x, residual = solve_sdcp(margin, coupling, x, sdcp_iters)
        w_dot = w_dot - 0.5 * eta * (gflat.T @ x.reshape(-1)) / d
        nu_dot = nu_dot + kappa * jnp.einsum("ia,ab,ib->i", hu, x, hu)
        row = (value, value + 0.5 * limit * jnp.trace(x), eig.values, x, residual / limit)
        new = (w + dt * w_dot, nu + dt * nu_dot, t + dt, s, x, key)
        return new, (*row, jnp.max(eig.residuals))

    return step


def integrate(loss, w0, rule: RMSPropRule, steps, k, substeps, sdcp_iters, options, seed):
    """The central flow, one row per step (the first substep's values)."""
    step_fn = substep(loss, rule, 1.0 / substeps, options, sdcp_iters)
    key = jax.random.key(seed)
    s0 = jax.random.normal(jax.random.fold_in(key, 1), (w0.size, k), w0.dtype)

    @jax.jit
    def run(w0, s0, key):
        nu0 = initial_nu(rule, jax.grad(loss)(w0))

        def step(carry, _):
            start = carry[:2]
            carry, rows = jax.lax.scan(step_fn, carry, None, length=substeps)
            loss_, pred, lam, x, res, eres = rows
            return carry, (start, loss_[0], pred[0], lam[0], x[0], res.max(), eres.max())

        x0 = jnp.zeros((k, k), w0.dtype)
        t0 = jnp.asarray(rule.count0, w0.dtype)  # the bias correction's clock
        carry = (w0, nu0, t0, s0, x0, key)
        last, out = jax.lax.scan(step, carry, None, length=steps)
        return last[:2], out

    (w_end, nu_end), ((ws, nus), loss_, pred, lam, x, res, eres) = run(w0, s0, key)
    params = np.concatenate([np.asarray(ws), np.asarray(w_end)[None]])
    nu = np.concatenate([np.asarray(nus), np.asarray(nu_end)[None]])
    rows = tuple(map(np.asarray, (loss_, pred, lam, x, res, eres)))
    loss_, pred, lam, x, res, eres = rows
    return (params, loss_, pred, lam[:, 0], lam, x, res, eres), nu


def stable(loss, w0, rule: RMSPropRule, steps, substeps):
    r"""The flow with :math:`\Sigma = 0`: :math:`\dot w = -\eta D^{-1}\nabla L`,
    :math:`\dot\nu = \kappa(\nabla L^{\odot2} - \nu)`."""
    dt = 1.0 / substeps

    def sub(carry, _):
        w, nu, t = carry
        grad = jax.grad(loss)(w)
        d = rule.preconditioner(nu, t)
        return (
            w - dt * rule.learning_rate * grad / d,
            nu + dt * rule.rate * (grad**2 - nu),
            t + dt,
        ), None

    @jax.jit
    def run(w0):
        def step(carry, _):
            value = loss(carry[0])
            carry = jax.lax.scan(sub, carry, None, length=substeps)[0]
            return carry, (carry[0], carry[1], value)

        nu0 = initial_nu(rule, jax.grad(loss)(w0))
        t0 = jnp.asarray(rule.count0, w0.dtype)
        return jax.lax.scan(step, (w0, nu0, t0), None, length=steps)[1]

    ws, nus, values = run(w0)
    params = np.concatenate([np.asarray(w0)[None], np.asarray(ws)])
    return params, np.asarray(values), np.asarray(nus)

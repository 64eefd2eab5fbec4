r"""A network's training curve from the optimizer's code: the NTK loop, mode by mode.

In the lazy regime a network is its linearisation at :math:`\theta_0`, :math:`f(\theta) \approx
f_0 + J(\theta - \theta_0)`, and on a loss that is quadratic in the outputs,
:math:`L = L_0 + g^\top \Delta f + \tfrac12 \Delta f^\top H \Delta f` (:math:`H`
block-diagonal, one :math:`C\times C` block per example, the mean over examples folded in), the
parameter-space Hessian is :math:`J^\top H J`. With :math:`M = H^{1/2} J` its nonzero
eigenvalues are those of the loss-weighted kernel :math:`K = H^{1/2}\,\Theta\,H^{1/2}`,
:math:`\Theta = J J^\top` the empirical NTK (:func:`gdyn_jax.measurements.ntk.empirical_ntk`).
Writing :math:`a = H^{+1/2} g` and the residual :math:`\rho = H^{1/2}\Delta f + a`,

.. math::
    L = L_0 - \tfrac12\|a\|^2 + \tfrac12\|\rho\|^2 ,\qquad
    \rho_i(k) = w_i^\top \rho_k = \rho_i(0)\, r_k(\mu_i) ,

where :math:`K w_i = \mu_i w_i` and :math:`r_k(\mu)` is the free response, from 1, of the
rule's closed loop on the one-dimensional quadratic :math:`\tfrac12\mu x^2` with its state at
``init`` (the loop :func:`gdyn_jax.linearize.linearize` analyses; run here in float64 from the
rule's own code, so schedules and periodic rules such as lookahead are covered). For the square
loss (``'mse'``: :math:`H = I/N`, :math:`\rho = (f - y)/\sqrt N`) this is exact for the
linearised network, whatever the rule, as long as it is affine; for any other loss it is the
Gauss-Newton model at initialisation, an approximation (``exact=False``).

The continuous-time baseline is what neural-tangents computes (Lee et al., NeurIPS 2019,
"Wide neural networks of any depth evolve as linear models under gradient descent"):
:math:`e^{-\eta_{\rm eff}\mu k}` (gradient flow at the rule's effective step: GD :math:`\eta`,
lookahead :math:`\alpha\eta`), and for heavy ball and Nesterov the momentum ODE in units of
:math:`\sqrt\eta`, :math:`\ddot x + (1-\beta)\dot x + \eta\mu x = 0` per step. It has no step-size
limit: past :math:`\mu` at the rule's limit the discrete loop is unstable and it is not.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.errors import UsageError
from gdyn_jax.measurements.ntk import empirical_ntk, preconditioned_ntk
from gdyn_jax.predictions.modes import mode_loops, regimes_of

__all__ = [
    "NTKModes",
    "check_affine",
    "continuous_responses",
    "effective_step",
    "logit_quadratic",
    "mode_responses",
    "mode_table",
    "ntk_modes",
    "settling_steps",
]

Factory = Callable[..., optax.GradientTransformation]
SETTLING = 0.02  # a mode has settled once |rho_i(k)| stays within 2 % of |rho_i(0)|
_EIG_RTOL = 1e-10  # eigenvalues below this fraction of the largest are flat (mu = 0)


def logit_quadratic(loss: Callable, outputs, targets) -> tuple[np.ndarray, np.ndarray, float, bool]:
    r"""The mean loss's quadratic model in the outputs at ``outputs`` (N, C).

    Returns ``(sqrt_h, a, loss0, quadratic)``: :math:`H_j^{1/2}/\sqrt N` per example (N, C, C),
    :math:`a = H^{+1/2} g` flattened (N*C,), the mean loss, and whether the per-example loss is
    quadratic in the outputs (its Hessian the same at ``outputs`` and at a point shifted by a
    unit normal vector: then the model is the loss).
    """
    outputs = jnp.asarray(outputs, jnp.float64)
    n = outputs.shape[0]

    def each(z, y):
        return loss(z[None], y[None])[0]

    hess = jax.vmap(jax.hessian(each))(outputs, targets)
    grad = jax.vmap(jax.grad(each))(outputs, targets)
    shifted = outputs + jax.random.normal(jax.random.key(0), outputs.shape, outputs.dtype)
    other = jax.vmap(jax.hessian(each))(shifted, targets)
    scale = float(jnp.max(jnp.abs(hess))) or 1.0
    quadratic = float(jnp.max(jnp.abs(other - hess))) <= 1e-6 * scale
    vals, vecs = np.linalg.eigh(np.asarray(hess, np.float64))
    vals = np.clip(vals, 0.0, None)
    keep = vals > 1e-12 * max(float(vals.max()), 1e-300)
    root = np.where(keep, np.sqrt(vals), 0.0)
    inv_root = np.where(keep, 1.0 / np.where(keep, np.sqrt(vals), 1.0), 0.0)
    sqrt_h = np.einsum("nij,nj,nkj->nik", vecs, root, vecs) / np.sqrt(n)
    a = np.einsum("nij,nj,nkj,nk->ni", vecs, inv_root, vecs, np.asarray(grad)) / np.sqrt(n)
    loss0 = float(np.mean(np.asarray(jax.vmap(each)(outputs, targets))))
    return sqrt_h, a.reshape(-1), loss0, quadratic


@dataclasses.dataclass(frozen=True, eq=False)
class NTKModes:
    r"""The eigenmodes of the loss-weighted kernel at initialisation (module docstring).

    Attributes:
      curvatures: :math:`\mu_i` (M,), descending, float64 (the parameter-space curvatures).
      vectors: :math:`w_i` as columns (N*C, M).
      projections: :math:`\rho_i(0) = w_i^\top a` (M,).
      kernel: :math:`\Theta` (N*C, N*C); ``sqrt_h``: :math:`H^{1/2}` blocks (N, C, C).
      outputs: :math:`f_0` (N, C); ``loss0``: the mean loss at initialisation.
      exact: whether the loss is quadratic in the outputs (the model is then the loss).
      scale: for an adaptive rule, :math:`P^{-1/2}` (flat) of its frozen preconditioner, and
        ``kernel`` is then :math:`J P^{-1} J^\top` (``gdyn_jax.predictions.ntk_adam``); None:
        the plain kernel. ``warmup``: the statistics' warm-up updates that made :math:`P`.
    """

    curvatures: np.ndarray
    vectors: np.ndarray
    projections: np.ndarray
    kernel: np.ndarray
    sqrt_h: np.ndarray
    outputs: np.ndarray
    loss0: float
    exact: bool
    scale: np.ndarray | None = None
    warmup: int = 0

    @property
    def offset(self) -> float:
        r""":math:`L_0 - \tfrac12\|a\|^2`: the loss at :math:`\rho = 0`."""
        return self.loss0 - 0.5 * float(np.sum(self.projections**2))

    def loss(self, responses: np.ndarray) -> np.ndarray:
        r""":math:`L_k` for mode responses :math:`r_k(\mu_i)` (M, K): the offset plus
        :math:`\tfrac12\sum_i \rho_i(0)^2 r_k(\mu_i)^2`."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.offset + 0.5 * np.einsum("i,ik->k", self.projections**2, responses**2)

    def displacement(self, responses: np.ndarray, kernel: np.ndarray | None = None) -> np.ndarray:
        r"""The outputs' change :math:`J_x\,\Delta\theta_k`, (K, N_x*C): with the train kernel,
        :math:`\Theta H^{1/2} \sum_i w_i (\rho_i(k) - \rho_i(0))/\mu_i` (flat modes do not move);
        ``kernel``: the cross kernel :math:`\Theta(x, x_{\rm train})` for other inputs."""
        kernel = self.kernel if kernel is None else kernel
        mu = self.curvatures
        live = mu > _EIG_RTOL * mu[0]
        coef = np.where(live, self.projections / np.where(live, mu, 1.0), 0.0)
        change = (responses - 1.0) * coef[:, None]  # (M, K)
        h = self.sqrt_h
        n, c, _ = h.shape
        back = (self.vectors @ change).reshape(n, c, -1)
        back = np.einsum("nij,njk->nik", h, back).reshape(n * c, -1)
        return (kernel @ back).T


def ntk_modes(
    module,
    variables,
    x,
    targets,
    loss: Callable,
    *,
    exact: bool = False,
    scale=None,
    warmup: int = 0,
) -> NTKModes:
    """The :class:`NTKModes` of ``module`` at ``variables`` on inputs ``x`` with ``targets``
    and the per-example ``loss(outputs, targets)`` (kernel: ``empirical_ntk``; with ``scale``
    :math:`P^{-1/2}`, ``preconditioned_ntk``). ``exact``: refuse (``UsageError``, before the
    kernel) a loss that is not quadratic in the outputs."""
    outputs = np.asarray(module.apply(variables, x), np.float64)
    with jax.enable_x64(True):
        sqrt_h, a, loss0, quadratic = logit_quadratic(loss, outputs, jnp.asarray(targets))
    if exact and not quadratic:
        raise UsageError(
            "exact: the loss is not quadratic in the outputs, so the NTK loop is its Gauss-Newton "
            "model at initialisation, an approximation; use the square loss (mse) or drop --exact"
        )
    if scale is None:
        kernel = empirical_ntk(module, variables, x)
    else:
        scale = np.asarray(scale, np.float64)
        kernel = preconditioned_ntk(module, variables, x, scale=scale)
    n, c, _ = sqrt_h.shape
    weighted = _block_sandwich(sqrt_h, kernel)
    with jax.enable_x64(True):  # LAPACK's divide and conquer (syevd), float64
        mu, w = (np.asarray(t) for t in jnp.linalg.eigh(jnp.asarray(weighted, jnp.float64)))
    mu, w = mu[::-1], np.ascontiguousarray(w[:, ::-1])
    mu = np.where(mu > _EIG_RTOL * mu[0], mu, 0.0)
    return NTKModes(mu, w, w.T @ a, kernel, sqrt_h, outputs, loss0, quadratic, scale, int(warmup))


def _block_sandwich(h: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """:math:`H^{1/2} \\Theta H^{1/2}` for block-diagonal :math:`H^{1/2}` (N, C, C)."""
    n, c, _ = h.shape
    k = kernel.reshape(n, c, n, c)
    out = np.einsum("iab,ibjc,jdc->iajd", h, k, h, optimize=True).reshape(n * c, n * c)
    return 0.5 * (out + out.T)


def check_affine(factory: Factory, hparams: Mapping[str, float], curvature: float):
    """The rule's loop at ``curvature`` (``linearize.linearize``); a one-line ``UsageError``
    with linearize's reason when the rule is not affine (clipping, sign-based, adaptive)."""
    system = linearize.linearize(factory(**hparams), float(curvature))
    bad = [t for t in system.reason if t in ("nonlinear", "random")]
    if bad:
        notes = "; ".join(n for n in system.notes if n.split(":")[0] in bad) or ", ".join(bad)
        raise UsageError(
            f"optimizer: not an affine rule, so its modes do not decouple (linearize: {notes})"
        )
    return system


def mode_responses(
    factory: Factory,
    hparams: Mapping[str, float],
    curvatures,
    steps: int,
    schedule: Callable | None = None,
) -> np.ndarray:
    r""":math:`r_k(\mu_i)`, k = 0 .. steps: the rule run in float64 on
    :math:`\tfrac12\sum_i \mu_i x_i^2` from :math:`x = 1` with its state at ``init``; (M, steps+1).

    ``schedule``: a unit-peak multiplier :math:`s(k)` of the learning rate at step :math:`k`,
    applied as the sweep applies it (the rule rebuilt each step with :math:`\eta\,s(k)`, its
    state carried over): the loop is then time-varying and :math:`r_k` its response.
    Float hyperparameters are traced (one compilation serves every learning rate, as in a
    sweep); integers, and all of them for a factory that needs concrete values, are constants.
    """
    static = tuple(sorted((k, v) for k, v in hparams.items() if isinstance(v, int)))
    traced = {k: float(v) for k, v in hparams.items() if not isinstance(v, int)}
    with jax.enable_x64(True):
        mu = jnp.asarray(curvatures, jnp.float64)
        try:
            out = _run_rule(factory, static, traced, mu, int(steps), False, schedule)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            everything = tuple(sorted({**dict(static), **traced}.items()))
            out = _run_rule(factory, everything, {}, mu, int(steps), False, schedule)
        return np.asarray(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 4, 5, 6))
def _run_rule(
    factory: Factory,
    static: tuple,
    traced: dict,
    mu: jax.Array,
    steps: int,
    constant=False,
    schedule=None,
):
    """The rule on 0.5 sum mu x^2 from x = 1 (``constant``: on a unit gradient), (M, steps+1);
    ``schedule``: the learning rate at step k is multiplied by ``schedule(k)``."""

    def rule_at(k):
        hp = {**dict(static), **traced}
        if schedule is not None:
            hp["learning_rate"] = hp["learning_rate"] * schedule(k)
        return factory(**hp)

    x0 = jnp.ones_like(mu)

    def body(carry, k):
        x, state = carry
        updates, state = rule_at(k).update(jnp.ones_like(x) if constant else mu * x, state, x)
        x = x + updates
        return (x, state), x

    carry = (x0, rule_at(jnp.int32(0)).init(x0))
    _, xs = jax.lax.scan(body, carry, jnp.arange(steps, dtype=jnp.int32))
    return jnp.concatenate([x0[:, None], xs.T], axis=1)


def effective_step(factory: Factory, hparams: Mapping[str, float], horizon: int = 2520) -> float:
    r""":math:`\eta_{\rm eff}`: the rule's steady step on a constant unit gradient,
    :math:`-(\theta_{2T} - \theta_T)/T` (GD :math:`\eta`, heavy ball :math:`\eta/(1-\beta)`,
    lookahead of GD :math:`\alpha\eta`), read from its code (``horizon`` 2520: a whole number
    of periods of any clock with period up to 10)."""
    hp = tuple(sorted(hparams.items()))
    with jax.enable_x64(True):
        one = jnp.ones(1, jnp.float64)
        path = np.asarray(_run_rule(factory, hp, {}, one, 2 * horizon, True))[0]
    return float(-(path[2 * horizon] - path[horizon]) / horizon)


def continuous_responses(
    curvatures, steps: int, step: float, beta: float | None = None, schedule=None
) -> np.ndarray:
    r"""The continuous-time responses (M, steps+1): :math:`e^{-\eta\mu k}` (``beta`` None:
    ``step`` is the effective step), else the momentum ODE :math:`\ddot x + (1-\beta)\dot x +
    \eta\mu x = 0`, :math:`x(0) = 1, \dot x(0) = 0` (neural-tangents' ODE in step units).

    ``schedule``: the learning-rate multipliers :math:`s_0 .. s_{K-1}` of the steps, held over
    each unit of time: gradient flow gives :math:`e^{-\eta\mu\sum_{j<k}s_j}`, the ODE is
    carried across each step exactly by the matrix exponential of its coefficients there."""
    mu = np.asarray(curvatures, np.float64)[:, None]
    k = np.arange(int(steps) + 1, dtype=np.float64)[None, :]
    if schedule is not None:
        s = np.asarray(schedule, np.float64).reshape(-1)[: int(steps)]
        if beta is None:
            elapsed = np.concatenate([[0.0], np.cumsum(s)])[None, :]
            return np.exp(-float(step) * mu * elapsed)
        return _scheduled_ode(mu[:, 0], float(step) * s, 1.0 - float(beta))
    if beta is None:
        return np.exp(-float(step) * mu * k)
    c = 1.0 - float(beta)
    disc = np.sqrt((c * c - 4.0 * float(step) * mu).astype(np.complex128))
    s1, s2 = (-c + disc) / 2.0, (-c - disc) / 2.0
    same = np.abs(disc) < 1e-12
    d = np.where(same, 1.0, disc)
    with np.errstate(over="ignore", invalid="ignore"):
        generic = (s1 * np.exp(s2 * k) - s2 * np.exp(s1 * k)) / (s1 - s2 + (d - disc))
        repeated = (1.0 - s1 * k) * np.exp(s1 * k)
    return np.real(np.where(same, repeated, generic))


def _scheduled_ode(mu: np.ndarray, rates: np.ndarray, damping: float) -> np.ndarray:
    r""":math:`\ddot x + \gamma\dot x + \eta_k\mu x = 0` from (1, 0), :math:`\eta_k` held over
    step :math:`k`: each step multiplies :math:`(x, \dot x)` by :math:`e^{A_k} =
    e^{-\gamma/2}(\cosh q\,I + \tfrac{\sinh q}{q}B)`, :math:`B = A_k + \tfrac\gamma2 I`,
    :math:`q^2 = \gamma^2/4 - \eta_k\mu` (:math:`B^2 = q^2 I`); (M, K+1)."""
    state = np.stack([np.ones_like(mu), np.zeros_like(mu)]).astype(np.complex128)  # (2, M)
    out = [state[0].real.copy()]
    half = damping / 2.0
    scale = np.exp(-half)
    for rate in rates:
        c = rate * mu
        q = np.sqrt((half * half - c).astype(np.complex128))
        small = np.abs(q) < 1e-8
        sinhc = np.where(small, 1.0, np.sinh(q) / np.where(small, 1.0, q))
        cosh = np.cosh(q)
        x, v = state
        state = scale * np.stack(
            [cosh * x + sinhc * (half * x + v), cosh * v + sinhc * (-c * x - half * v)]
        )
        out.append(state[0].real.copy())
    return np.stack(out, axis=1)


def settling_steps(responses: np.ndarray, threshold: float = SETTLING) -> np.ndarray:
    """Per row, the first step after which ``|r_k| <= threshold`` for good (-1 if not by the
    last step)."""
    outside = ~(np.abs(np.asarray(responses)) <= threshold)
    last = outside.shape[1] - 1 - np.argmax(outside[:, ::-1], axis=1)
    settled = ~outside[:, -1]
    return np.where(settled, np.where(outside.any(axis=1), last + 1, 0), -1)


def mode_table(
    factory: Factory, hparams: Mapping[str, float], curvatures, responses=None
) -> dict[str, np.ndarray]:
    r"""Per curvature: ``pole_modulus`` (per step: :math:`\rho(A)`, or
    :math:`\rho(\Phi_k)^{1/k}` of the lifted loop of a periodic rule), ``regime``
    (:data:`~gdyn_jax.predictions.REGIMES`, of :math:`A` or of the lifted :math:`\Phi_k`) and,
    given the responses, ``settling`` (:func:`settling_steps`)."""
    mu = np.asarray(curvatures, np.float64)
    first = check_affine(factory, hparams, float(mu[0]) or 1.0)
    if "periodic" in first.reason:
        A, period = _lifted_blocks(factory, hparams, mu)
    else:
        A, period = np.asarray(mode_loops(factory, mu, **hparams).A, np.float64), 1
    rho = np.asarray(linearize.spectral_radius(A)) ** (1.0 / period)
    out = {"pole_modulus": rho, "regime": regimes_of(A)}
    if responses is not None:
        out["settling"] = settling_steps(responses)
    return out


def _lifted_blocks(factory: Factory, hparams, mu: np.ndarray, chunk: int = 32):
    r"""The lifted loops :math:`\Phi_k` of a periodic rule at curvatures ``mu``, (M, s, s), and
    the period: one ``linearize_periodic`` on the diagonal quadratic of up to ``chunk``
    curvatures, cut into each coordinate's block (an elementwise rule's lifted matrix is block
    diagonal after the permutation; where it is not, one lift per curvature)."""
    blocks, period = [], 1
    for start in range(0, mu.size, chunk):
        part = mu[start : start + chunk]
        system = linearize.linearize_periodic(factory(**hparams), np.diag(part))
        phi, d, period = np.asarray(system.A, np.float64), part.size, system.period
        idx = np.arange(d)[:, None] + d * np.arange(phi.shape[0] // d)[None, :]
        sub = phi[idx[:, :, None], idx[:, None, :]]
        rebuilt = np.zeros_like(phi)
        for i in range(d):
            rebuilt[np.ix_(idx[i], idx[i])] = sub[i]
        if phi.shape[0] % d or not np.allclose(rebuilt, phi, rtol=0.0, atol=1e-13):
            lifted = [linearize.linearize_periodic(factory(**hparams), float(h)) for h in part]
            sub = np.stack([np.asarray(t.A, np.float64) for t in lifted])
        blocks.append(sub)
    return np.concatenate(blocks), period

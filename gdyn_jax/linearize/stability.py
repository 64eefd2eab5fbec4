r"""Stability and convergence rate of the closed loop, over curvatures and hyperparameters.

The loop :math:`x_{k+1} = A x_k` converges iff its spectral radius
:math:`\rho(A) = \max_i |\lambda_i(A)| < 1`, and :math:`\rho` is its asymptotic rate:
:math:`\|x_k\| = O((\rho + \epsilon)^k)`. On a quadratic with Hessian eigenvalues in a set
:math:`\Lambda`, the worst-case rate is :math:`\max_{\lambda \in \Lambda} \rho(A(\lambda))`
(Lessard, Recht, Packard 2016; Goh 2017). Known limits the tests re-derive:

- SGD :math:`|1 - a h| < 1 \iff h < 2/a`;
- heavy ball :math:`h < (2 + 2\beta)/a`; Nesterov :math:`h < (2+2\beta)/((1+2\beta)a)`;
- Polyak's tuning on :math:`[\mu, L]`: :math:`a^* = 4/(\sqrt L + \sqrt\mu)^2`,
  :math:`\beta^* = ((\sqrt\kappa - 1)/(\sqrt\kappa + 1))^2`, rate :math:`\sqrt{\beta^*}`.

Grids are evaluated with one ``jax.jit(jax.vmap(jax.jacfwd(...)))`` and closed-form
eigenvalues for loops with at most two states (host ``numpy.linalg.eigvals`` otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import extras
from gdyn_jax._deprecated import forwarder
from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.eig import eigvals, spectral_radius_of
from gdyn_jax.linearize.grid import cache_key, cached, grid_matrices, grid_points, grid_proof
from gdyn_jax.linearize.limit import max_stable_curvature
from gdyn_jax.linearize.outcome import Decision, Outcome
from gdyn_jax.linearize.system import (
    LinearSystem,
    require_per_step,
    state_space,
    validate_hessian,
)
from gdyn_jax.linearize.timevarying import TimeVaryingSystem
from gdyn_jax.linearize.transfer import TransferFunction

__all__ = [
    "spectral_radius",
    "is_stable",
    "decide_stable",
    "max_stable_curvature",
    "stability_region",
    "convergence_rate",
    "root_locus",
]

_CHUNK = 1 << 19  # systems per jitted call in grid evaluations


def spectral_radius(
    system: LinearSystem | TransferFunction | TimeVaryingSystem | np.ndarray,
    *,
    per_step: bool = False,
):
    r""":math:`\rho = \max_i |\lambda_i(A)|` (a float, or an array for a batch of systems).

    Accepts a LinearSystem (batched or not), a TransferFunction (largest pole modulus), a
    TimeVaryingSystem (the frozen :math:`\rho(A_t)` of every step, an array) or an array of
    matrices ``(..., k, k)``. ``per_step=True`` gives the rate per optimizer step of a lifted
    periodic system, :math:`\rho(\Phi_k)^{1/k}` (``k = system.period``; 1 for others). The
    per-step system of a periodic rule (``linearize`` of lookahead: ``'periodic'`` in its
    ``reason``) answers with its lifted system's per-step rate, :math:`\rho(\Phi_k)^{1/k}`,
    not the radius of its frozen one-step matrices.
    """
    if isinstance(system, TransferFunction):
        poles = system.poles()
        return float(np.max(np.abs(poles))) if poles.size else 0.0
    if isinstance(system, LinearSystem) and system.per_step_of_periodic:
        if system.lifted is None:
            require_per_step(system, "the spectral radius")
        return spectral_radius(system.lifted, per_step=True)
    A = system.A if isinstance(system, LinearSystem | TimeVaryingSystem) else system
    A = np.asarray(A, dtype=np.float64)
    if A.shape[-1] <= 2:
        with np.errstate(invalid="ignore", divide="ignore"):  # as jax.numpy: no warnings
            rho = np.asarray(spectral_radius_of(A))  # numpy, float64
    else:
        rho = np.max(np.abs(np.linalg.eigvals(A)), axis=-1)
    if per_step and isinstance(system, LinearSystem) and system.period > 1:
        rho = rho ** (1.0 / system.period)
    return float(rho) if rho.ndim == 0 else rho


def is_stable(system, tol: float = 0.0):
    r"""True iff :math:`\rho < 1 - \text{tol}` (marginal systems, :math:`\rho = 1`, are not).

    The float64 comparison: near :math:`\rho = 1`, within the radius's rounding, it cannot be
    told from the truth; :func:`decide_stable` says so (three outcomes).
    """
    rho = spectral_radius(system)
    return bool(rho < 1.0 - tol) if np.ndim(rho) == 0 else rho < 1.0 - tol


def decide_stable(system: LinearSystem | np.ndarray) -> Decision:
    r"""Is the loop stable, :math:`\rho(A) < 1`? One of three outcomes, with the reason.

    ``PROVEN`` when :math:`\rho < 1 - \delta`, ``DISPROVEN`` when :math:`\rho > 1 + \delta`,
    ``UNDECIDED`` within :math:`\delta` of 1 (a marginal loop, or one closer to 1 than float64
    resolves: ``sgd(1e-20)`` at :math:`h = 1` has the pole :math:`1 - 10^{-20}`, stored as 1).
    :math:`\delta` is the rounding of the computed radius: :math:`10^3\,\epsilon\max(1,
    \|\tilde A\|_\infty)` (:math:`\tilde A`: ``A`` balanced by a diagonal similarity) for a
    simple eigenvalue of largest modulus, its square root when another eigenvalue lies within
    that square root (a double pole's modulus is only that accurate).
    A single system (a LinearSystem, lifted or not, or a (k, k) matrix); the per-step system of
    a periodic rule is judged on its lifted system, as :func:`spectral_radius` is.
    """
    if isinstance(system, LinearSystem) and system.per_step_of_periodic:
        if system.lifted is None:
            require_per_step(system, "decide_stable")
        return decide_stable(system.lifted)
    A = np.asarray(system.A if isinstance(system, LinearSystem) else system, np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"system: expected a single system or a (k, k) matrix, got {A.shape}")
    if not np.all(np.isfinite(A)):
        return Decision(Outcome.UNDECIDED, "the loop's matrix is not finite (float64 overflow)")
    rho = spectral_radius(A)
    balanced = extras.scipy_linalg.matrix_balance(A, permute=False, separate=False)[0]
    norm = float(np.max(np.sum(np.abs(balanced), axis=1)))
    delta = 1e3 * np.finfo(np.float64).eps * max(1.0, norm)
    poles = np.linalg.eigvals(A)
    top = int(np.argmax(np.abs(poles)))
    others = np.delete(poles, top)
    if others.size and np.min(np.abs(others - poles[top])) < np.sqrt(delta):
        delta = float(np.sqrt(delta))
    if rho < 1.0 - delta:
        return Decision(Outcome.PROVEN, f"spectral radius {rho:.12g} < 1 (rounding {delta:.1g})")
    if rho > 1.0 + delta:
        return Decision(Outcome.DISPROVEN, f"spectral radius {rho:.12g} > 1 (rounding {delta:.1g})")
    why = (
        f"the spectral radius {rho!r} is within its rounding ({delta:.1g}) of 1: a marginal "
        "loop, or one closer to 1 than float64 resolves at this scale"
    )
    return Decision(Outcome.UNDECIDED, why)


# --------------------------------------------------------------------------- grids


def stability_region(
    factory: Callable[..., optax.GradientTransformation], grid: dict, hessian, **fixed
) -> np.ndarray:
    r"""Boolean array over the cartesian ``grid`` (shape ``(len(v1), len(v2), ...)``): is the
    loop of ``factory(**point, **fixed)`` on ``hessian`` stable there?"""
    h = validate_hessian(hessian)
    names, _, _ = grid_points(grid)
    _require_time_invariant(factory, names, h.shape[0], fixed)
    A, _ = grid_matrices(factory, grid, h, **fixed)
    return np.asarray(spectral_radius(A)) < 1.0


_RATE_CACHE: dict = {}


def _rate_fn(factory, names: Sequence[str], fixed: dict):
    """The jitted worst-case-rate function, cached per (factory, names, fixed values)."""
    key = cache_key(factory, tuple(names), fixed)
    return cached(_RATE_CACHE, key, lambda: _make_rate_fn(factory, names, fixed))


def _require_time_invariant(factory, names: Sequence[str], n: int, fixed: dict) -> None:
    """ValueError naming ``factory`` when its loop is random or time-varying: a rate, region or
    locus of the loop with its clock frozen would not describe the rule. (Nonlinear rules pass:
    their systems are local linearisations, as :func:`linearize` documents.)"""
    proof, _ = grid_proof(factory, tuple(names), n, fixed)
    bad = [note for tag, note in zip(proof.reason, proof.notes, strict=True) if tag != "nonlinear"]
    if bad:
        raise ValueError(
            "factory: the rule is not time-invariant (" + "; ".join(bad) + "); use "
            "linearize_time_varying, linearize_periodic or max_stable_curvature(steps=...)"
        )


def _make_rate_fn(factory, names: Sequence[str], fixed: dict):
    def rates(values, lams):
        def point(vals):
            hp = dict(fixed)
            hp.update(zip(names, vals, strict=True))
            opt = factory(**hp)

            def one(lam):
                return state_space(opt, jnp.reshape(lam, (1, 1)))[0]

            return jnp.max(spectral_radius_of(jax.vmap(one)(lams)))

        return jax.vmap(point)(values)

    return _compile.jit(rates)


def _check_eigenvalues(eigenvalues) -> np.ndarray:
    lams = np.atleast_1d(np.asarray(eigenvalues, dtype=np.float64))
    if lams.ndim != 1 or lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams < 0):
        raise ValueError("eigenvalues: expected a non-empty 1-D array of finite curvatures >= 0")
    return lams


def _rates_on_points(rate, points: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Evaluate ``rate`` on (P, d) points in fixed-size chunks (one compilation)."""
    chunk = max(1, min(points.shape[0], _CHUNK // lams.size))
    out = np.empty(points.shape[0])
    lam_j = jnp.asarray(lams)
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk]
        pad = chunk - block.shape[0]
        if pad:
            block = np.concatenate([block, np.repeat(block[-1:], pad, axis=0)])
        res = np.asarray(rate(jnp.asarray(block), lam_j))
        out[start : start + chunk] = res[: chunk - pad] if pad else res
    return out


def convergence_rate(
    factory: Callable[..., optax.GradientTransformation], grid: dict, eigenvalues, **fixed
) -> np.ndarray:
    r"""Worst-case rate :math:`\max_{\lambda} \rho(A(\text{point}, \lambda))` over ``eigenvalues``
    for every point of the cartesian ``grid`` (values >= 1 mean no convergence).

    Vectorised: one jitted ``vmap`` over grid points and eigenvalues, evaluated in chunks of
    about half a million systems.
    """
    lams = _check_eigenvalues(eigenvalues)
    names, shape, flat = grid_points(grid)
    _require_time_invariant(factory, names, 1, fixed)
    with jax.enable_x64(True):
        rate = _rate_fn(factory, tuple(names), fixed)
        out = _rates_on_points(rate, np.stack(flat, axis=1), lams)
    return out.reshape(shape)


def root_locus(
    factory: Callable[..., optax.GradientTransformation], name: str, values, hessian, **fixed
) -> np.ndarray:
    r"""Closed-loop poles (eigenvalues of :math:`A`) along one hyperparameter.

    Returns a complex array ``(len(values), k)``, each row sorted by real part then imaginary.
    """
    h = validate_hessian(hessian)
    _require_time_invariant(factory, (name,), h.shape[0], fixed)
    A, _ = grid_matrices(factory, {name: values}, h, **fixed)
    if A.shape[-1] <= 2:
        with jax.enable_x64(True):
            poles = np.asarray(eigvals(jnp.asarray(A)))
    else:
        poles = np.linalg.eigvals(A)
    return _sort_poles(poles)


def _sort_poles(poles: np.ndarray) -> np.ndarray:
    """Sort each row by real part (rounded, so conjugates stay together), then imaginary."""
    poles = np.asarray(poles, complex)
    keys = np.round(poles.real, 9) + 0.0  # -0.0 -> 0.0
    order = np.lexsort((poles.imag, keys), axis=-1)
    return np.take_along_axis(poles, order, axis=-1)


# optimal_hyperparameters moved to gdyn_jax.linearize.tuning (gdyn_jax.linearize re-exports it)
__getattr__ = forwarder("gdyn_jax.linearize.stability", "gdyn_jax.linearize.tuning")

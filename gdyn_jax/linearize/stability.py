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

from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.eig import eigvals, spectral_radius_of
from gdyn_jax.linearize.system import (
    LinearSystem,
    _grid_points,
    grid_matrices,
    state_space,
    validate_hessian,
)
from gdyn_jax.linearize.transfer import TransferFunction

__all__ = [
    "spectral_radius",
    "is_stable",
    "max_stable_curvature",
    "stability_region",
    "convergence_rate",
    "root_locus",
    "optimal_hyperparameters",
]

_CHUNK = 1 << 19  # systems per jitted call in grid evaluations


def spectral_radius(system: LinearSystem | TransferFunction | np.ndarray):
    r""":math:`\rho = \max_i |\lambda_i(A)|` (a float, or an array for a batch of systems).

    Accepts a LinearSystem (batched or not), a TransferFunction (largest pole modulus) or an
    array of matrices ``(..., k, k)``.
    """
    if isinstance(system, TransferFunction):
        poles = system.poles()
        return float(np.max(np.abs(poles))) if poles.size else 0.0
    A = system.A if isinstance(system, LinearSystem) else system
    A = np.asarray(A, dtype=np.float64)
    if A.shape[-1] <= 2:
        with jax.enable_x64(True):
            rho = np.asarray(spectral_radius_of(jnp.asarray(A)))
    else:
        rho = np.max(np.abs(np.linalg.eigvals(A)), axis=-1)
    return float(rho) if rho.ndim == 0 else rho


def is_stable(system, tol: float = 0.0):
    r"""True iff :math:`\rho < 1 - \text{tol}` (marginal systems, :math:`\rho = 1`, are not)."""
    rho = spectral_radius(system)
    return bool(rho < 1.0 - tol) if np.ndim(rho) == 0 else rho < 1.0 - tol


# --------------------------------------------------------------------------- curvature limit


def _curvature_radius_fn(opt: optax.GradientTransformation):
    def radius(hs):
        def one(h):
            return spectral_radius_of(state_space(opt, jnp.reshape(h, (1, 1)))[0])

        return jax.vmap(one)(hs)

    return jax.jit(radius)


def max_stable_curvature(
    opt: optax.GradientTransformation,
    *,
    lower: float = 1e-12,
    upper: float = 1e12,
    points: int = 257,
    rtol: float = 1e-14,
) -> float:
    r"""The largest curvature :math:`h` for which the loop of ``opt`` on :math:`\tfrac12 h\theta^2`
    is stable: the edge-of-stability threshold (Cohen et al. 2021).

    Computed, not looked up: the spectral radius of the linearised loop is scanned on a log grid
    of ``points`` curvatures in ``[lower, upper]``, the upper end of the first stable interval is
    bracketed and refined by vectorised multisection (``points`` probes per round, one
    compilation) to relative width ``rtol``. SGD gives :math:`2/a`, heavy ball
    :math:`(2+2\beta)/a`, Nesterov :math:`(2+2\beta)/((1+2\beta)a)`. Returns 0.0 if no
    curvature on the grid is stable and ``inf`` if all above the first stable one are.
    """
    with jax.enable_x64(True):
        radius = _curvature_radius_fn(opt)
        hs = np.geomspace(lower, upper, points)
        stable = np.asarray(radius(jnp.asarray(hs))) < 1.0
        first = int(np.argmax(stable))
        if not stable[first]:
            return 0.0
        after = np.nonzero(~stable[first:])[0]
        if after.size == 0:
            return float("inf")
        lo, hi = hs[first + after[0] - 1], hs[first + after[0]]
        for _ in range(20):
            if hi - lo <= rtol * hi:
                break
            probe = np.linspace(lo, hi, points)
            ok = np.asarray(radius(jnp.asarray(probe))) < 1.0
            ok[0], ok[-1] = True, False  # the bracket's ends are known
            j = int(np.argmin(ok))  # first unstable probe
            lo, hi = probe[j - 1], probe[j]
    return float(lo)


# --------------------------------------------------------------------------- grids


def stability_region(
    factory: Callable[..., optax.GradientTransformation], grid: dict, hessian, **fixed
) -> np.ndarray:
    r"""Boolean array over the cartesian ``grid`` (shape ``(len(v1), len(v2), ...)``): is the
    loop of ``factory(**point, **fixed)`` on ``hessian`` stable there?"""
    h = validate_hessian(hessian)
    A, _ = grid_matrices(factory, grid, h, **fixed)
    return np.asarray(spectral_radius(A)) < 1.0


_RATE_CACHE: dict = {}


def _rate_fn(factory, names: Sequence[str], fixed: dict):
    """The jitted worst-case-rate function, cached per (factory, names, fixed values)."""
    try:
        key = (factory, tuple(names), tuple(sorted((k, float(v)) for k, v in fixed.items())))
        hash(key)
    except (TypeError, ValueError):
        key = None
    if key is not None and key in _RATE_CACHE:
        return _RATE_CACHE[key]
    fn = _make_rate_fn(factory, names, fixed)
    if key is not None:
        if len(_RATE_CACHE) > 32:
            _RATE_CACHE.clear()
        _RATE_CACHE[key] = fn
    return fn


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
    names, shape, flat = _grid_points(grid)
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


# --------------------------------------------------------------------------- tuning


def _default_bounds(name: str, mu: float, L: float) -> tuple[float, float, bool]:
    if name == "learning_rate":
        return 1e-2 / L, 1e1 / L, True
    return 0.0, 1.0 - 1e-9, False


def optimal_hyperparameters(
    factory: Callable[..., optax.GradientTransformation],
    mu: float,
    L: float,
    names: Sequence[str] = ("learning_rate", "beta"),
    *,
    bounds: dict | None = None,
    num_curvatures: int = 129,
    grid_size: int = 41,
    rounds: int = 20,
    **fixed,
) -> tuple[dict, float]:
    r"""The setting of ``names`` that minimises the worst-case rate over curvatures in [mu, L].

    The worst case is taken over ``num_curvatures`` points of :math:`[\mu, L]`, endpoints
    included (for the linear rules here the worst case over the interval is attained at its
    ends). Search: a coarse ``grid_size``\ :sup:`d` grid over ``bounds`` (default: learning rate
    log-spaced in [0.01/L, 10/L], other names in [0, 1)), then ``rounds`` of zooming a grid of
    the same size around the best point (three grid spacings each side), which handles the
    non-smooth minimax. Returns ``(hyperparameters, rate)``.

    For heavy ball it recovers Polyak's :math:`a^* = 4/(\sqrt L+\sqrt\mu)^2`,
    :math:`\beta^* = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2` with rate
    :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`; for SGD :math:`a^* = 2/(\mu+L)`, rate
    :math:`(\kappa-1)/(\kappa+1)` (Lessard et al. 2016, Prop. 1; Goh 2017).
    """
    mu, L = float(mu), float(L)
    if not (np.isfinite(mu) and mu > 0):
        raise ValueError(f"mu: expected a finite curvature > 0, got {mu}")
    if not (np.isfinite(L) and L >= mu):
        raise ValueError(f"L: expected a finite curvature >= mu, got {L}")
    names = tuple(names)
    if not names:
        raise ValueError("names: expected at least one hyperparameter name")
    spec = []
    for name in names:
        lo, hi, log = _default_bounds(name, mu, L)
        if bounds and name in bounds:
            lo, hi = (float(b) for b in bounds[name])
            log = log and lo > 0
        spec.append([lo, hi, log])
    lams = np.unique(
        np.concatenate([np.linspace(mu, L, num_curvatures), np.geomspace(mu, L, num_curvatures)])
    )
    d = len(names)

    def make_points(ranges):
        axes = []
        for lo, hi, log in ranges:
            axes.append(np.geomspace(lo, hi, grid_size) if log else np.linspace(lo, hi, grid_size))
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1), axes

    with jax.enable_x64(True):
        rate = _rate_fn(factory, names, fixed)
        ranges = [list(s) for s in spec]
        best_point, best_rate = None, np.inf
        for _ in range(rounds + 1):
            points, axes = make_points(ranges)
            rates = _rates_on_points(rate, points, lams)
            rates = np.where(np.isfinite(rates), rates, np.inf)
            i = int(np.argmin(rates))
            if rates[i] <= best_rate:
                best_point, best_rate = points[i], float(rates[i])
            idx = np.unravel_index(i, (grid_size,) * d)
            for j in range(d):
                lo_b, hi_b, log = spec[j]
                ax = axes[j]
                a = ax[max(idx[j] - 3, 0)]
                b = ax[min(idx[j] + 3, grid_size - 1)]
                ranges[j] = [max(a, lo_b), min(b, hi_b), log]
    return dict(zip(names, (float(v) for v in best_point), strict=True)), best_rate

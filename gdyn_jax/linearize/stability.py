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

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax._deprecated import forwarder
from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.eig import eigvals, spectral_radius_of
from gdyn_jax.linearize.exactness import clock_run, structural_verdict, verdict
from gdyn_jax.linearize.grid import cache_key, cached, grid_matrices, grid_points, grid_proof
from gdyn_jax.linearize.loop import build_loop
from gdyn_jax.linearize.system import LinearSystem, state_space, validate_hessian
from gdyn_jax.linearize.timevarying import TimeVaryingSystem
from gdyn_jax.linearize.transfer import TransferFunction

__all__ = [
    "spectral_radius",
    "is_stable",
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
    periodic system, :math:`\rho(\Phi_k)^{1/k}` (``k = system.period``; 1 for others).
    """
    if isinstance(system, TransferFunction):
        poles = system.poles()
        return float(np.max(np.abs(poles))) if poles.size else 0.0
    A = system.A if isinstance(system, LinearSystem | TimeVaryingSystem) else system
    A = np.asarray(A, dtype=np.float64)
    if A.shape[-1] <= 2:
        with jax.enable_x64(True):
            rho = np.asarray(spectral_radius_of(jnp.asarray(A)))
    else:
        rho = np.max(np.abs(np.linalg.eigvals(A)), axis=-1)
    if per_step and isinstance(system, LinearSystem) and system.period > 1:
        rho = rho ** (1.0 / system.period)
    return float(rho) if rho.ndim == 0 else rho


def is_stable(system, tol: float = 0.0):
    r"""True iff :math:`\rho < 1 - \text{tol}` (marginal systems, :math:`\rho = 1`, are not)."""
    rho = spectral_radius(system)
    return bool(rho < 1.0 - tol) if np.ndim(rho) == 0 else rho < 1.0 - tol


# --------------------------------------------------------------------------- curvature limit


def _check_search(lower, upper, points, rtol) -> tuple[float, float, int, float]:
    """The curvature search's arguments, or a ValueError naming the one that cannot work."""
    if isinstance(points, bool) or not isinstance(points, int | np.integer) or points < 3:
        raise ValueError(f"points: expected an integer >= 3 to bracket a limit, got {points!r}")
    lower, upper, rtol = float(lower), float(upper), float(rtol)
    if not (np.isfinite(lower) and lower > 0):
        raise ValueError(f"lower: expected a finite curvature > 0, got {lower}")
    if not (np.isfinite(upper) and upper > lower):
        raise ValueError(f"upper: expected a finite curvature > lower = {lower}, got {upper}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol: expected a relative width in (0, 1), got {rtol}")
    return lower, upper, int(points), rtol


def _radius_fn(loop, z0, clocks, lifted: bool):
    """``hs (m, P) -> rho (m, P)``, jitted: row b is the loop with the clock ``clocks[b]``, or
    (``lifted``, m = 1) the product of its matrices over all the ``clocks`` (one period)."""

    def matrix(h, clock):
        return loop.matrices(jnp.reshape(h, (1, 1)), z0, clock)[0]

    if lifted:

        def one(h):
            def body(M, clock):
                return matrix(h, clock) @ M, None

            M, _ = jax.lax.scan(body, jnp.eye(loop.num_states), clocks)
            return spectral_radius_of(M)

        return jax.jit(lambda hs: jax.vmap(jax.vmap(one))(hs))

    def row(hs, clock):
        return jax.vmap(lambda h: spectral_radius_of(matrix(h, clock)))(hs)

    return jax.jit(lambda hs: jax.vmap(row)(hs, clocks))


# A radius within this of 1 from above is rounding around a marginal pole (e.g. the averaging
# state of schedule-free SGD as h -> 0), not the crossing that ends the stable interval.
MARGINAL = 1e-12


def _stability_edges(radius, lower, upper, points, rtol, m: int) -> np.ndarray:
    """Upper end of the first stable interval of each of ``m`` loops (vectorised multisection).

    The interval starts at the first curvature with radius < 1 and ends where the radius
    exceeds ``1 + MARGINAL``."""
    hs = np.broadcast_to(np.geomspace(lower, upper, points), (m, points))
    rho = np.asarray(radius(jnp.asarray(hs)))
    stable, ends = rho < 1.0, rho > 1.0 + MARGINAL
    out = np.zeros(m)
    lo, hi = np.ones(m), np.ones(m)
    active = np.zeros(m, bool)
    for b in range(m):
        first = int(np.argmax(stable[b]))
        if not stable[b, first]:
            continue  # no stable curvature on the grid: 0.0
        after = np.nonzero(ends[b, first:])[0]
        if after.size == 0:
            out[b] = np.inf
            continue
        lo[b], hi[b] = hs[b, first + after[0] - 1], hs[b, first + after[0]]
        active[b] = True
    for _ in range(20):
        if not np.any(active & (hi - lo > rtol * hi)):
            break
        probe = np.linspace(lo, hi, points, axis=-1)
        ok = np.asarray(radius(jnp.asarray(probe))) <= 1.0 + MARGINAL
        ok[:, 0], ok[:, -1] = True, False  # the brackets' ends are known
        j = np.argmin(ok, axis=1)  # first unstable probe
        rows = np.arange(m)
        lo, hi = probe[rows, j - 1], probe[rows, j]
    out[active] = lo[active]
    return out


def max_stable_curvature(
    opt: optax.GradientTransformation,
    *,
    lower: float = 1e-12,
    upper: float = 1e12,
    points: int = 257,
    rtol: float = 1e-14,
    params=None,
    state=None,
    freeze=None,
    steps: int | None = None,
):
    r"""The largest curvature :math:`h` for which the loop of ``opt`` on :math:`\tfrac12 h\theta^2`
    is stable: the edge-of-stability threshold (Cohen et al. 2021).

    Computed, not looked up: the spectral radius of the loop is scanned on a log grid of
    ``points`` curvatures in ``[lower, upper]``, the upper end of the first stable interval is
    bracketed and refined by vectorised multisection (``points`` probes per round, one
    compilation) to relative width ``rtol``. SGD gives :math:`2/a`, heavy ball
    :math:`(2+2\beta)/a`, Nesterov :math:`(2+2\beta)/((1+2\beta)a)`. Returns 0.0 if no
    curvature on the grid is stable and ``inf`` if all above the first stable one are.

    ``params``, ``state`` and ``freeze`` are :func:`~gdyn_jax.linearize.linearize`'s: Adam with
    ``freeze=('nu', 'count')`` and a state whose preconditioner is
    :math:`P = \sqrt{\hat\nu} + \epsilon` gives the frozen-preconditioner limit
    :math:`P(2 + 2\beta_1)(1-\beta_1^c)/(\eta(1-\beta_1))` (Cohen et al. 2022), computed from the
    rule's code. A periodic rule gets the limit of its lifted system, :math:`\rho(\Phi_k) < 1`.
    A time-varying rule has one limit per step: pass ``steps`` for the array of the limits of
    the frozen loops at t = 0 .. steps-1 (:math:`2/a_t` for SGD under a schedule); without it,
    ValueError. A nonlinear rule gets the limit of its local linearisation (clock frozen).
    """
    lower, upper, points, rtol = _check_search(lower, upper, points, rtol)
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1
    ):
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    with jax.enable_x64(True):
        loop = build_loop(opt, 1, params=params, state=state, freeze=freeze)
        z0 = loop.z0()
        clocks, lifted = _clocks_for_limit(loop, z0, steps)
        radius = _radius_fn(loop, z0, clocks, lifted)
        leaves = jax.tree.leaves(clocks)
        m = 1 if lifted or not leaves else len(leaves[0])
        edges = _stability_edges(radius, lower, upper, points, rtol, m)
    if steps is None:
        return float(edges[0])
    return np.broadcast_to(edges, (steps,)).copy()  # no clock: the same limit at every step


def _clocks_for_limit(loop, z0, steps):
    """The clock states the limit is taken at (stacked) and whether to lift them."""
    stack = functools.partial(jax.tree.map, lambda *c: jnp.stack(c))
    one = np.ones((1, 1))
    if steps is not None:
        if steps == 1:
            return stack(loop.clock0), False
        later = clock_run(loop, jnp.asarray(one), z0, steps - 1)
        return jax.tree.map(lambda c0, c: jnp.concatenate([c0[None], c]), loop.clock0, later), False
    if not structural_verdict(loop).reason.count("time-varying"):
        return stack(loop.clock0), False
    proof, _ = verdict(loop, one, z0)
    if not proof.affine:
        return stack(loop.clock0), False  # a local linearisation, clock frozen
    if proof.period is None:
        raise ValueError(
            "steps: the rule is time-varying ("
            + "; ".join(proof.notes)
            + "); pass steps=T for the limit at each of T steps"
        )
    if proof.period == 1:
        return stack(loop.clock0), False
    later = clock_run(loop, jnp.asarray(one), z0, proof.period - 1)
    period = jax.tree.map(lambda c0, c: jnp.concatenate([c0[None], c]), loop.clock0, later)
    return period, True


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

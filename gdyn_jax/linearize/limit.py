r"""The curvature limit of stability: where the loop's first stable interval of curvatures ends.

:func:`stability_limit` scans the spectral radius of the loop on :math:`\tfrac12 h\theta^2` over
a log grid of curvatures, brackets the end of the first stable interval and refines it by
vectorised multisection (one compilation). Its answer is one of three
(``gdyn_jax.linearize.outcome``): ``PROVEN``, the edge, bracketed between a stable and an
unstable curvature to ``rtol``; ``DISPROVEN``, no curvature is stable; ``UNDECIDED``, with the
cause (the loop stays stable to the end of the search, its radius is within rounding of 1
everywhere, or it overflows float64). :func:`max_stable_curvature` returns the number and
raises :class:`~gdyn_jax.linearize.UndecidedError` where it could not decide.

The default search is :math:`[10^{-12}, 10^{12}]`; where it finds no edge there, it runs again
on the rule's own scale: :math:`[10^{-12}, 10^{12}] / g` with :math:`g = \max_j |c A_0^j b|`
the largest Markov parameter of the rule opened at the gradient (:math:`a` for SGD, the step
from one unit of gradient), so a limit :math:`2/a` is found for any step size float64 holds
(``learning_rate=1e-12``: :math:`2\cdot 10^{12}`, past the first range). A loop that does not
depend on the curvature at all (:math:`g = 0`) is stable at every curvature (``inf``) or at
none.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.linearize.eig import spectral_radius_of
from gdyn_jax.linearize.exactness import clock_run, structural_verdict, verdict
from gdyn_jax.linearize.loop import build_loop
from gdyn_jax.linearize.outcome import Outcome, UndecidedError

__all__ = ["MARGINAL", "StabilityLimit", "affine_limits", "max_stable_curvature", "stability_limit"]

#: A spectral radius within this of 1 from above is rounding around a marginal pole (e.g. the
#: averaging state of schedule-free SGD as h -> 0), not the crossing that ends the stable
#: interval.
MARGINAL = 1e-12
DEFAULT_RANGE = (1e-12, 1e12)
#: The widest curvatures searched: float64 holds 1.8e308, and h times a step must fit.
FLOAT_RANGE = (1e-300, 1e300)

# What a scan found for one loop.
_FOUND, _UNSTABLE, _MARGINAL, _OPEN, _NONFINITE = range(5)


@dataclasses.dataclass(frozen=True)
class StabilityLimit:
    r"""The end of the first stable interval of curvatures, and how it was decided.

    Attributes:
      value: the limit (PROVEN; ``inf`` where the loop does not depend on the curvature and
        is stable), ``0.0`` (DISPROVEN: no curvature is stable) or NaN (UNDECIDED). An array
        of one value per step for ``steps=T``.
      outcome: the :class:`~gdyn_jax.linearize.Outcome` (an object array for ``steps=T``).
      reason: one line saying what decided it, or what could not be (an object array of them
        for ``steps=T``).
      bracket: ``(lo, hi)``: stable at ``lo`` (= ``value``), unstable at ``hi``; NaN where
        there is none (shape ``(T, 2)`` for ``steps=T``).
      searched: the curvature range of the last scan, ``(lower, upper)``.
    """

    value: float | np.ndarray
    outcome: Outcome | np.ndarray
    reason: str | np.ndarray
    bracket: tuple[float, float] | np.ndarray
    searched: tuple[float, float]


def _check_search(lower, upper, points, rtol) -> tuple[float, float, int, float, bool]:
    """The search's arguments, or a ValueError naming the one that cannot work; the last
    element says whether the range may be extended (both ends left to their defaults)."""
    if isinstance(points, bool) or not isinstance(points, int | np.integer) or points < 3:
        raise ValueError(f"points: expected an integer >= 3 to bracket a limit, got {points!r}")
    extend = lower is None and upper is None
    lower = DEFAULT_RANGE[0] if lower is None else lower
    upper = DEFAULT_RANGE[1] if upper is None else upper
    lower, upper, rtol = float(lower), float(upper), float(rtol)
    if not (np.isfinite(lower) and lower > 0):
        raise ValueError(f"lower: expected a finite curvature > 0, got {lower}")
    if not (np.isfinite(upper) and upper > lower):
        raise ValueError(f"upper: expected a finite curvature > lower = {lower}, got {upper}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol: expected a relative width in (0, 1), got {rtol}")
    return lower, upper, int(points), rtol, extend


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


def _grid(lower, upper, points: int, m: int) -> np.ndarray:
    """(m, points) log grids, row b from ``lower[b]`` to ``upper[b]``."""
    lower, upper = np.broadcast_to(lower, (m,)), np.broadcast_to(upper, (m,))
    if np.all(lower == lower[0]) and np.all(upper == upper[0]):
        return np.broadcast_to(np.geomspace(lower[0], upper[0], points), (m, points))
    return np.stack([np.geomspace(lo, hi, points) for lo, hi in zip(lower, upper, strict=True)])


def _scan(rho: np.ndarray, hs: np.ndarray):
    """Per row: what the scan found, and the bracket of the first stable interval's end."""
    m = rho.shape[0]
    kind = np.full(m, _FOUND)
    lo, hi, first_h = np.ones(m), np.ones(m), np.full(m, np.nan)
    stable, ends, bad = rho < 1.0, rho > 1.0 + MARGINAL, ~np.isfinite(rho)
    for b in range(m):
        first = int(np.argmax(stable[b]))
        if not stable[b, first]:
            if np.any(bad[b]):
                kind[b] = _NONFINITE
            else:  # every radius tends to 1 as h -> 0: marginal ones first, then unstable
                start = int(np.argmax(ends[b]))
                kind[b] = _UNSTABLE if ends[b, start] and np.all(ends[b, start:]) else _MARGINAL
                first_h[b] = hs[b, start]
            continue
        first_h[b] = hs[b, first]
        after = np.nonzero(ends[b, first:] | bad[b, first:])[0]
        if after.size == 0:
            kind[b] = _OPEN
            continue
        j = first + int(after[0])
        if bad[b, j]:
            kind[b], first_h[b] = _NONFINITE, hs[b, j]
            continue
        lo[b], hi[b] = hs[b, j - 1], hs[b, j]
    return kind, lo, hi, first_h


def _stability_edges(radius, lower, upper, points, rtol, m: int):
    """Upper end of the first stable interval of each of ``m`` loops (vectorised multisection),
    with what the scan found, the bracket and the first stable curvature.

    The interval starts at the first curvature with radius < 1 and ends where the radius
    exceeds ``1 + MARGINAL``."""
    hs = _grid(lower, upper, points, m)
    kind, lo, hi, first_h = _scan(np.asarray(radius(jnp.asarray(hs))), hs)
    active = kind == _FOUND
    for _ in range(20):
        if not np.any(active & (hi - lo > rtol * hi)):
            break
        probe = np.linspace(lo, hi, points, axis=-1)
        rho = np.asarray(radius(jnp.asarray(probe)))
        broken = active & ~np.all(np.isfinite(rho), axis=1)
        kind[broken], active = _NONFINITE, active & ~broken
        ok = rho <= 1.0 + MARGINAL
        ok[:, 0], ok[:, -1] = True, False  # the brackets' ends are known
        j = np.argmin(ok, axis=1)  # first unstable probe
        rows = np.arange(m)
        lo, hi = probe[rows, j - 1], probe[rows, j]
    out = np.where(active, lo, 0.0)
    return out, kind, lo, hi, first_h


def _gains(loop, z0, clocks) -> np.ndarray:
    r""":math:`\max_j |c A_0^j b|`, j < k, of each clock's loop opened at the gradient (h = 0):
    the parameter change one unit of gradient makes, whose inverse is the rule's curvature
    scale."""

    def one(clock):
        A, B = loop.matrices(jnp.zeros((1, 1)), z0, clock)
        c, b = jnp.asarray(loop.output_matrix())[0], B[:, 1]  # the gradient-noise column

        def body(v, _):
            return A @ v, jnp.abs(c @ v)

        return jnp.max(jax.lax.scan(body, b, None, length=A.shape[0])[1])

    leaves = jax.tree.leaves(clocks)
    rows = len(leaves[0]) if leaves else 1
    return np.asarray(jax.jit(jax.vmap(one, axis_size=rows))(clocks))


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


def _verdict(kind: int, value: float, lo: float, hi: float, first: float, searched, rho0):
    """(outcome, value, reason) of one loop's search; ``rho0`` is the radius of a loop whose
    gain is 0 (it does not depend on h), else None."""
    low, high = searched
    if rho0 is not None:
        if rho0 < 1.0 - MARGINAL:
            return Outcome.PROVEN, np.inf, "the loop does not depend on h and is stable at any h"
        if rho0 > 1.0 + MARGINAL or rho0 == 1.0:
            why = f"the loop does not depend on h and is not stable (spectral radius {rho0:.6g})"
            return Outcome.DISPROVEN, 0.0, why
    span = f"[{low:.3g}, {high:.3g}]"
    if kind == _FOUND:
        why = f"stable at h = {float(lo)!r}, unstable at h = {float(hi)!r}"
        return Outcome.PROVEN, value, why
    if kind == _UNSTABLE:
        why = f"no curvature in {span} is stable (unstable beyond rounding from h = {first:.3g})"
        return Outcome.DISPROVEN, 0.0, why
    if kind == _MARGINAL:
        why = f"no curvature in {span} is stable beyond rounding: the radius is within 1e-12 of 1"
    elif kind == _OPEN:
        why = (
            f"stable from h = {first:.3g} to the end of the search, {high:.3g}: the limit is above"
        )
    else:
        why = f"the spectral radius is not finite (overflow in float64) from h = {first:.3g}"
        if not np.isfinite(first):
            why = f"the spectral radius is not finite (overflow in float64) in {span}"
    return Outcome.UNDECIDED, np.nan, why


def _search(loop, z0, steps, lower, upper, points, rtol, extend):
    """The scans, the second on the rule's own scale where the first found no edge; and, for a
    loop that does not depend on h (gain 0), its radius."""
    clocks, lifted = _clocks_for_limit(loop, z0, steps)
    radius = _radius_fn(loop, z0, clocks, lifted)
    leaves = jax.tree.leaves(clocks)
    m = 1 if lifted or not leaves else len(leaves[0])
    found = _stability_edges(radius, lower, upper, points, rtol, m)
    searched = np.broadcast_to(np.array([[lower, upper]]), (m, 2)).copy()
    rho0 = [None] * m
    if np.all(found[1] == _FOUND):
        return found, searched, rho0
    gains = _gains(loop, z0, clocks)
    gains = np.array([np.max(gains)]) if lifted else np.broadcast_to(gains, (m,))
    redo = (found[1] != _FOUND) & (gains > 0) & np.isfinite(gains) & extend
    if np.any(redo):
        with np.errstate(over="ignore"):  # a gain of 1e-300: the range starts past float64
            scaled = np.clip(np.array(DEFAULT_RANGE)[None] / gains[:, None], *FLOAT_RANGE)
        again = _stability_edges(radius, scaled[:, 0], scaled[:, 1], points, rtol, m)
        found = tuple(np.where(redo, new, old) for new, old in zip(again, found, strict=True))
        searched[redo] = scaled[redo]
    if np.any(gains == 0):
        radii = np.asarray(radius(jnp.asarray(_grid(1.0, 2.0, points, m))))[:, 0]
        rho0 = [float(radii[b]) if gains[b] == 0 else None for b in range(m)]
    return found, searched, rho0


def stability_limit(
    opt: optax.GradientTransformation,
    *,
    lower: float | None = None,
    upper: float | None = None,
    points: int = 257,
    rtol: float = 1e-14,
    params=None,
    state=None,
    freeze=None,
    steps: int | None = None,
) -> StabilityLimit:
    r"""The largest curvature :math:`h` for which the loop of ``opt`` on :math:`\tfrac12 h\theta^2`
    is stable, with its :class:`~gdyn_jax.linearize.Outcome` (see :func:`max_stable_curvature`
    for the search and the arguments).

    ``lower``/``upper`` left out: :math:`[10^{-12}, 10^{12}]`, then the rule's own scale
    (module doc) where that range holds no edge. Given: that range only, and a loop still
    stable at ``upper`` is UNDECIDED (the limit is above).
    """
    lower, upper, points, rtol, extend = _check_search(lower, upper, points, rtol)
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1
    ):
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    with jax.enable_x64(True):
        loop = build_loop(opt, 1, params=params, state=state, freeze=freeze)
        (value, kind, lo, hi, first), searched, rho0 = _search(
            loop, loop.z0(), steps, lower, upper, points, rtol, extend
        )
    rows = [
        _verdict(kind[b], value[b], lo[b], hi[b], first[b], tuple(searched[b]), rho0[b])
        for b in range(len(value))
    ]
    bracket = np.where((kind == _FOUND)[:, None], np.stack([lo, hi], axis=1), np.nan)
    if steps is None:
        outcome, val, reason = rows[0]
        return StabilityLimit(float(val), outcome, reason, tuple(bracket[0]), tuple(searched[0]))
    n = steps if len(rows) == 1 else 1  # no clock: the same limit at every step
    outcome = np.array([r[0] for r in rows] * n, dtype=object)
    reason = np.array([r[2] for r in rows] * n, dtype=object)
    values = np.array([r[1] for r in rows] * n, dtype=float)
    return StabilityLimit(values, outcome, reason, np.tile(bracket, (n, 1)), tuple(searched[0]))


def max_stable_curvature(
    opt: optax.GradientTransformation,
    *,
    lower: float | None = None,
    upper: float | None = None,
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
    ``points`` curvatures in ``[lower, upper]`` (default :math:`[10^{-12}, 10^{12}]`, then the
    rule's own scale where that holds no edge: ``gdyn_jax.linearize.limit``), the upper end
    of the first stable interval is bracketed and refined by vectorised multisection
    (``points`` probes per round, one compilation) to relative width ``rtol``. SGD gives
    :math:`2/a`, heavy ball :math:`(2+2\beta)/a`, Nesterov :math:`(2+2\beta)/((1+2\beta)a)`.
    Returns 0.0 if no curvature is stable, ``inf`` if the loop does not depend on the
    curvature and is stable; raises :class:`~gdyn_jax.linearize.UndecidedError` (with the
    cause) where it cannot decide, e.g. a loop still stable at the end of the search
    (:func:`stability_limit` returns the three outcomes instead of raising).

    ``params``, ``state`` and ``freeze`` are :func:`~gdyn_jax.linearize.linearize`'s: Adam with
    ``freeze=('nu', 'count')`` and a state whose preconditioner is
    :math:`P = \sqrt{\hat\nu} + \epsilon` gives the frozen-preconditioner limit
    :math:`P(2 + 2\beta_1)(1-\beta_1^c)/(\eta(1-\beta_1))` (Cohen et al. 2022), computed from the
    rule's code. A periodic rule gets the limit of its lifted system, :math:`\rho(\Phi_k) < 1`.
    A time-varying rule has one limit per step: pass ``steps`` for the array of the limits of
    the frozen loops at t = 0 .. steps-1 (:math:`2/a_t` for SGD under a schedule); without it,
    ValueError. A nonlinear rule gets the limit of its local linearisation (clock frozen).
    """
    limit = stability_limit(
        opt,
        lower=lower,
        upper=upper,
        points=points,
        rtol=rtol,
        params=params,
        state=state,
        freeze=freeze,
        steps=steps,
    )
    undecided = np.atleast_1d(limit.outcome) == Outcome.UNDECIDED
    if np.any(undecided):
        reasons = np.atleast_1d(np.asarray(limit.reason, dtype=object))
        t = int(np.argmax(undecided))
        where = "" if steps is None else f" at {int(undecided.sum())} of {steps} steps (t = {t})"
        raise UndecidedError(f"max_stable_curvature: could not decide{where}: {reasons[t]}")
    return limit.value if steps is None else np.asarray(limit.value).copy()


def affine_limits(A0, D, *, points: int = 65, rtol: float = 1e-12) -> np.ndarray:
    r"""The limit of each loop :math:`A(h) = A_0 + hD` of a batch (the leading axes of ``A0``
    and ``D``, broadcast): the end of the first stable interval of :math:`\rho(A_0 + hD)`,
    found as :func:`max_stable_curvature` finds it (a log scan of ``points`` curvatures over
    ``DEFAULT_RANGE`` times the loop's scale :math:`1/\max|D|`, then multisection to ``rtol``).
    The loop of an affine rule on :math:`\tfrac12h\theta^2` has this form, so two
    linearisations give every limit of a grid. ``inf`` where the loop stays stable (also a
    loop the curvature does not enter, :math:`D = 0`, e.g. a step size of 0 at the start of
    a warm-up, with :math:`\rho(A_0) \le 1`), 0 where no curvature is stable, NaN where the
    radius is not finite."""
    _, _, points, rtol, _ = _check_search(None, None, points, rtol)
    A0, D = np.broadcast_arrays(np.asarray(A0, np.float64), np.asarray(D, np.float64))
    batch, k = A0.shape[:-2], A0.shape[-1]
    a0, d = A0.reshape(-1, k, k), D.reshape(-1, k, k)
    gain = np.max(np.abs(d), axis=(-1, -2), initial=0.0)
    flat = gain == 0
    out = np.full(len(a0), np.nan)
    with jax.enable_x64(True), np.errstate(over="ignore"):
        if flat.any():
            rho = np.asarray(spectral_radius_of(a0[flat]))
            unstable = np.where(np.isfinite(rho), 0.0, np.nan)
            out[flat] = np.where(rho <= 1 + MARGINAL, np.inf, unstable)
        if (~flat).any():
            out[~flat] = _moving_limits(a0[~flat], d[~flat], gain[~flat], points, rtol)
    return out.reshape(batch)


def _moving_limits(a0m, dm, gain, points: int, rtol: float) -> np.ndarray:
    """``affine_limits`` of loops whose curvature term is not zero (``gain = max|D| > 0``)."""

    def radius(hs):
        h = np.asarray(hs, np.float64)[..., None, None]
        return np.asarray(spectral_radius_of(a0m[:, None] + h * dm[:, None]))

    lower, upper = (np.clip(r / gain, *FLOAT_RANGE) for r in DEFAULT_RANGE)
    found, kind, *_ = _stability_edges(radius, lower, upper, points, rtol, len(a0m))
    return np.select([kind == _OPEN, kind == _NONFINITE], [np.inf, np.nan], found)

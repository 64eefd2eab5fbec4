r"""Is the linear system the *exact* closed loop? Affine, time-invariant and deterministic.

``exact`` is True only when all three hold, each proven on the jaxpr of the one-step map
(:mod:`gdyn_jax.state_structure.interpret`) and cross-checked numerically:

- **affine**: the map :math:`z = [x; r; w] \mapsto x'` is affine. Proof: the abstract
  interpretation. Cross-check: its Jacobian is the same, and :math:`f(z) = f(0) + J z`, at
  points spread over scales :math:`10^{-8} \dots 10^{8}` around the linearisation point and
  around the origin; and there is no offset, :math:`f(0) = 0`. Tolerances: :math:`10^{-9}`
  relative in float64, :math:`10^4` machine epsilons for lower-precision state.
- **time-invariant**: a clock leaf is *fixed* when its next value equals its current one and
  reads only fixed leaves (a greatest fixed point: then it never changes), e.g. hyperparameters
  injected as constants; the others *advance*. The rule is time-varying when the loop's outputs
  read an advancing clock leaf other than through a random key, and *periodic* with period k
  when the clock leaves they depend on (closed under the clock's own dependencies) return to
  their values after k steps (checked up to :data:`MAX_PERIOD`): the clock is then an
  autonomous, deterministic system back at its start, so it repeats. Cross-check: A and B
  after advancing the clock by 1, 10 and 1000 steps.
- **deterministic**: no output carries a draw from a random key in the state.

Integer and key leaves are never linearised. One that evolves on its own is clock; one whose
next value depends on the parameters or gradient is *held* at its value, and the rule is
nonlinear if its step reads it (a discrete function of the state inside the loop). Counters of
non-finite gradients (``apply_if_finite``, ``MultiSteps``' skip test) do not count as such: on
finite inputs ``is_finite`` of an affine value is constant, so they are clock and stay put.

The reasons are the tags ``'nonlinear'`` (not proven affine), ``'random'``, ``'time-varying'``
and ``'periodic'``, in that order, with one explanatory note each.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.linearize.loop import ClosedLoop

__all__ = ["MAX_PERIOD", "SCALES", "TIME_CHECKS", "Verdict", "verdict", "clock_run"]

SCALES = (1e-8, 1e-4, 1.0, 1e4, 1e8)
TIME_CHECKS = (1, 10, 1000)
MAX_PERIOD = 1000
REASONS = ("nonlinear", "random", "time-varying", "periodic")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What is known about a rule's closed loop (see the module docstring).

    ``period`` is 1 for a time-invariant loop, k for a periodic one, None for an aperiodic
    time-varying one (or when not checked). ``relevant`` are the advancing clock leaves the
    loop depends on (with their own dependencies); ``fixed`` the clock leaves that never move.
    """

    exact: bool
    reason: tuple[str, ...]
    notes: tuple[str, ...]
    affine: bool
    period: int | None
    fixed: frozenset[int]
    relevant: frozenset[int]


def _rtol(loop: ClosedLoop) -> float:
    leaves = [*jax.tree.leaves(loop.params), *jax.tree.leaves(loop.state)]
    eps = [
        float(jnp.finfo(leaf.dtype).eps)
        for leaf in leaves
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return max(1e-9, 1e4 * max(eps, default=0.0))


def _host(leaf) -> np.ndarray:
    if jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def _names(loop: ClosedLoop, indices) -> str:
    return ", ".join(loop.names[i] or "state" for i in sorted(indices))


def probe_points(z0: np.ndarray) -> np.ndarray:
    """The linearisation point, pairs of points at each scale (near it and near the origin),
    and the origin."""
    rng = np.random.default_rng(0)
    points = [z0]
    for scale in SCALES:
        points.append(z0 + scale * rng.standard_normal(z0.size))
        points.append(scale * rng.standard_normal(z0.size))
    points.append(np.zeros_like(z0))
    return np.stack(points)


def _affine_failure(zs, values, jacs, rtol: float, offset: bool = True) -> str | None:
    """Why the values/Jacobians at ``zs`` are not those of one linear map (None if they are).

    ``zs[0]`` is the linearisation point and ``zs[-1]`` the origin. With ``offset=False`` a
    constant offset is allowed (a random draw, reported as such).
    """
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(jacs))):
        return "the map is not finite at every probe point"
    j0, f_origin = jacs[0], values[-1]
    jac_tol = rtol * (1.0 + np.max(np.abs(j0)))
    for z, f, j in zip(zs, values, jacs, strict=True):
        scale = float(np.max(np.abs(z)))
        if np.max(np.abs(j - j0)) > jac_tol:
            return f"the Jacobian changes at a point of scale {scale:.0e}"
        bound = rtol * (np.abs(j0) @ np.abs(z) + np.abs(f) + np.abs(f_origin)) + 1e-300
        if np.any(np.abs(f - f_origin - j0 @ z) > bound):
            return f"f(z) != f(0) + J z at a point of scale {scale:.0e}"
    offset_tol = rtol * (np.abs(j0) @ np.abs(zs[0]) + np.abs(values[0])) + 1e-300
    if offset and np.any(np.abs(f_origin) > offset_tol):
        return f"the map has a constant offset f(0) = {f_origin.tolist()}"
    return None


def _never_move(loop: ClosedLoop, candidates: set) -> frozenset[int]:
    """The largest subset of ``candidates`` (clock leaves whose next value equals their value
    now) whose next values read only leaves in it or held leaves: those never move."""
    st = loop.structure
    held = {i for i, r in enumerate(st.roles) if r in ("frozen", "held")}
    fixed = set(candidates)
    changed = True
    while changed:
        changed = False
        for i in sorted(fixed):
            if not st.next_deps[i] <= fixed | held:
                fixed.discard(i)
                changed = True
    return frozenset(fixed)


def _fixed_clock(loop: ClosedLoop, clock_next) -> frozenset[int]:
    """Clock leaves that never move, from their values after one step."""
    roles = loop.structure.roles
    same = {
        i
        for i, old, new in zip(loop.clock_indices, loop.clock0, clock_next, strict=True)
        if roles[i] == "clock" and np.array_equal(_host(old), _host(new))
    }
    return _never_move(loop, same)


def _closure(loop: ClosedLoop, start: set, advancing: set) -> frozenset[int]:
    found = set(start)
    todo = list(start)
    while todo:
        i = todo.pop()
        for j in loop.structure.next_deps[i] & advancing:
            if j not in found:
                found.add(j)
                todo.append(j)
    return frozenset(found)


def clock_run(loop: ClosedLoop, hessian, z0, steps: int) -> tuple:
    """The clock leaves at steps 1 .. ``steps`` (each stacked on a leading axis), one jit."""

    def run(h, z):
        def body(clock, _):
            nxt = loop.advance(clock, h, z)
            return nxt, nxt

        return jax.lax.scan(body, loop.clock0, None, length=steps)[1]

    return jax.jit(run)(hessian, z0)


def _period(loop: ClosedLoop, trajectory, relevant) -> int | None:
    """First k with every relevant clock leaf back at its start, or None."""
    position = {i: j for j, i in enumerate(loop.clock_indices)}
    back = None
    for i in relevant:
        j = position[i]
        traj, start = _host(trajectory[j]), _host(loop.clock0[j])
        same = np.all((traj == start).reshape(traj.shape[0], -1), axis=1)
        back = same if back is None else back & same
    if back is None or not np.any(back):
        return None
    return int(np.argmax(back)) + 1


def _evaluate(loop: ClosedLoop, hessian, zs, clock):
    def both(z):
        x_next, clock_next = loop.step(hessian, z, clock)
        return x_next, jax.jacfwd(lambda zz: loop.step(hessian, zz, clock)[0])(z), clock_next

    values, jacs, clocks = jax.vmap(both)(jnp.asarray(zs))  # eager: no compile for one system
    return np.asarray(values), np.asarray(jacs), jax.tree.map(lambda c: c[0], clocks)


def _run_clock(loop: ClosedLoop, hessian, z0, jac0, rtol: float, varying, relevant, notes):
    """Run the advancing clock of an affine loop: the period (None: time-varying), with
    ``notes`` told why (the A, B of later steps; a clock that returns)."""
    trajectory = clock_run(loop, jnp.asarray(hessian), jnp.asarray(z0), MAX_PERIOD)
    moved = _moves(loop, hessian, z0, jac0, trajectory, rtol)
    if varying:
        period = _period(loop, trajectory, relevant)
        if moved is None:
            notes["time-varying"] += " (numerically the same A, B after 1, 10, 1000 steps)"
        if period is not None:
            del notes["time-varying"]
            notes["periodic"] = (
                f"the clock leaves {_names(loop, relevant)} return every {period} steps; "
                f"linearize_periodic gives the exact {period}-step lifted system"
            )
        return period
    if moved is not None:
        notes["time-varying"] = f"A, B change after {moved} steps of the clock"
        return None
    return 1


def verdict(loop: ClosedLoop, hessian, z0) -> tuple[Verdict, np.ndarray]:
    """The :class:`Verdict` for ``loop`` closed with ``hessian``, and the Jacobian ``[A, B]`` of
    the map at ``z0`` (computed on the way)."""
    st = loop.structure
    rtol = _rtol(loop)
    z0 = np.asarray(z0)
    notes: dict[str, str] = {}
    affine = st.affine
    if not affine:
        notes["nonlinear"] = "not proven affine: " + "; ".join(st.notes)
    zs = probe_points(z0) if affine else z0[None]
    values, jacs, clock_next = _evaluate(loop, jnp.asarray(hessian), zs, loop.clock0)
    if affine:
        failure = _affine_failure(zs, values, jacs, rtol, offset=not st.random)
        if failure is not None:
            affine = False
            notes["nonlinear"] = f"numerically not affine: {failure}"
    fixed = _fixed_clock(loop, clock_next)
    clock = {i for i, r in enumerate(st.roles) if r == "clock"}
    advancing = clock - fixed
    relevant = _closure(loop, st.output_deps & advancing, advancing)
    varying = st.output_tdeps & advancing
    if st.random:
        keys = (st.output_deps - st.output_tdeps) & advancing
        notes["random"] = (
            f"the update draws from the random key {_names(loop, keys) or 'in the state'}; "
            "the draw is not in the model"
        )
    period: int | None = 1
    if varying:
        period = None
        notes["time-varying"] = (
            f"A, B depend on the advancing clock leaves {_names(loop, varying)}; "
            "use linearize_time_varying"
        )
    if affine and advancing:
        period = _run_clock(loop, hessian, z0, jacs[0], rtol, varying, relevant, notes)
    reason = tuple(tag for tag in REASONS if tag in notes)
    proof = Verdict(
        exact=not reason,
        reason=reason,
        notes=tuple(f"{tag}: {notes[tag]}" for tag in reason),
        affine=affine,
        period=period,
        fixed=fixed,
        relevant=relevant,
    )
    return proof, jacs[0]


def _moves(loop: ClosedLoop, hessian, z0, jac0, trajectory, rtol: float) -> int | None:
    """The first of :data:`TIME_CHECKS` after which A, B differ from step 0's, or None."""
    at = jnp.asarray([t - 1 for t in TIME_CHECKS])
    clocks = jax.tree.map(lambda c: c[at], trajectory)
    z = jnp.asarray(z0)

    def jac(clock):
        return jax.jacfwd(lambda zz: loop.step(jnp.asarray(hessian), zz, clock)[0])(z)

    jacs = np.asarray(jax.vmap(jac)(clocks))
    tol = rtol * (1.0 + np.max(np.abs(jac0)))
    for t, j in zip(TIME_CHECKS, jacs, strict=True):
        if np.max(np.abs(j - jac0)) > tol:
            return t
    return None


def structural_verdict(loop: ClosedLoop) -> Verdict:
    """The proof alone, without numbers (for traced hyperparameters): a clock leaf is fixed only
    when its next value is itself, unchanged; periodicity is not checked."""
    st = loop.structure
    fixed = _never_move(loop, {i for i, r in enumerate(st.roles) if r == "clock" and st.copies[i]})
    advancing = {i for i, r in enumerate(st.roles) if r == "clock"} - fixed
    notes = {}
    if not st.affine:
        notes["nonlinear"] = "not proven affine: " + "; ".join(st.notes)
    if st.random:
        notes["random"] = "the update draws from a random key in the state"
    varying = st.output_tdeps & advancing
    if varying:
        notes["time-varying"] = f"A, B depend on the advancing clock leaves {_names(loop, varying)}"
    reason = tuple(tag for tag in REASONS if tag in notes)
    return Verdict(
        exact=not reason,
        reason=reason,
        notes=tuple(f"{tag}: {notes[tag]}" for tag in reason),
        affine=st.affine,
        period=None if varying else 1,
        fixed=fixed,
        relevant=_closure(loop, st.output_deps & advancing, advancing),
    )

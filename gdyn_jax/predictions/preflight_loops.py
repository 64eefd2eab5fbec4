r"""The rule's side of a pre-flight: its closed loops and limits at every grid point and step.

The sweep sets the learning rate of step :math:`t` to ``learning_rate * s(t)``; the loop of
every (grid point, step) comes from ``linearize.linearize_grid`` at two curvatures
(``phases.Loops``), grouped by the hyperparameters other than the learning rate. An adaptive
rule's loop is read with :math:`\nu` and the count frozen at :math:`P = 1` (as
``linearize.max_stable_curvature(..., freeze=('nu', 'count'))``): the curvature it is set
against is the preconditioned one.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.predictions import phases as ph
from gdyn_jax.sweep import SweepConfig, setup
from gdyn_jax.sweep.config import rule_of

__all__ = ["groups_of", "learning_rates", "rule_loops", "unit_preconditioner"]

_LATE_COUNT = 10_000  # the count at which an adaptive rule's loop is frozen (bias corrected)


def learning_rates(config: SweepConfig, points: dict[str, np.ndarray], size: int) -> np.ndarray:
    """The ``(P,)`` peak learning rates of the grid ``points`` (the config's where not swept)."""
    base = {**rule_of(config).defaults, **config.fixed_hparams()}
    lr = points.get("learning_rate", base.get("learning_rate"))
    return np.broadcast_to(np.asarray(lr, np.float64), (size,)).copy()


def groups_of(points: dict[str, np.ndarray], size: int) -> dict[tuple, list[int]]:
    """The grid points (indices) of each setting of the hyperparameters other than the
    learning rate (sorted ``(name, value)`` pairs)."""
    groups = collections.defaultdict(list)
    for i in range(size):
        other = {k: float(v[i]) for k, v in points.items() if k != "learning_rate"}
        groups[tuple(sorted(other.items()))].append(i)
    return dict(groups)


def unit_preconditioner(state, hp: dict[str, float], count):
    r"""``state`` with every ``ScaleByAdamState``'s count set to ``count`` and its :math:`\nu`
    to the value whose preconditioner :math:`\sqrt{\nu/(1-\beta_2^c) + \epsilon_{\rm root}}
    + \epsilon` is 1 at that count (``count`` may be traced: a loop that steps the count)."""
    b2, eps = hp.get("b2", 0.999), hp.get("eps", 1e-8)
    root = hp.get("eps_root") or 0.0

    def fix(leaf):
        if not isinstance(leaf, optax.ScaleByAdamState):
            return leaf
        c = jnp.asarray(count, leaf.count.dtype)
        nu = ((1 - eps) ** 2 - root) * (1 - b2 ** c.astype(jnp.result_type(float)))
        return leaf._replace(count=c, nu=jax.tree.map(lambda v: jnp.full_like(v, nu), leaf.nu))

    return jax.tree.map(fix, state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))


def _frozen_state(opt: optax.GradientTransformation, hp: dict[str, float]):
    """The state of a one-parameter adaptive rule whose preconditioner is 1 at a late count."""
    with jax.enable_x64(True):
        return unit_preconditioner(opt.init(np.zeros(1)), hp, _LATE_COUNT)


def _loops_at(factory, lrs: np.ndarray, other: dict[str, float], adaptive: bool):
    """(A0, D, B_gradient, C, exact, reason) of the rule at learning rates ``lrs``."""
    if adaptive:
        systems = []
        for lr in lrs:
            hp = {**other, "learning_rate": float(lr)}
            opt = factory(**hp)
            kw = {"state": _frozen_state(opt, hp), "freeze": ("nu", "count")}
            systems.append([linearize.linearize(opt, h, **kw) for h in (1.0, 2.0)])
        one, two = (
            [np.stack([np.asarray(getattr(s[i], m)) for s in systems]) for m in "ABC"]
            for i in (0, 1)
        )
        proofs = [s[1] for s in systems]
    else:
        grid = {"learning_rate": np.asarray(lrs, np.float64)}
        pair = [linearize.linearize_grid(factory, grid, h, **other) for h in (1.0, 2.0)]
        one, two = ([np.asarray(s.A), np.asarray(s.B), np.asarray(s.C)] for s in pair)
        proofs = [pair[1]]
    exact = all(bool(p.exact) for p in proofs)
    reason = "" if exact else ", ".join(next(p.reason for p in proofs if not p.exact))
    D = two[0] - one[0]
    return one[0] - D, D, one[1][..., :, -1], one[2][..., 0, :], exact, reason


def rule_loops(
    config: SweepConfig, points: dict[str, np.ndarray], adaptive: bool = False
) -> tuple[np.ndarray, ph.Loops]:
    """Limits ``(P, T)`` and loops of ``config``'s rule at the ``P`` grid ``points`` (name ->
    ``(P,)`` values) at each step of its schedule (``T = steps``; 1 without a schedule): the
    sweep sets the learning rate of step ``t`` to ``learning_rate * s(t)``."""
    factory, fixed = rule_of(config).factory, config.fixed_hparams()
    size = len(next(iter(points.values()))) if points else 1
    schedule = setup.unit_schedule(config.schedule, config.steps, config.warmup_steps)
    scale = (
        np.ones(1)
        if schedule is None
        else np.asarray(jax.vmap(schedule)(jnp.arange(config.steps)), np.float64)
    )
    lr = learning_rates(config, points, size)
    groups = groups_of(points, size)
    T = scale.size
    A0 = D = steps = bs = cs = None
    exact, reason = True, ""
    for key, index in groups.items():
        lrs = (np.asarray(lr, np.float64)[index][:, None] * scale[None, :]).ravel()
        a0, d, b, c, ok, why = _loops_at(factory, lrs, {**fixed, **dict(key)}, adaptive)
        if A0 is None:
            A0 = np.zeros((size, T) + a0.shape[-2:])
            D, steps = np.zeros_like(A0), np.zeros((size, T))
            bs, cs = np.zeros((size, T, b.shape[-1])), np.zeros((size, T, c.shape[-1]))
        bs[index] = b.reshape(len(index), T, -1)
        cs[index] = c.reshape(len(index), T, -1)
        A0[index] = a0.reshape(len(index), T, *a0.shape[-2:])
        D[index] = d.reshape(A0[index].shape)
        steps[index] = ph.effective_steps(a0, b, c).reshape(len(index), T)
        exact, reason = exact and ok, reason or why
    if not exact:
        return np.full((size, T), np.nan), ph.Loops(A0, D, steps, exact, reason, bs, cs)
    limits = ph.stability_limits(A0, D)
    return limits, ph.Loops(A0, D, steps, exact, reason, bs, cs)

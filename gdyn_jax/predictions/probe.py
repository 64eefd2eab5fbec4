r"""The catapult's upper edge, probed: a few real steps of the rule at bisected learning rates.

Above the rule's linear limit the oscillation along the top eigenvector grows as
:math:`\rho^t`; whether it then lowers the sharpness (a catapult) or raises it (divergence)
is decided within a few steps, far from the initialisation. On an MNIST-1D MLP at the
divergence boundary :math:`\rho = \eta\lambda_0 - 1 \approx 5`, the loss peaks at 10-15 times
its start by step 2 and the sharpness falls from 16 to 2-3 by step 4; the averaged
second-order model of :mod:`gdyn_jax.predictions.phases` reads the sharpness's derivatives at
the initialisation and places the edge 30-35 % too low there (it is exact where the loss is
quartic, as on Lewkowycz et al.'s two-layer linear network). So the edge is *measured* on the
model at hand instead: for each seed (initialised as its sweep initialises it, on the sweep's
own mini-batches; full batch: the examples of the measurements) and each setting of the other
hyperparameters, the rule itself runs ``steps`` steps (by default the run's own length), all
(group, seed) at once (``vmap``; the runs stop once all have diverged), in at most ``rounds``
rounds (fewer once every bracket is within ``TOLERANCE``):
first the rate where the linear limit meets the curvature at init, then ``factor`` times the
last rate that survived until one diverges, or ``1/factor`` times the first that diverged
until one survives, then bisection in log rate, then ``CHECKS`` rates below the narrow
bracket down to half its survivor; where one of them diverges, the bracket starts again
below it (divergent:
a non-finite loss, or one grown ``phases.BLOWUP``-fold over step 0 at a step where the sweep
evaluates, the sweep's own test: Adam's first step can lift the loss a millionfold for one
step, which the sweep's curves never see).
The edge is the geometric middle of the final bracket: the *lowest* rate at which the seed
diverges, as far as the checks see. Divergence need not be monotone in the rate: on the
MNIST-1D 1-D CNN with cross-entropy at batch 100, above about a quarter of the divergence
boundary every run fails, but whether it diverges or collapses to chance-level loss changes
from one rate to the next (a seed diverging at 3.1, collapsing at 3.6, diverging at 4.2);
bisection alone lands on any of those transitions (the seeds' edges spread over 2.95-28 and
the boundary of half of them 57 % above the measured one), the checks on the lowest (2.6 %).
Nothing is fitted: it is a short run of
the same program as the sweep, and its cost (``seconds``) is reported with the pre-flight's.
The rate where the limit meets the curvature is a start, not a bound: with cross-entropy the
batch sharpness at init (the curvature along the mini-batch gradients) is about a third of
:math:`\lambda_0` on an MNIST-1D MLP, and momentum then diverges at a rate that keeps the
loop stable at init, as the sharpness rises early in the run (from 2.1 to 3.6 in 20 steps at
η = 0.8): heavy ball (β = 0.9, batch 100) diverges at η = 1.1 at steps 57-119, 5 times below
the rate where its limit meets the batch sharpness; so the first rate is run too, and the
bracket may move down. With fewer steps than the run (``steps``), a divergence that starts
after them is not seen.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.preflight_loops import groups_of, learning_rates
from gdyn_jax.sweep import Program
from gdyn_jax.sweep import train as train_lib
from gdyn_jax.sweep.mesh import mesh_of

__all__ = ["CHECKS", "CHECK_SPAN", "ROUNDS", "TOLERANCE", "EdgeProbe", "probe_edges", "probe_grid"]

#: the most bracketing rounds by default: a start 4^4 times off the edge still ends within
#: ``TOLERANCE`` and checked (with Adam at full batch the limit at init lies 20-100 times
#: below the edge), or one bracket restarted below a check that diverged
ROUNDS = 20
#: the rounds stop once every bracket's high / low is within this ratio (the edge to 2.5 %)
TOLERANCE = 1.05
#: rates run below a narrow bracket before it is taken as the lowest edge (module doc)
CHECKS = 3
#: the lowest of them: the bracket's survivor divided by this
CHECK_SPAN = 2.0


@dataclasses.dataclass(frozen=True)
class EdgeProbe:
    """Per group of the other hyperparameters and seed: ``edge`` ``(G, S)`` (``inf`` where no
    probed rate diverged), the final bracket ``low``/``high``; ``steps``, ``runs`` (the runs
    per group and seed: the scouting rounds, then the whole-run confirmations), ``seconds``
    and ``compile_seconds``; ``groups``: the other hyperparameters of each group."""

    edge: np.ndarray
    low: np.ndarray
    high: np.ndarray
    steps: int
    runs: int
    seconds: float
    compile_seconds: float
    groups: tuple[dict[str, float], ...] = ()


def _diverges(task, data):
    """``(hparams, keys, steps) -> diverged`` of the members: ``steps`` (shared) sweep steps
    from each one's init (a ``while_loop``: under ``vmap`` it stops once every member has
    diverged)."""

    def run(hp, key, steps):
        state = train_lib.init(task, data, hp, key)

        def go(carry):
            return (carry[0] < steps) & ~carry[3]

        def step(carry):
            t, state, start, blown = carry
            state, loss = train_lib.train_step_with_loss(task, data, hp, state, t)  # the sweep's
            start = jnp.where(t == 0, loss, start)
            evaluated = t % task.eval_every == 0  # the sweep reads its loss at these steps
            blown |= ~jnp.isfinite(loss) | (evaluated & (loss > ph.BLOWUP * start))
            return t + 1, state, start, blown

        init = (jnp.int32(0), state, jnp.float32(jnp.inf), jnp.array(False))
        _, state, start, blown = jax.lax.while_loop(go, step, init)
        x, y, _ = train_lib.draw_batch(task, data, state, jnp.int32(steps))
        end = train_lib.mean_loss(task, state.params, state.model_state, x, y)  # last eval
        return blown | ~state.alive | ~jnp.isfinite(end) | (end > ph.BLOWUP * start)

    return jax.vmap(run, in_axes=(0, 0, None))


def probe_edges(
    program: Program,
    seeds: int,
    groups: list[dict[str, float]],
    low: np.ndarray,
    *,
    steps: int | None = None,
    rounds: int = ROUNDS,
    factor: float = 4.0,
    examples: int | None = None,
    scout_steps: int | None = 32,
) -> EdgeProbe:
    """The divergence edge in the learning rate per group and seed (module doc).

    ``groups``: the other hyperparameters of each group (``G`` dicts); ``low`` ``(G, S)``:
    the learning rate at which the rule's linear limit meets the curvature at init, the first
    rate run (not assumed stable: the module doc). Each of at most ``rounds`` rounds (they
    stop once every bracket is within ``TOLERANCE`` and checked below) runs one rate
    per (group, seed), all at once: ``factor`` times the last survivor until one diverges,
    ``1/factor`` times the first divergent until one survives, then the geometric middle of
    the bracket (bisection in log rate), then ``CHECKS`` rates below it (``_scout``); where
    the rounds run out before a restarted bracket has a survivor, the edge is the lowest
    rate that diverged; ``steps`` None: the run's own length. The rounds run
    ``scout_steps`` steps (cheap: most divergences show within them), then the bracket is
    confirmed over ``steps`` (``_confirm``: at most ``rounds`` more rounds, one in the common
    case); ``scout_steps`` None: every round runs ``steps``. Compiled programs on
    ``G * seeds`` members.
    ``examples``: a full-batch rule runs on the first ``examples`` training examples (those
    of the measurements at init); None: the whole training set.
    """
    task, data = program.task, program.data
    if task.full_batch and examples is not None and examples < task.num_train:
        data = data._replace(x_train=data.x_train[:examples], y_train=data.y_train[:examples])
    steps = program.config.steps if steps is None else min(int(steps), program.config.steps)
    scout = steps if scout_steps is None else min(int(scout_steps), steps)
    G, S = len(groups), seeds
    keys = jax.vmap(jax.random.key)(jnp.tile(jnp.arange(S), G))
    other = {k: jnp.asarray(np.repeat([g[k] for g in groups], S), jnp.float32) for k in groups[0]}

    start = time.perf_counter()
    compiled = _compiled_run(task, data, other, keys, (G, S))
    middle = time.perf_counter()
    start_rate = np.asarray(low, np.float64).reshape(G, S)
    lo, hi, runs = _scout(lambda lrs: compiled(lrs, scout), start_rate, factor, rounds)
    if steps > scout:
        lo, hi, extra = _confirm(lambda lrs: compiled(lrs, steps), lo, hi, factor, rounds)
        runs += extra
    edge = np.where(lo > 0, _middle(lo, hi), hi)  # no survivor below: the lowest divergent
    seconds = time.perf_counter() - middle
    return EdgeProbe(edge, lo, hi, steps, runs, seconds, middle - start, tuple(groups))


def _compiled_run(task, data, other: dict, keys, shape: tuple[int, int]):
    """``(lrs (G, S), steps) -> diverged (G, S)``: the members run ``steps`` steps at the
    rates ``lrs`` with the ``other`` hyperparameters, compiled once, their axis sharded over
    this process's devices (as the sweep's: on CPU one device per core, each running its program
    on about one core); padded with copies of the first member to a multiple of them."""
    fn = _diverges(task, data)
    members = shape[0] * shape[1]
    mesh = mesh_of(jax.local_devices())
    index = np.concatenate([np.arange(members), np.zeros(-members % mesh.size, int)])
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    put = jax.tree.map(lambda x: jax.device_put(x[index], member), (other, keys))

    def call(lrs, steps, other, keys):
        return fn({**other, "learning_rate": lrs}, keys, steps)

    lrs0 = jax.device_put(np.ones(index.size, np.float32), member)
    compiled = jax.jit(call, out_shardings=member).lower(lrs0, jnp.int32(1), *put).compile()

    def run(lrs, steps: int):
        flat = np.asarray(lrs, np.float32).ravel()[index]
        out = compiled(jax.device_put(flat, member), jnp.int32(steps), *put)
        return np.asarray(out)[:members].reshape(shape)

    return run


def _scout(blown_at, start: np.ndarray, factor: float, rounds: int):
    """The scouting rounds: ``blown_at(lrs) -> diverged`` per (group, seed), one rate each per
    round (``_next_rate``) until every bracket is within ``TOLERANCE`` and checked below
    (``_checked_rate``), in at most ``rounds`` rounds. Returns (lo, hi, rounds run)."""
    lo, hi = np.zeros_like(start), np.full_like(start, np.inf)  # nothing known yet
    checked = np.zeros(start.shape, int)  # rates below a narrow bracket run so far
    step = np.full(start.shape, float(factor))  # down from a divergent rate by this
    runs = 0
    while runs < rounds and not (_narrow(lo, hi) and (checked >= CHECKS).all()):
        checking = _closed(lo, hi) & (checked < CHECKS)
        lrs = np.where(checking, _checked_rate(lo, checked), _next_rate(lo, hi, start, step))
        blown = blown_at(lrs)
        found = checking & blown  # a lower rate diverged: the bracket starts again below it
        hi = np.where(blown & (found | ~checking), lrs, hi)
        lo = np.where(found, 0.0, np.where(blown | checking, lo, lrs))
        checked = np.where(found, 0, checked + checking)
        step = np.where(found, CHECK_SPAN, step)
        runs += 1
    return lo, hi, runs


def _checked_rate(lo: np.ndarray, checked: np.ndarray) -> np.ndarray:
    """The next rate below a narrow bracket: ``lo`` times ``CHECK_SPAN`` to the power
    ``-(checked + 1) / CHECKS``, down to ``lo / CHECK_SPAN`` in ``CHECKS`` rounds."""
    return lo * CHECK_SPAN ** (-(checked + 1) / CHECKS)


def _confirm(whole, lo, hi, factor: float, rounds: int):
    """The scouted bracket ``[lo, hi]`` checked over the whole run: a rate that diverged
    within the scouting steps diverges within the run, so ``hi`` stands; ``lo`` is run again
    over the whole run, and where it diverges late the bracket moves down (by the scouted
    bracket's width, doubled at each further divergence, then bisection) until it is as narrow
    as scouted, in at most ``rounds`` more rounds. Returns (lo, hi, rounds run)."""
    scouted = lo > 0  # where none survived even the scouting steps, nothing to confirm
    ratio = np.where(scouted & np.isfinite(hi), hi / np.where(scouted, lo, 1.0), factor)
    target, step = ratio * (1 + 1e-9), np.log(ratio)
    test = lo.copy()
    lo = np.where(scouted, 0.0, lo)
    for done in range(rounds):
        known = lo > 0
        settled = ~scouted | (known & (~np.isfinite(hi) | (hi <= lo * target)))  # inf: no edge
        if settled.all():
            return lo, hi, done
        if done:
            down = np.where(np.isfinite(hi), hi, 1.0) * np.exp(-step)
            test = np.where(known, _middle(lo, hi), down)
        test = np.where(settled, np.where(known, lo, 1.0), test)
        blown = whole(test)
        step = np.where(~known & blown & ~settled & (done > 0), 2 * step, step)
        hi = np.where(blown & ~settled, test, hi)
        lo = np.where(~blown & ~settled, test, lo)
    return lo, hi, rounds


def _next_rate(lo: np.ndarray, hi: np.ndarray, start: np.ndarray, factor) -> np.ndarray:
    """The next rate to run per (group, seed): ``start`` while nothing is known, then
    ``factor`` times the last survivor until one diverges (``hi`` infinite), ``1/factor``
    times the first divergent until one survives (``lo`` 0), then the geometric middle."""
    up = np.where(lo > 0, lo * factor, start)
    down = np.where(np.isfinite(hi), hi, 1.0) / factor
    return np.where(np.isfinite(hi), np.where(lo > 0, _middle(lo, hi), down), up)


def _closed(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per bracket: closed (a survivor and a divergent rate known) and within ``TOLERANCE``."""
    return (lo > 0) & np.isfinite(hi) & (hi <= lo * TOLERANCE)


def _narrow(lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether every bracket is closed and within ``TOLERANCE``."""
    return bool(np.all(_closed(lo, hi)))


def _middle(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The geometric middle of each bracket; ``inf`` where it is open (``hi`` infinite)."""
    return np.where(np.isfinite(hi), np.sqrt(lo * np.where(np.isfinite(hi), hi, 1.0)), np.inf)


def probe_grid(
    program: Program,
    seeds: int,
    points: dict[str, np.ndarray],
    limits: np.ndarray,
    curvature: np.ndarray,
    *,
    steps: int | None = None,
    rounds: int = ROUNDS,
    examples: int | None = None,
    known: EdgeProbe | None = None,
) -> tuple[np.ndarray, EdgeProbe | None]:
    """The probed edge of each (grid point, seed), ``(P, S)`` (``inf`` where none diverged;
    NaN where the rule's limit is unknown), and the probe (None if nothing was probed).
    ``known``: a probe already run for the same groups, seeds and steps (the edge does not
    depend on the grid's learning rates), read instead of probing again.

    ``limits`` ``(P, T)`` are the rule's limits per step of the schedule; the bracket of each
    group starts at its lowest rate at which the limit meets the seed's ``curvature``
    (exact when the loop depends on the learning rate times the curvature only, as for
    every rule whose step is the learning rate times an update)."""
    size = limits.shape[0]
    lr = learning_rates(program.config, points, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_point = np.min(lr[:, None] * limits, axis=1)[:, None] / np.asarray(curvature)[None]
    groups = groups_of(points, size)
    edge = np.full((size, seeds), np.nan)
    rows = [index for index in groups.values() if np.isfinite(per_point[index]).all()]
    if not rows:
        return edge, None
    low = np.stack([np.min(per_point[index], axis=0) for index in rows])
    other = [
        {k: float(v[index[0]]) for k, v in points.items() if k != "learning_rate"} for index in rows
    ]
    if known is not None:
        total = program.config.steps
        probe = _reuse(known, other, seeds, total if steps is None else min(int(steps), total))
    else:
        kw = {"steps": steps, "rounds": rounds, "examples": examples}
        probe = probe_edges(program, seeds, other, low, **kw)
    for g, index in enumerate(rows):
        edge[index] = probe.edge[g]
    return edge, probe


def _reuse(known: EdgeProbe, groups: list[dict[str, float]], seeds: int, steps: int) -> EdgeProbe:
    """``known`` if it was probed on these ``groups``, ``seeds`` and ``steps``; else a
    one-line ``ValueError``."""
    if known.groups != tuple(groups) or known.edge.shape[1:] != (seeds,) or known.steps != steps:
        raise ValueError(
            "probe: expected a probe of the same other hyperparameters, seeds and steps, "
            f"got one of {len(known.groups)} group(s) x {known.edge.shape[1]} seed(s), "
            f"{known.steps} steps for {len(groups)} x {seeds}, {steps}"
        )
    return known

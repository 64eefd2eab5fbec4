r"""Pre-flight: the phase of every grid point of a sweep, predicted before anything trains.

``preflight(config, grid, seeds)`` assembles the sweep (``sweep.assemble``: the same checks,
the same initialisation of each seed), measures at each seed's initialisation, in seconds:

- the top Hessian eigenvalue :math:`\lambda_0` (Lanczos, ``iters`` steps, on the first
  ``examples`` training examples); for an adaptive rule (one ``optax.ScaleByAdamState``) in
  the coordinates :math:`\phi = P^{1/2}\theta` of Adam's preconditioner :math:`P`, after
  ``warmup`` updates of its statistics at the initial parameters (Cohen et al. 2022);
- for mini-batches, the batch sharpness (Andreyev & Beneventano 2024) on ``batches``
  mini-batches of the training size: the curvature the loop sees (full batch: the training
  set's, once; an adaptive rule's warm-up reads the same batches);
- the top eigenpairs of the Gauss-Newton matrix :math:`G` (Lanczos), and for
  :math:`S = \lambda_{\max}(G)`: :math:`\nabla S\cdot\nabla^3L[u,u,\cdot]`,
  :math:`\nabla^2S[u,u]` (with the eigenvector's turning, by conjugate gradients) and
  :math:`-\nabla S\cdot\nabla L` (third and fourth derivatives, by automatic
  differentiation): the catapult's upper edge and the sharpening rate
  (:mod:`gdyn_jax.predictions.phases`);

optionally (``flow_steps``) the sharpness along one gradient flow per seed, which times the edge
of stability of every grid point at its rule's effective step
(:mod:`gdyn_jax.predictions.preflight_flow`); and joins them to the rule's loop at every grid
point and every step of its schedule
(``linearize.linearize_grid``; an adaptive rule's loop with :math:`\nu` and the count frozen
at :math:`P = 1`, as ``linearize.max_stable_curvature(..., freeze=('nu', 'count'))``). A rule
whose loop is not proven affine gets the phase ``'unknown'`` with linearize's reason
(``predictions.preflight_loops``). Above the limit, what separates a catapult from divergence
is, by default, *probed*: runs of the rule itself, as long as the sweep's, at bracketed
learning rates (``predictions.probe``, its seconds reported apart), where the second-order
model's ratio places the edge 30-35 % low on a real network; ``probe_steps=0`` leaves it to
that model.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import batch_sharpness, hessian
from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.preflight_flow import check_flow_task, grid_flow
from gdyn_jax.predictions.preflight_loops import learning_rates, rule_loops
from gdyn_jax.predictions.probe import ROUNDS, EdgeProbe, probe_grid
from gdyn_jax.sweep import Program, SweepConfig, assemble, setup
from gdyn_jax.sweep import train as train_lib

__all__ = [
    "InitMeasurement",
    "Preflight",
    "adam_state",
    "check_preflight_options",
    "measure_init",
    "preflight",
    "rule_loops",
    "warm_scale",
]


@dataclasses.dataclass(frozen=True)
class InitMeasurement:
    """Per seed (arrays of shape ``(S,)``), at initialisation: ``loss``, ``sharpness``
    :math:`\\lambda_0`, ``curvature`` (what the loop sees: the batch sharpness for
    mini-batches, else :math:`\\lambda_0`), ``gn_sharpness``, ``drift``, ``d2s``, ``sharpening``
    and the turning terms (``predictions.phases``); how they were
    measured, and the seconds spent (``compile_seconds`` apart)."""

    values: dict[str, np.ndarray]
    preconditioned: bool
    examples: int
    iters: int
    batches: int
    warmup: int
    seconds: float
    compile_seconds: float

    def positive_curvature(self) -> np.ndarray:
        """``curvature`` where positive; elsewhere (a curvature along the gradient that no
        limit meets: Adam's preconditioned batch sharpness can be negative) the sharpness."""
        values = self.values
        return np.where(values["curvature"] > 0, values["curvature"], values["sharpness"])

    def __getattr__(self, name: str) -> np.ndarray:
        values = self.__dict__.get("values", {})
        if name in values:
            return values[name]
        raise AttributeError(name)


def adam_state(opt_state: Any) -> bool:
    """Whether ``opt_state`` holds exactly one ``optax.ScaleByAdamState`` (an adaptive rule)."""
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
    return sum(isinstance(x, optax.ScaleByAdamState) for x in leaves) == 1


def warm_scale(task, hp, state, precondition, xb, yb, warmup: int):
    """:math:`P^{-1/2}` (flat) of an adaptive rule after ``warmup`` updates of its statistics
    on the mini-batches ``xb, yb`` at the initial parameters (which stay put)."""
    params, ms = state.params, state.model_state
    opt = train_lib.optimizer_at(task, hp, jnp.int32(0))

    def stats(s, i):
        g = jax.grad(train_lib.mean_loss, argnums=1)(task, params, ms, xb[i], yb[i])
        return opt.update(g, s, params)[1], None

    idx = jnp.arange(warmup) % xb.shape[0]
    opt_state = jax.lax.scan(stats, state.opt_state, idx)[0]
    return jax.lax.rsqrt(ravel_pytree(precondition(opt_state, hp))[0])


def _sharpness_terms(outputs, out_loss, loss, zero, key, iters: int) -> dict[str, jax.Array]:
    """The Gauss-Newton top eigenpair and the derivatives of its eigenvalue
    (``predictions.phases``) for the network ``outputs(phi)`` under ``out_loss``."""

    def linear(phi, psi):  # the network linearised at phi: its Hessian in psi is G(phi)
        return out_loss(outputs(phi) + jax.jvp(outputs, (phi,), (psi,))[1])

    def gn_sharp(phi):  # u' G(phi) u
        outs, ju = jax.jvp(outputs, (phi,), (u,))
        return jnp.vdot(ju, jax.jvp(jax.grad(out_loss), (outs,), (ju,))[1])

    def gn_u(phi):  # G(phi) u
        return jax.jvp(jax.grad(lambda psi: linear(phi, psi)), (zero,), (u,))[1]

    def sharp(phi):  # u' H(phi) u, the full Hessian
        return jnp.vdot(u, jax.jvp(jax.grad(loss), (phi,), (u,))[1])

    values, vectors = hessian.top_eigenpairs(lambda psi: linear(zero, psi), zero, key, iters, iters)
    u = vectors[0]
    grad_s = jax.grad(gn_sharp)(zero)
    turn = jax.jvp(gn_u, (zero,), (u,))[1]
    weights, rest = _turning(lambda psi: linear(zero, psi), zero, values, vectors, turn, iters)
    return {
        "gn_sharpness": values[0],
        "drift": jnp.vdot(grad_s, jax.grad(sharp)(zero)),
        "d2s": jax.grad(jax.grad(lambda s: gn_sharp(s * u)))(0.0),
        "ritz_values": values,
        "ritz_weights": weights,
        "turning_rest": rest,
        "sharpening": -jnp.vdot(grad_s, jax.grad(loss)(zero)),
    }


def _measure_fn(task, examples: int, iters: int, warmup: int, precondition):
    """``(data, hparams, state, key, batches) -> measurements`` of one member at init."""

    def one(data, hp, state, key, xb, yb):
        ms = state.model_state
        flat0, unravel = ravel_pytree(state.params)
        x, y = data.x_train[:examples], data.y_train[:examples]
        scale = jnp.ones_like(flat0)
        if precondition is not None:
            scale = warm_scale(task, hp, state, precondition, xb, yb, warmup)

        def batch_loss(phi, batch):
            return train_lib.mean_loss(task, unravel(flat0 + scale * phi), ms, *batch)

        def loss(phi):
            return batch_loss(phi, (x, y))

        def outputs(phi):
            return train_lib.apply(task, unravel(flat0 + scale * phi), ms, x)

        def out_loss(o):
            return jnp.mean(task.loss(o, y))

        zero = jnp.zeros_like(flat0)
        hessian_key, gn_key = jax.random.split(key)
        return {
            "loss": loss(zero),
            "sharpness": hessian.top_eigenvalue(loss, zero, hessian_key, iters),
            "batch_sharpness": batch_sharpness(batch_loss, zero, (xb, yb)),
            **_sharpness_terms(outputs, out_loss, loss, zero, gn_key, iters),
        }

    return one


def _turning(loss, zero, values, vectors, grad_s, iters: int):
    r"""The eigenvector's turning along itself, by second-order perturbation theory:
    :math:`\tfrac{d^2}{ds^2}\lambda_{\max}(G(\theta+su)) = u^\top G''u + 2\sum_{j>1}
    (q_j^\top G'u)^2/(\lambda-\lambda_j)` (``grad_s`` is :math:`G'u`, ``loss``'s Hessian is
    :math:`G`). Returns the terms :math:`(q_j^\top G'u)^2` on the Lanczos Ritz vectors (0 for
    the top one) and the rest, :math:`2r^\top(\lambda I-G)^{-1}r` for the part :math:`r`
    outside their span, by conjugate gradients there (``2 iters`` matrix-vector products)."""
    coef = vectors @ grad_s
    weights = (coef**2).at[0].set(0.0)
    r = grad_s - vectors.T @ coef

    def project(v):
        return v - vectors.T @ (vectors @ v)

    def matvec(v):
        v = project(v)
        return project(values[0] * v - jax.jvp(jax.grad(loss), (zero,), (v,))[1])

    x, _ = jax.scipy.sparse.linalg.cg(matvec, r, maxiter=2 * iters)
    return weights, 2 * jnp.vdot(r, project(x))


def measure_init(
    program: Program,
    seeds: int,
    hparams: dict[str, float] | None = None,
    *,
    examples: int | None = 1000,
    iters: int = 20,
    batches: int = 16,
    warmup: int = 10,
) -> InitMeasurement:
    """The measurements of the module doc at the initialisation of seeds ``0 .. seeds-1`` of
    ``program`` (as its sweep initialises them), with ``hparams`` (one grid point: only an
    adaptive rule's statistics depend on them). ``examples=None``: the whole training set.
    One compiled program (its compilation timed apart), vmapped over the seeds."""
    task, data = program.task, program.data
    check_preflight_options(iters=iters, batches=batches, warmup=warmup)
    examples = min(task.num_train if examples is None else int(examples), task.num_train)
    hp = train_lib.as_hparams(hparams or _first_point(program))
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    adaptive = _adaptive(program)
    precondition = setup.adam_preconditioner_of(task.optimizer, task.fixed) if adaptive else None
    one = _measure_fn(task, examples, iters, warmup, precondition)

    def run(data, hp, keys):
        def seed(key):
            init_key, batch_key, lanczos_key = jax.random.split(key, 3)
            state = program.init(data, hp, key)
            xb, yb = _batches(task, data, batch_key, batches)
            return one(data, hp, state, lanczos_key, xb, yb)

        return jax.lax.map(seed, keys)

    batches = 1 if task.full_batch else batches
    start = time.perf_counter()
    compiled = jax.jit(run).lower(data, hp, keys).compile()
    middle = time.perf_counter()
    out = jax.device_get(compiled(data, hp, keys))
    values = {k: np.asarray(v, np.float64) for k, v in out.items()}
    values["curvature"] = values["sharpness" if task.full_batch else "batch_sharpness"]
    seconds = time.perf_counter() - middle
    return InitMeasurement(
        values, adaptive, examples, iters, batches, warmup, seconds, middle - start
    )


def _batches(task, data, key, batches: int):
    """The mini-batches of the batch sharpness and of an adaptive rule's warm-up, stacked:
    ``batches`` drawn at the training batch size; full batch: the training set, once."""
    if task.full_batch:
        return data.x_train[None], data.y_train[None]
    pick = jax.random.randint(key, (batches, task.batch_size), 0, task.num_train)
    return data.x_train[pick], data.y_train[pick]


def _first_point(program: Program) -> dict[str, float]:
    if program.grid is None:
        return {}
    return {n: float(v[0]) for n, v in zip(program.grid.names, program.grid.values, strict=True)}


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The predicted phase of every (grid point, seed), with what decided it.

    ``names``/``points``: the grid's hyperparameters and the ``(P, len(names))`` points in the
    grid's member order; ``phase`` (strings), ``step``, ``limit``, ``margin``, ``ratio`` and
    ``curvature``: ``(P, S)``; ``reason``: linearize's, where the phase is ``'unknown'``;
    ``seconds``: ``{'measure', 'compile', 'rule', 'probe', 'total', 'wall'}`` (``total``:
    measuring, the rule's loops and the probe, compilation apart); ``classes``: outputs read
    as classes, if any; ``edge``: the probed divergence edge in the learning rate ``(P, S)``
    and ``probe`` the probe (None when not probed); ``flow``: per seed the gradient flow's
    ``(times, sharpness)`` that timed the edge of stability (None: the rate at init did).
    """

    names: tuple[str, ...]
    points: np.ndarray
    phase: np.ndarray
    step: np.ndarray
    limit: np.ndarray
    margin: np.ndarray
    ratio: np.ndarray
    curvature: np.ndarray
    measurement: InitMeasurement
    seconds: dict[str, float]
    reason: str = ""
    classes: int | None = None
    edge: np.ndarray | None = None
    probe: EdgeProbe | None = None
    flow: tuple[np.ndarray, np.ndarray] | None = None

    def point_phase(self) -> list[str]:
        """Each point's phase: the most common over its seeds (the first listed on a tie)."""
        out = []
        for row in self.phase:
            counts = collections.Counter(row.tolist())
            out.append(max(ph.PHASES, key=lambda p: (counts[p], -ph.PHASES.index(p))))
        return out

    def diverges(self) -> np.ndarray:
        """``(P, S)`` booleans: predicted divergent (the skip mask of the sweep)."""
        return self.phase == "divergent"

    def to_json(self) -> dict[str, Any]:
        """``{'points': [{hparams, phase, limit, curvature, margin, ...}], 'seconds'}``."""
        rows = []
        for i, phase in enumerate(self.point_phase()):
            step = self.step[i][self.phase[i] == phase]
            rows.append(
                {
                    "hparams": {
                        n: float(v) for n, v in zip(self.names, self.points[i], strict=True)
                    },
                    "phase": phase,
                    "limit": _num(np.median(self.limit[i])),
                    "curvature": _num(np.median(self.curvature[i])),
                    "margin": _num(np.median(self.margin[i])),
                    "catapult_ratio": _num(np.nanmedian(self.ratio[i]))
                    if phase in ("catapult", "divergent")
                    else None,
                    "step": int(np.median(step)) if step.size and phase != "stable" else None,
                    "edge": None if self.edge is None else _num(np.median(self.edge[i])),
                    "seed_phases": self.phase[i].tolist(),
                    **({"reason": self.reason} if phase == "unknown" else {}),
                }
            )
        return {"points": rows, "seconds": self.seconds}


def _classes(program: Program) -> int | None:
    """The number of outputs read as classes (None when the targets are not class labels)."""
    task, data = program.task, program.data
    if not task.accuracy:
        return None
    hp = train_lib.as_hparams(_first_point(program))
    state = jax.eval_shape(lambda: program.init(data, hp, jax.random.key(0)))
    out = jax.eval_shape(
        lambda s: train_lib.apply(task, s.params, s.model_state, data.x_train[:1]), state
    )
    return int(out.shape[-1])


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def preflight(
    config: SweepConfig,
    grid: dict[str, Any] | None = None,
    seeds: int = 1,
    *,
    measurement: InitMeasurement | None = None,
    probe_steps: int | None = None,
    probe_rounds: int = ROUNDS,
    probe: EdgeProbe | None = None,
    flow_steps: int = 0,
    flow: tuple[np.ndarray, np.ndarray] | None = None,
    **measure: Any,
) -> Preflight:
    """The phase of every point of ``grid`` × ``seeds`` (module doc). ``measure``:
    :func:`measure_init`'s options; ``measurement``: one made on the same model and data
    (non-adaptive rules share it). ``probe_steps``, ``probe_rounds``: the divergence edge
    probed by runs of the rule (``predictions.probe``) of ``probe_steps`` steps (None: the
    run's own); 0 steps: decided by the second-order model (``predictions.phases``).
    ``probe``: an earlier pre-flight's (``Preflight.probe``) of the same model, seeds and
    other hyperparameters, reused (the edge does not depend on the grid's rates).
    ``flow_steps`` > 0: the edge of stability timed by one gradient flow per seed of at most
    that many steps, or ``flow``, an earlier pre-flight's (``Preflight.flow``) on the same
    model and seeds (``predictions.preflight_flow``); else by the sharpening rate at init."""
    check_preflight_options(probe_steps, probe_rounds, flow_steps=flow_steps, **measure)
    start = time.perf_counter()
    program = assemble(config, grid or {}, seeds)  # no grid: refused as the sweep refuses it
    names, table = _grid_table(program)
    program.task  # noqa: B018  (loads the data and checks the task before any measuring)
    _check_flow(program, flow_steps, flow)
    if measurement is None:
        measurement = measure_init(program, seeds, **measure)
    rule_start = time.perf_counter()
    points = {n: table[:, j] for j, n in enumerate(names)}
    limits, loops = rule_loops(program.config, points, measurement.preconditioned)
    hp = _first_point(program)
    flow, timed = grid_flow(program, seeds, hp, limits, loops, flow_steps, measurement, flow)
    probing = (probe_steps, probe_rounds, probe, flow)
    out, edge, used = _decide(program, points, limits, loops, measurement, *probing)
    end = time.perf_counter()
    seconds = _seconds(measurement, used, used is not probe, timed, end - rule_start)
    seconds["wall"] = end - start
    return Preflight(
        names,
        table,
        np.asarray(ph.PHASES, dtype=object)[out["phase"]],
        out["step"],
        out["limit"],
        out["margin"],
        out["ratio"],
        np.broadcast_to(measurement.values["curvature"], out["phase"].shape).copy(),
        measurement,
        seconds,
        "" if loops.exact else loops.reason,
        _classes(program),
        edge,
        used,
        flow,
    )


def _seconds(measurement, used, probed_here: bool, timed: dict, rule: float) -> dict:
    """The pre-flight's seconds (``Preflight``): ``rule`` is the wall time from the rule's
    loops on, of which the probe's (``used``, if ``probed_here``) and the flow's are taken
    out; a reused probe's seconds are reported as its own."""
    took = (used.seconds, used.compile_seconds) if used else (0.0, 0.0)
    flow_compile = timed.get("flow_compile", 0.0)
    seconds = {
        "measure": measurement.seconds,
        "compile": measurement.compile_seconds + took[1] + flow_compile,
        "rule": rule - (sum(took) if probed_here else 0.0) - timed.get("flow", 0.0) - flow_compile,
        "probe": took[0],
        **({"flow": timed["flow"]} if "flow" in timed else {}),
    }
    seconds["total"] = sum(seconds[k] for k in ("measure", "rule", "probe")) + timed.get("flow", 0)
    return seconds


def _grid_table(program: Program) -> tuple[tuple[str, ...], np.ndarray]:
    """The grid's hyperparameter names and its ``(P, len(names))`` points in member order."""
    names = tuple(program.grid.names) if program.grid is not None else ()
    values = program.grid.values if program.grid is not None else ()
    rows = list(itertools.product(*values))
    return names, np.array(rows, np.float64).reshape(len(rows), len(names))


def _check_flow(program: Program, flow_steps: int, flow) -> None:
    """``check_flow_task`` where a flow is asked for (before any measuring)."""
    if flow_steps or flow is not None:
        check_flow_task(program, _adaptive(program))


def _adaptive(program: Program) -> bool:
    """Whether ``program``'s rule is adaptive (one Adam state), read from its state's shape."""
    hp = train_lib.as_hparams(_first_point(program))
    state = jax.eval_shape(lambda: program.init(program.data, hp, jax.random.key(0)))
    return adam_state(state.opt_state)


def check_preflight_options(
    probe_steps: Any = None, probe_rounds: Any = 0, flow_steps: Any = 0, **measure: Any
) -> None:
    """A one-line ``ValueError`` naming the first bad option of :func:`preflight`, before any
    work: ``probe_steps`` (None: the run's own), ``probe_rounds`` and ``flow_steps``
    non-negative integers, ``iters``, ``batches`` and ``warmup`` of ``measure`` positive ones."""
    checks = [("probe_steps", probe_steps, 0), ("probe_rounds", probe_rounds, 0)]
    checks += [("flow_steps", flow_steps, 0)]
    checks += [(k, measure[k], 1) for k in ("iters", "batches", "warmup") if k in measure]
    for name, value, least in checks:
        if name == "probe_steps" and value is None:  # the run's own steps
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            kind = "non-negative" if least == 0 else "positive"
            raise ValueError(f"{name}: expected a {kind} integer, got {value!r}")


def _decide(program, points, limits, loops, measurement, steps, rounds: int, known, flow):
    """``phases.decide_phases`` with the divergence edge probed (unless ``steps`` or
    ``rounds`` is 0, or the loop is unknown; ``known``: a probe reused) and the edge of
    stability timed by ``flow`` where given: (its output, the edge, the probe)."""
    m = measurement.values
    seeds = m["curvature"].shape[0]
    edge, probe = np.full((limits.shape[0], seeds), np.nan), None
    if steps != 0 and rounds and loops.exact:
        kw = {"steps": steps, "rounds": rounds, "examples": measurement.examples, "known": known}
        start = measurement.positive_curvature()  # where the limit meets it: the first rate
        edge, probe = probe_grid(program, seeds, points, limits, start, **kw)
    lr = learning_rates(program.config, points, limits.shape[0])[:, None]
    above = np.where(np.isnan(edge), np.nan, lr > edge)  # NaN: not probed, the ratio decides
    probed = None if probe is None else above
    run = program.config.steps
    return ph.decide_phases(limits, loops, m, probed, steps=run, flow=flow), edge, probe

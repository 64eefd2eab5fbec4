r"""The pre-flight's edge of stability, timed by one gradient flow per seed.

The sharpness at initialisation and its rate of change there say little about where
progressive sharpening goes: on the edge-of-stability network of Cohen et al. (ICLR 2021, a
tanh MLP on MNIST-1D, square loss, full batch) the sharpness first *falls* under gradient flow
(its rate at init is negative), then rises six-fold over the run. Below its limit a rule
follows gradient flow at its effective step :math:`\eta_{\rm eff}`
(:mod:`gdyn_jax.measurements.flow`), so one flow per seed, integrated until its sharpness
passes the largest limit of the grid or its time passes the longest
:math:`\sum_t\eta_{\rm eff}` of the grid's runs, times the edge of stability of every grid
point: the first step :math:`t` with :math:`S_{\rm flow}(\sum_{s\le t}\eta_{\rm eff})` within
``phases.EOS_TOLERANCE`` (5 %) of :math:`S^*_t`, as a run's edge is measured
(``phases.decide_phases``). Measured (the pre-flight guide): gradient descent's edge falls in
the evaluation its run shows it in on three tanh networks; heavy ball's and Nesterov's come
1.2-4 times later than the flow says (their oscillating top modes slow the sharpening), so
for momentum the step is a lower bound. Full batch and non-adaptive rules only (a mini-batch
run's sharpness settles below the flow's, an adaptive rule's preconditioner changes along it).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.measurements.flow import sharpness_along_flow
from gdyn_jax.predictions.phases import Loops
from gdyn_jax.sweep import Program
from gdyn_jax.sweep import train as train_lib

__all__ = [
    "CHECK_EVERY",
    "FLOW_MARGIN",
    "FRACTION",
    "check_flow_task",
    "flow_targets",
    "grid_flow",
    "measure_flow",
]

#: the flow runs on until its sharpness passes the grid's largest limit by this fraction
FLOW_MARGIN = 0.05
#: the integrator's step :math:`h = f/S` (``measurements.flow``): on the edge-of-stability
#: network of ``cohen2021`` the flow times at which the sharpness reaches 19, 28.5 and 38
#: lie within 2 % of those at f = 1 with a check every 20 steps
FRACTION = 1.5
#: the integrator's steps between two measurements of :math:`S` (warm-started Lanczos)
CHECK_EVERY = 50


def check_flow_task(program: Program, adaptive: bool) -> None:
    """A one-line ``ValueError`` where the flow cannot time the edge: mini-batches, Adam."""
    if not program.task.full_batch:
        raise ValueError("flow_steps: the flow times a full-batch run; got a batch size")
    if adaptive:
        raise ValueError("flow_steps: not for an adaptive rule (its preconditioner moves)")


def flow_targets(limits: np.ndarray, loops: Loops, steps: int) -> tuple[float, float]:
    r"""Where the flow may stop: the grid's largest finite limit (with ``FLOW_MARGIN``) and
    the longest flow time of its runs, :math:`\max\sum_t\eta_{\rm eff}` over ``steps``."""
    finite = limits[np.isfinite(limits)]
    top = float(finite.max()) * (1 + FLOW_MARGIN) if finite.size else np.inf
    eta = np.maximum(np.broadcast_to(loops.effective_step, limits.shape), 0)
    per_run = eta.sum(axis=-1) * (steps if limits.shape[-1] == 1 else 1)
    return top, float(np.nanmax(per_run)) if per_run.size else 0.0


def measure_flow(
    program: Program,
    seeds: int,
    hparams: dict[str, float],
    *,
    until_sharpness: float,
    until_time: float,
    max_steps: int,
    examples: int,
    iters: int = 20,
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, float]]:
    """Per seed (initialised as the sweep initialises it), the flow's ``(times, sharpness)``
    ``(S, K)`` on the first ``examples`` training examples; and its seconds
    (``{'flow', 'flow_compile', 'flow_steps'}``: the most gradient steps a seed took)."""
    task, data = program.task, program.data
    hp = train_lib.as_hparams(hparams)
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    x, y = data.x_train[:examples], data.y_train[:examples]

    def run(data, hp, keys):
        def seed(key):
            state = program.init(data, hp, key)

            def loss(p):
                return train_lib.mean_loss(task, p, state.model_state, x, y)

            flow_key = jax.random.split(key, 4)[3]
            return sharpness_along_flow(
                loss,
                state.params,
                flow_key,
                until_sharpness=until_sharpness,
                until_time=until_time,
                max_steps=max_steps,
                check_every=CHECK_EVERY,
                fraction=FRACTION,
                iters=iters,
            )

        return jax.lax.map(seed, keys)

    start = time.perf_counter()
    compiled = jax.jit(run).lower(data, hp, keys).compile()
    middle = time.perf_counter()
    out = jax.device_get(compiled(data, hp, keys))
    seconds = {
        "flow": time.perf_counter() - middle,
        "flow_compile": middle - start,
        "flow_steps": float(np.max(out.steps)),
    }
    return (np.asarray(out.time, np.float64), np.asarray(out.sharpness, np.float64)), seconds


def grid_flow(
    program: Program,
    seeds: int,
    hparams,
    limits,
    loops: Loops,
    max_steps: int,
    measurement,
    known=None,
):
    """The flow that times the grid's edge of stability, and its seconds: ``known`` (an
    earlier pre-flight's, checked), or :func:`measure_flow` up to :func:`flow_targets` on the
    measurement's examples, or ``(None, {})`` (``max_steps`` 0, or no loop to time)."""
    if known is not None:
        times, sharp = (np.asarray(a, np.float64) for a in known)
        if times.ndim != 2 or times.shape != sharp.shape or times.shape[0] != seeds:
            raise ValueError(f"flow: expected (times, sharpness) of shape ({seeds}, K) each")
        return (times, sharp), {}
    if not max_steps or not loops.exact:
        return None, {}
    top, longest = flow_targets(limits, loops, program.config.steps)
    return measure_flow(
        program,
        seeds,
        hparams,
        until_sharpness=top,
        until_time=longest,
        max_steps=max_steps,
        examples=measurement.examples,
        iters=measurement.iters,
    )

r"""The learning-rate range test: the empirical baseline of a pre-flight.

Smith, "Cyclical learning rates for training neural networks" (WACV 2017), as fastai's
``lr_find`` runs it: train from the initialisation while the learning rate grows
exponentially from ``start`` to ``end`` over ``steps`` steps, smooth the mini-batch losses
with an exponential moving average (:math:`\beta = 0.98`, bias corrected), and stop when the
smoothed loss exceeds ``stop_factor`` (4) times the best seen so far, or goes non-finite. The
learning rate at the stop is the test's estimate of where training diverges (its suggested
maximum); the one at the lowest smoothed loss is reported beside it. It knows nothing of the
rule's loop (momentum, schedules) beyond running it, nor of the model's curvature.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.sweep import SweepConfig, assemble
from gdyn_jax.sweep import train as train_lib

__all__ = ["RangeTest", "range_test"]


@dataclasses.dataclass(frozen=True)
class RangeTest:
    """Per seed: the ramp's ``learning_rates`` ``(N,)``, the smoothed ``losses`` ``(S, N)``
    (NaN after the stop), the learning rate at the ``stop`` (its suggested maximum) and at the
    lowest smoothed loss (``best``), each ``(S,)``; ``seconds`` (``compile`` apart)."""

    learning_rates: np.ndarray
    losses: np.ndarray
    stop: np.ndarray
    best: np.ndarray
    seconds: float
    compile_seconds: float


def range_test(
    config: SweepConfig,
    seeds: int = 1,
    hparams: dict[str, float] | None = None,
    *,
    start: float = 1e-5,
    end: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.98,
    stop_factor: float = 4.0,
) -> RangeTest:
    """The range test (module doc) of ``config``'s model, data and rule (its schedule is left
    out: the ramp is the schedule), from the initialisation of seeds ``0 .. seeds-1``;
    ``hparams``: the rule's other hyperparameters (``learning_rate`` is ramped)."""
    if not 0 < start < end or not np.isfinite(end):
        raise ValueError(f"start, end: expected 0 < start < end < inf, got {start!r}, {end!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps: expected an integer >= 2, got {steps!r}")
    if not 0 <= smoothing < 1 or not stop_factor > 1:
        raise ValueError(
            f"smoothing, stop_factor: expected 0 <= smoothing < 1 and stop_factor > 1, got "
            f"{smoothing!r}, {stop_factor!r}"
        )
    program = assemble(config)
    task = dataclasses.replace(program.task, schedule=None)
    data = program.data
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    other = {k: v for k, v in (hparams or {}).items() if k != "learning_rate"}

    def one(key):
        hp0 = train_lib.as_hparams({**other, "learning_rate": lrs[0]})
        state = train_lib.init(task, data, hp0, key)

        def step(state, inputs):
            t, lr = inputs
            hp = train_lib.as_hparams({**other, "learning_rate": lr})
            x, y, _ = train_lib.draw_batch(task, data, state, t)
            loss = train_lib.mean_loss(task, state.params, state.model_state, x, y)
            state = train_lib.train_step(task, data, hp, state, t)
            return state, jnp.where(state.alive, loss, jnp.inf)

        return jax.lax.scan(step, state, (jnp.arange(steps), jnp.asarray(lrs, jnp.float32)))[1]

    keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
    begin = time.perf_counter()
    compiled = jax.jit(jax.vmap(one)).lower(keys).compile()
    middle = time.perf_counter()
    raw = np.asarray(compiled(keys), np.float64)
    seconds = time.perf_counter() - middle
    smoothed, stop, best = _stopping(raw, lrs, smoothing, stop_factor)
    return RangeTest(lrs, smoothed, stop, best, seconds, middle - begin)


def _stopping(raw: np.ndarray, lrs: np.ndarray, beta: float, factor: float):
    """Smoothed losses, and the learning rates at the stop and at the lowest smoothed loss."""
    seeds, steps = raw.shape
    smoothed = np.full_like(raw, np.nan)
    stop, best = np.full(seeds, lrs[-1]), np.full(seeds, lrs[0])
    for s in range(seeds):
        avg, low = 0.0, np.inf
        for t in range(steps):
            avg = beta * avg + (1 - beta) * raw[s, t]
            value = avg / (1 - beta ** (t + 1))
            smoothed[s, t] = value
            if not np.isfinite(value) or value > factor * low:
                stop[s] = lrs[t]
                break
            if value < low:
                low, best[s] = value, lrs[t]
    return smoothed, stop, best

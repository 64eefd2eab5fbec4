"""Jitted optimizer step of each gdyn_jax optimizer against optax's equivalent.

For each optimizer, one step (``update`` + ``optax.apply_updates``) is jitted for
ours and for the baseline, on the same ~10M-parameter float32 pytree and the same
gradients; state is initialised outside the timed function, nothing is donated.
Timed calls alternate ours / baseline (ABBA, so both see the same machine load). The
table gives each median, the median of the ratios of adjacent (ours, baseline) calls and
the ratio of minima (both robust to other processes on a shared machine), and the ratio
of the bytes that XLA's cost analysis says each compiled step reads and writes: a
noise-free check that our abstractions add no pass over the parameters.

    python benchmarks/optimizers.py [--repeats 60] [--only NAME ...] [--scale 1] [--json F]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gdyn_jax import optimizers

LR = 1e-3


class _PIDRefState(NamedTuple):
    integral: optax.Updates
    derivative: optax.Updates
    prev_grad: optax.Updates


def pid_reference(learning_rate, beta=0.9, ki=5.0, kd=10.0) -> optax.GradientTransformation:
    """A plain-JAX PID step (optax has no PID): one ``jax.tree.map`` per buffer."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return _PIDRefState(zeros, zeros, zeros)

    def update(grads, state, params=None):
        del params
        i = jax.tree.map(lambda g, i: beta * i + g, grads, state.integral)
        d = jax.tree.map(
            lambda g, d, p: beta * d + (1 - beta) * (g - p),
            grads,
            state.derivative,
            state.prev_grad,
        )
        u = jax.tree.map(lambda g, i, d: -learning_rate * (g + ki * i + kd * d), grads, i, d)
        return u, _PIDRefState(i, d, grads)

    return optax.GradientTransformation(init, update)


def baselines() -> dict[str, tuple[str, Callable[[], optax.GradientTransformation]]]:
    """name -> (label, factory of the baseline transform)."""
    return {
        "sgd": ("optax.sgd", lambda: optax.sgd(LR)),
        "momentum": ("optax.sgd(momentum)", lambda: optax.sgd(LR, momentum=0.9)),
        "ema_momentum": ("optax.sgd(a(1-b), b)", lambda: optax.sgd(LR * 0.1, momentum=0.9)),
        "nesterov": (
            "optax.sgd(nesterov)",
            lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
        ),
        "pid": ("plain-JAX PID", lambda: pid_reference(LR)),
        **{
            name: (f"optax.{name}", lambda name=name: getattr(optax, name)(LR))
            for name in ("adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "lars")
        },
    }


SHAPES = {"w1": (2048, 2048), "w2": (2048, 2048), "w3": (1536, 1024), "b": (50_000,)}


def make_params(scale: int = 1) -> dict[str, jax.Array]:
    """A few big float32 arrays: 9.96M parameters (each dimension divided by ``scale``)."""
    keys = jax.random.split(jax.random.key(0), len(SHAPES))
    return {
        name: jax.random.normal(key, tuple(max(1, d // scale) for d in shape), jnp.float32)
        for key, (name, shape) in zip(keys, SHAPES.items(), strict=True)
    }


def make_step(opt: optax.GradientTransformation):
    def step(params, state, grads):
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step)


def _time(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def bytes_accessed(opt: optax.GradientTransformation, params) -> float:
    """XLA's estimate of the bytes one compiled step reads and writes."""
    state = jax.eval_shape(opt.init, params)
    cost = make_step(opt).lower(params, state, params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["bytes accessed"])


def bench(name, params, grads, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per step of ours and of the baseline, timed alternately (ABBA order)."""
    _, factory = baselines()[name]
    ours_opt = optimizers.get(name)(LR)
    base_opt = factory()
    ours = (make_step(ours_opt), ours_opt.init(params))
    base = (make_step(base_opt), base_opt.init(params))
    for fn, state in (ours, base):  # compile and warm up
        _time(fn, params, state, grads)
        _time(fn, params, state, grads)
    times_ours, times_base = [], []
    for i in range(repeats):
        pair = ((ours, times_ours), (base, times_base))
        for (fn, state), times in pair if i % 2 == 0 else pair[::-1]:
            times.append(_time(fn, params, state, grads))
    return times_ours, times_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--only", nargs="*", default=None, help="optimizer names")
    parser.add_argument("--scale", type=int, default=1, help="divide every dimension by this")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    params = make_params(args.scale)
    grads = jax.tree.map(lambda p: 0.01 * p + jnp.sin(p), params)
    num = sum(p.size for p in jax.tree.leaves(params))
    print(
        f"{num / 1e6:.2f}M float32 parameters in {len(params)} arrays; jax {jax.__version__}, "
        f"optax {optax.__version__}, {jax.devices()[0].device_kind} ({platform.machine()}); "
        f"median of {args.repeats} alternating calls; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print(
        "| optimizer | baseline | ours, median (ms) | baseline, median (ms) "
        "| ours / baseline: median of paired ratios | ratio of minima "
        "| ratio of XLA bytes accessed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for name in args.only or optimizers.names():
        ours, base = bench(name, params, grads, args.repeats)
        label = baselines()[name][0]
        med_ours, med_base = statistics.median(ours), statistics.median(base)
        paired = statistics.median(o / b for o, b in zip(ours, base, strict=True))
        traffic = bytes_accessed(optimizers.get(name)(LR), params) / bytes_accessed(
            baselines()[name][1](), params
        )
        print(
            f"| {name} | {label} | {1e3 * med_ours:.1f} | {1e3 * med_base:.1f} "
            f"| {paired:.3f} | {min(ours) / min(base):.3f} | {traffic:.3f} |",
            flush=True,
        )
        rows.append(
            {
                "optimizer": name,
                "baseline": label,
                "ours_median_s": med_ours,
                "baseline_median_s": med_base,
                "paired_ratio": paired,
                "ratio_of_minima": min(ours) / min(base),
                "bytes_ratio": traffic,
            }
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"parameters": num, "jax": jax.__version__, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()

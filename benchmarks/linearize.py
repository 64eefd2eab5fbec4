"""Benchmark: gdyn_jax.linearize on hyperparameter grids against python-control in a loop.

1. Worst-case convergence rates of heavy ball over a GRID x GRID (learning rate, momentum)
   grid at two curvatures: ``linearize.convergence_rate`` (jit + vmap of jacfwd, closed-form
   2x2 spectral radius) against a Python loop building ``control.tf`` per setting and
   curvature and taking ``max(abs(sys.poles()))``.
2. ``step_info`` of an INFO x INFO grid: ``linearize.step_info(linearize_grid(...), steps)``
   (one jitted loop over the steps accumulating the metrics of all settings) against
   ``control.step_info`` per setting on the same time vector (unstable settings are skipped
   by the loop after a pole check, as a user must, because control.step_info raises on them).

The python-control loop is timed on a random subset of settings (``--subset``) and
extrapolated per setting; on that subset the values are compared. Our timings include jit
compilation (cold: the first call in the process) and are also given warm (a second identical
call). All timings are wall clock with the garbage collector paused (as ``timeit``); the load
average is recorded with them, since on a shared machine the cold (compile-bound) figures move
with it. Usage::

    PYTHONPATH=. python benchmarks/linearize.py [--grid 1000] [--info 100] [--subset 2000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import time

import control as ct
import numpy as np

from gdyn_jax import linearize, optimizers

EIGENVALUES = (0.1, 1.0)


def _timed(fn):
    """Wall time of ``fn()`` with the garbage collector paused, as ``timeit`` does (for both
    sides): otherwise a full collection over every object python-control and scipy loaded lands
    in whichever call happens to trigger it (about 0.1 s of jit tracing here)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - start
    finally:
        gc.enable()


def _speedups(per_setting: float, settings: int, cold: float, warm: float) -> dict:
    """Our cold and warm times beside python-control's per-setting time extrapolated."""
    control = per_setting * settings
    return {
        "ours_cold_s": cold,
        "ours_warm_s": warm,
        "control_per_setting_s": per_setting,
        "control_extrapolated_s": control,
        "speedup_cold": control / cold,
        "speedup_warm": control / warm,
    }


def bench_rates(size: int, subset: int, rng) -> dict:
    lrs = np.linspace(0.001, 4.5, size)
    betas = np.linspace(0.0, 0.999, size)
    grid = {"learning_rate": lrs, "beta": betas}
    rates, cold = _timed(lambda: linearize.convergence_rate(optimizers.momentum, grid, EIGENVALUES))
    _, warm = _timed(lambda: linearize.convergence_rate(optimizers.momentum, grid, EIGENVALUES))
    idx = rng.choice(size * size, size=min(subset, size * size), replace=False)

    def loop():
        out = np.empty(idx.size)
        for n, flat in enumerate(idx):
            i, j = divmod(int(flat), size)
            a, b = lrs[i], betas[j]
            worst = 0.0
            for h in EIGENVALUES:
                sys = ct.tf([a * h, 0.0], [1.0, -(1.0 + b - a * h), b], dt=1)
                worst = max(worst, float(np.max(np.abs(sys.poles()))))
            out[n] = worst
        return out

    ref, t_loop = _timed(loop)
    ours = rates.ravel()[idx]
    per_setting = t_loop / idx.size
    return {
        "settings": size * size,
        **_speedups(per_setting, size * size, cold, warm),
        "subset": int(idx.size),
        "max_abs_diff": float(np.max(np.abs(ours - ref))),
        "median_abs_diff": float(np.median(np.abs(ours - ref))),
    }


def bench_step_info(size: int, subset: int, steps: int, rng) -> dict:
    lrs = np.linspace(0.02, 1.5, size)
    betas = np.linspace(0.0, 0.9, size)
    h = 1.0

    def ours_fn():
        system = linearize.linearize_grid(
            optimizers.momentum, {"learning_rate": lrs, "beta": betas}, h
        )
        return linearize.step_info(system, steps)

    info, cold = _timed(ours_fn)
    _, warm = _timed(ours_fn)
    idx = rng.choice(size * size, size=min(subset, size * size), replace=False)
    timepts = np.arange(steps)

    def loop():
        out = []
        for flat in idx:
            i, j = divmod(int(flat), size)
            a, b = lrs[i], betas[j]
            sys = ct.tf([a * h, 0.0], [1.0, -(1.0 + b - a * h), b], dt=1)
            if np.max(np.abs(sys.poles())) >= 1.0:
                out.append(None)
                continue
            out.append(ct.step_info(sys, timepts=timepts))
        return out

    ref, t_loop = _timed(loop)
    per_setting = t_loop / idx.size
    mismatches = {key: 0 for key in linearize.STEP_INFO_KEYS}
    max_diff = {key: 0.0 for key in linearize.STEP_INFO_KEYS}
    compared = 0
    for flat, theirs in zip(idx, ref, strict=True):
        i, j = divmod(int(flat), size)
        if theirs is None:
            mismatches.setdefault("stability", 0)
            mismatches["stability"] += bool(info["Stable"][i, j])
            continue
        compared += 1
        for key in linearize.STEP_INFO_KEYS:
            a, b = float(info[key][i, j]), float(theirs[key])
            if np.isnan(a) and np.isnan(b):
                continue
            diff = abs(a - b)
            if key == "PeakTime" and diff:
                # a monotone response's peak is a tie at rounding level: compare the values
                diff = 0.0 if abs(info["Peak"][i, j] - theirs["Peak"]) <= 1e-12 else diff
            max_diff[key] = max(max_diff[key], diff)
            mismatches[key] += diff > 1e-9 * max(1.0, abs(b))
    return {
        "settings": size * size,
        "steps": steps,
        **_speedups(per_setting, size * size, cold, warm),
        "subset": int(idx.size),
        "compared_stable": compared,
        "mismatches": mismatches,
        "max_abs_diff": max_diff,
    }


def _machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=1000, help="rates grid side (default 1000)")
    parser.add_argument("--info", type=int, default=100, help="step_info grid side (default 100)")
    parser.add_argument("--subset", type=int, default=2000, help="python-control settings timed")
    parser.add_argument("--steps", type=int, default=300, help="step_info time vector length")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rates = bench_rates(args.grid, args.subset, rng)
    info = bench_step_info(args.info, args.subset, args.steps, rng)
    result = {
        "machine": _machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "rates": rates,
        "step_info": info,
    }
    print(json.dumps(result, indent=2))
    print()
    print(
        "| task | settings | gdyn_jax cold (warm) | python-control (extrapolated) | speedup "
        "cold (warm) | values |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| worst-case rate, 2 curvatures | {rates['settings']:,} | {rates['ours_cold_s']:.2f} s "
        f"({rates['ours_warm_s']:.2f} s) | {rates['control_per_setting_s'] * 1e6:.0f} µs/setting "
        f"-> {rates['control_extrapolated_s']:.0f} s | {rates['speedup_cold']:.0f}x "
        f"({rates['speedup_warm']:.0f}x) | max abs diff {rates['max_abs_diff']:.1e} on "
        f"{rates['subset']} settings |"
    )
    bad = sum(v for v in info["mismatches"].values())
    print(
        f"| step_info, {info['steps']} steps | {info['settings']:,} | {info['ours_cold_s']:.2f} s "
        f"({info['ours_warm_s']:.2f} s) | {info['control_per_setting_s'] * 1e3:.2f} ms/setting "
        f"-> {info['control_extrapolated_s']:.0f} s | {info['speedup_cold']:.0f}x "
        f"({info['speedup_warm']:.0f}x) | {bad} mismatches on {info['compared_stable']} stable "
        f"settings of {info['subset']} |"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()

"""Curvature tracking against training: cost per evaluation, cold Lanczos vs warm start.

The edge-of-stability sweep of ``experiments/cohen2021.py`` (quick size): a fully connected
tanh network (200, 200) trained by full-batch gradient descent on the first 4,000 MNIST-1D
examples with the square loss, ``--members`` learning rates, evaluated every ``--eval-every``
steps, the sharpness on the same 4,000 examples. Three programs of the same sweep are timed in
one process, alternately, ``--repeats`` times, each after a compiling run:

- ``none``: no sharpness (training and the loss evaluation only);
- ``cold``: ``sharpness_tol=0``, 20 Lanczos steps from a random vector at every evaluation
  (the method before warm starts);
- ``warm``: the default, warm-started from the last evaluation's vector and stopped at relative
  residual 3e-3 (``measurements.eigensolver.track_top``).

The cost of tracking per evaluation is (tracked - none) / evaluations, set beside the cost of
the ``--eval-every`` training steps between two evaluations (none / evaluations); the largest
difference between the warm and cold sharpness is printed.

    python benchmarks/tracking.py [--steps 1000] [--eval-every 100] [--members 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from sweep import load_average  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    import jax

    from gdyn_jax.sweep import SweepConfig, run_sweep

    base = SweepConfig(
        dataset="mnist1d",
        model="fc",
        model_kwargs={"widths": (200, 200), "activation": "tanh"},
        loss="mse",
        optimizer="sgd",
        batch_size=None,
        train_subset=4000,
        sharpness_subset=4000,
        steps=args.steps,
        eval_every=args.eval_every,
    )
    configs = {
        "none": base,
        "cold": dataclasses.replace(base, track_sharpness=True, sharpness_tol=0.0),
        "warm": dataclasses.replace(base, track_sharpness=True),
    }
    grid = {"learning_rate": list(np.linspace(2 / 30, 2 / 20, args.members))}
    print(f"jax {jax.__version__}, {len(jax.devices())} device(s); load {load_average()}")
    times: dict[str, list[float]] = {k: [] for k in configs}
    results = {}
    for r in range(args.repeats + 1):
        for name in configs if r % 2 == 0 else reversed(configs):
            start = time.perf_counter()
            results[name] = run_sweep(configs[name], grid, progress=False)
            times[name].append(time.perf_counter() - start)
    evals = base.num_evals
    med = {k: float(np.median(v[1:])) for k, v in times.items()}
    between = med["none"] / evals
    gap = np.nanmax(np.abs(results["warm"].sharpness.values / results["cold"].sharpness.values - 1))
    print(
        f"{args.members} members, {args.steps} steps, {evals} evaluations, medians of "
        f"{args.repeats} runs after a compiling one"
    )
    print(f"  training + loss evaluation: {med['none']:.2f} s, {1e3 * between:.0f} ms per interval")
    out = {"between_ms": 1e3 * between}
    for name in ("cold", "warm"):
        cost = (med[name] - med["none"]) / evals
        out[name] = 1e3 * cost
        print(
            f"  {name}: {med[name]:.2f} s; tracking {1e3 * cost:.0f} ms per evaluation, "
            f"{cost / between:.2f} x the {args.eval_every} steps between two"
        )
    print(f"  warm vs cold sharpness: largest relative difference {gap:.1e}; load {load_average()}")
    return out


if __name__ == "__main__":
    main()

"""The pre-flight's cost against the sweep it predicts: a 160-rate grid × 8 seeds.

``gdyn_jax.predictions.preflight`` on the MNIST-1D MLP (``--optimizer``, heavy ball β = 0.9 by
default, square loss, 200 steps, evaluations every 5), ``--rates`` learning rates log-spaced
over ``--lr-range`` × ``--seeds`` seeds, full batch on the 4,000 training examples or
``--batch-size``: its measuring at init, its probe of the divergence edge and its compiling,
each timed apart (``Preflight.seconds``), ``--repeats`` times (each call compiles again). The
baseline, in the same process: ``run_sweep`` on every ``--sweep-every``-th rate of the same
grid (same seeds, steps and batches), its time scaled to the whole grid (members run
independently, so the sweep's time grows with their number), the first run (compiling) apart.

    python benchmarks/preflight.py [--batch-size 100] [--optimizer sgd] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from sweep import load_average  # noqa: E402

HPARAMS = {"sgd": {}, "momentum": {"beta": 0.9}, "nesterov": {"beta": 0.9}, "adam": {}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=sorted(HPARAMS), default="momentum")
    parser.add_argument("--loss", choices=("mse", "cross_entropy"), default="mse")
    parser.add_argument("--batch-size", type=int, default=None, help="default: full batch")
    parser.add_argument("--rates", type=int, default=160)
    parser.add_argument("--lr-range", type=float, nargs=2, default=(0.01, 10.0))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sweep-every", type=int, default=20, help="0: no sweep baseline")
    args = parser.parse_args(argv)

    import jax

    from gdyn_jax.predictions import preflight
    from gdyn_jax.sweep import SweepConfig, run_sweep

    config = SweepConfig(
        dataset="mnist1d",
        model="mlp",
        loss=args.loss,
        optimizer=args.optimizer,
        hparams=HPARAMS[args.optimizer],
        steps=args.steps,
        eval_every=5,
        batch_size=args.batch_size,
    )
    lrs = np.geomspace(*args.lr_range, args.rates).tolist()
    print(f"jax {jax.__version__}, {len(jax.devices())} device(s); load {load_average()}")
    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        pre = preflight(config, {"learning_rate": lrs}, args.seeds, examples=None)
        s = {**pre.seconds, "call": time.perf_counter() - start, "runs": pre.probe.runs}
        runs.append(s)
        print(
            f"  pre-flight of {args.rates} rates x {args.seeds} seeds: {s['total']:.2f} s "
            f"(measuring {s['measure']:.2f}, probe {s['probe']:.2f} in {s['runs']} runs, "
            f"rule {s['rule']:.2f}); compiling {s['compile']:.2f} s apart; call {s['call']:.1f} s"
        )
    out = {"preflight": float(np.median([r["total"] for r in runs])), "runs": runs}
    if args.sweep_every:
        sub = lrs[:: args.sweep_every]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            run_sweep(config, {"learning_rate": sub}, args.seeds, progress=False)
            times.append(time.perf_counter() - start)
        whole = times[1] * len(lrs) / len(sub)
        out["sweep"] = whole
        print(
            f"  sweep of {len(sub)} of the rates x {args.seeds} seeds: {times[1]:.1f} s "
            f"(first, compiling: {times[0]:.1f} s); the whole grid's, scaled: {whole:.0f} s = "
            f"{whole / out['preflight']:.0f} x the pre-flight"
        )
    print(f"  load {load_average()}")
    return out


if __name__ == "__main__":
    main()

"""No compute on dead members: a stability-map sweep with and without dropping the diverged.

A heavy-ball stability map of the MNIST-1D MLP (``gdyn_jax.models.get('mlp')``, batch 100):
learning rates log-spaced over ``--lr-range`` × momenta ``--betas`` × ``--seeds`` seeds, where
about half the points diverge (the fraction is printed). The same sweep is run by ``run_sweep``
with ``repack=False`` (every member computed to the end, the diverged ones frozen inside their
groups) and ``repack=True`` (the diverged leave the groups between checkpoint blocks and the
groups are re-packed, ``gdyn_jax.sweep.packing``), alternately in one process, ``--repeats``
times each; the first run of each compiles (its time is reported apart), the later ones reuse
the compiled programs. The results are checked equal, bit for bit.

    python benchmarks/dead_members.py [--steps 1000] [--repeats 3] [--data mnist1d|synthetic]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from sweep import load_arrays, load_average  # noqa: E402

VARIABLES = ("train_loss", "test_loss", "test_accuracy", "diverged_at")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--lrs", type=int, default=16)
    parser.add_argument("--lr-range", type=float, nargs=2, default=(0.02, 20.0))
    parser.add_argument("--betas", type=float, nargs="+", default=(0.0, 0.9))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", choices=("mnist1d", "synthetic"), default="mnist1d")
    args = parser.parse_args(argv)

    import jax

    from gdyn_jax.sweep import SweepConfig, run_sweep

    config = SweepConfig(
        dataset=load_arrays(args.data),
        model="mlp",
        optimizer="momentum",
        steps=args.steps,
        batch_size=100,
        eval_every=args.eval_every,
    )
    grid = {
        "learning_rate": np.geomspace(*args.lr_range, args.lrs).tolist(),
        "beta": list(args.betas),
    }
    print(f"jax {jax.__version__}, {len(jax.devices())} device(s); load {load_average()}")
    times: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    for r in range(args.repeats + 1):
        for repack in (False, True) if r % 2 == 0 else (True, False):
            start = time.perf_counter()
            ds = run_sweep(config, grid, args.seeds, repack=repack, progress=False)
            times[repack].append(time.perf_counter() - start)
            results[repack] = ds
    for name in VARIABLES:
        np.testing.assert_array_equal(results[False][name].values, results[True][name].values)
    diverged = results[True].diverged_at.values >= 0
    members = diverged.size
    at = results[True].diverged_at.values[diverged]
    print(
        f"{members} members, {args.steps} steps: {diverged.mean():.0%} diverge "
        f"(median step {np.median(at):.0f}); results equal bit for bit"
    )
    out = {}
    for repack, label in ((False, "kept"), (True, "dropped")):
        first, rest = times[repack][0], times[repack][1:]
        out[label] = float(np.median(rest))
        print(
            f"  {label:8s} first run (compiling) {first:6.1f} s, then median {out[label]:6.2f} s "
            f"({', '.join(f'{t:.2f}' for t in rest)})"
        )
    print(f"  gain: {out['kept'] / out['dropped']:.2f}x; load {load_average()}")
    return out


if __name__ == "__main__":
    main()

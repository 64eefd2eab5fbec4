"""Peak resident memory of a sweep against its member count, and the estimate it is refused by.

For each member count, a fresh process trains that many MNIST-1D MLPs (15,210 parameters,
heavy ball β = 0.9, batch 100, a learning-rate grid, ``--steps`` steps, two evaluations, no
output directory) with ``run_sweep`` on the library's default devices, and reports its peak
resident memory (``ru_maxrss``) before and after the sweep. Beside it, the lower bound that
``gdyn_jax.sweep.memory`` refuses sweeps by (two copies of the member state, read from
``jax.eval_shape``; nothing compiled). From the two largest counts: the measured bytes per
member (the slope) and the process's fixed part, and so the largest member count whose
sweep fits in ``--budget-gib`` (default 24) in one chunk.

    python benchmarks/memory.py [--members 64 1024 4096] [--steps 20] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {here!r})
import gdyn_jax.sweep as sw
from gdyn_jax.sweep import memory
from sweep import synthetic_mnist1d

members, steps = {members}, {steps}
config = sw.SweepConfig(dataset=synthetic_mnist1d(), model="mlp", optimizer="momentum",
    steps=steps, batch_size=100, eval_every=steps // 2, hparams={{"beta": 0.9}})
grid = {{"learning_rate": np.geomspace(1e-3, 1e-1, members).astype(np.float32)}}
program = sw.assemble(config, grid)
est = memory.estimate(program, members, members, len(program.task.metric_names))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
sw.run_sweep(config, grid, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"members": members, "before": before, "peak": peak,
    "state_per_member": est.per_member, "estimate": est.total}}))
"""


def measure(members: int, steps: int) -> dict:
    """One fresh process's figures for a sweep of ``members``."""
    code = CHILD.format(here=HERE, members=members, steps=steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    print(f"# load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| members | peak RSS MB | before sweep MB | peak / member kB | lower bound MB |")
    rows = []
    for m in args.members:
        r = measure(m, args.steps)
        rows.append(r)
        print(
            f"| {m} | {r['peak'] / 1e6:,.0f} | {r['before'] / 1e6:,.0f} | "
            f"{r['peak'] / m / 1e3:,.1f} | {r['estimate'] / 1e6:,.0f} |",
            flush=True,
        )
    a, b = rows[-2], rows[-1]
    slope = (b["peak"] - a["peak"]) / (b["members"] - a["members"])
    fixed = b["peak"] - slope * b["members"]
    budget = args.budget_gib * 2**30
    fits = int((budget - fixed) // slope)
    print(
        f"# slope {slope / 1e3:.0f} kB per member ({slope / b['state_per_member']:.2f} × the "
        f"{b['state_per_member'] / 1e3:.0f} kB state), fixed {fixed / 1e6:.0f} MB: "
        f"{fits:,} members fit in {args.budget_gib:g} GiB in one chunk; "
        f"load {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    result = {"rows": rows, "slope": slope, "fixed": fixed, "fits": fits}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

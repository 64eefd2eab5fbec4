"""What fixed-width member groups cost: sweep throughput against the group width.

A member's numbers do not depend on the sweep around it because every member is computed in a
vmapped group of one fixed width W (``gdyn_jax.sweep.groups``): a sweep of M members runs
ceil(M / W) groups one after another, the last padded with inert members. This times one
compiled block of the sweep engine (``sweep.sweep_runner``: MNIST-1D MLP, heavy-ball momentum,
batch 100, ``--steps`` steps and one evaluation) for M = 1, 8, 64, 256 members and each width
W, and divides the rate of *real* model-steps per second by that of the same M members
computed as the engine did before fixed widths (all of them in one vmapped group up to 16
members, groups of 16 beyond): the ratio is the price of the guarantee. All widths of one row
run interleaved in one process (the order rotating every repeat); each figure is a median of
``--repeats``; the 1-minute load average is printed before and after each row.

    python benchmarks/member_groups.py [--members 1 8 64 256] [--widths 1 4 8 16 32]
        [--steps 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import time

import jax
import numpy as np
from sweep import load_arrays, sweep_runner  # benchmarks/sweep.py, beside this file


def previous_width(members: int) -> int:
    """The engine before fixed widths: one group up to 16 members, groups of 16 beyond."""
    return members if members <= 16 else 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", choices=("mnist1d", "synthetic"), default="mnist1d")
    args = parser.parse_args()
    arrays = load_arrays(args.data)
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; "
        f"jax {jax.__version__}; {args.steps} steps per block; median of {args.repeats}"
    )
    header = " | ".join(f"W={w}" for w in args.widths)
    print(f"| members | previous (model-steps/s) | {header} | load before → after |")
    print("|---:|---:|" + "---:|" * len(args.widths) + "---|")
    for m in args.members:
        load = os.getloadavg()[0]
        widths = sorted({previous_width(m), *args.widths})
        runners = {w: sweep_runner(arrays, m, args.steps, 1, w) for w in widths}
        times: dict[int, list[float]] = {w: [] for w in widths}
        for r in range(args.repeats):
            for w in widths[r % len(widths) :] + widths[: r % len(widths)]:
                start = time.perf_counter()
                runners[w][0]()
                times[w].append(time.perf_counter() - start)
        rate = {w: runners[w][1] / float(np.median(times[w])) for w in widths}
        base = rate[previous_width(m)]
        cells = " | ".join(
            f"{rate[w] / base:.2f} ({math.ceil(m / w) * w - m} pad)" for w in args.widths
        )
        print(f"| {m} | {base:,.0f} | {cells} | {load:.2f} → {os.getloadavg()[0]:.2f} |")


if __name__ == "__main__":
    main()

"""Time to the first step of a short sweep: tracing and compilation against training.

The short research run of the sweep issue: ``run_sweep`` of the MNIST-1D MLP under momentum,
a 2 × 2 grid (learning rate × β) × 4 seeds = 16 members, 2,000 steps, evaluated every 100
(blocks of 200 steps, checkpoint-sized). Each measurement is a fresh Python process (nothing
cached; no persistent compilation cache), which runs the sweep twice: cold (tracing,
lowering and XLA compilation included) and warm (the same programs again). It reports the
cold and warm wall times, the time to the end of the first block of each (so cold − warm is
the time to the first step that compilation adds), and the seconds JAX itself records for
tracing, lowering to MLIR and XLA's backend compilation (``jax.monitoring`` events).

``--variants`` compares, alternating processes, the engine as it is (``current``) with the
init program compiled with XLA's default options (``init-O3``, the engine before
``cpu_speedups.INIT_COMPILER_OPTIONS``) and with JAX's persistent compilation cache
(``cached``: ``jax_compilation_cache_dir`` set to a folder that one untimed process filled
first, as a repeated research run would find it).

    python benchmarks/first_step.py [--repeats 3] [--variants current init-O3 cached]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

CHILD = r"""
import collections, json, sys, time
import jax
import jax.monitoring

durations = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: durations.update({event.rsplit("/", 1)[-1]: secs})
)
from gdyn_jax.sweep import SweepConfig, cpu_speedups, run_sweep

if sys.argv[1] == "init-O3":
    cpu_speedups.INIT_COMPILER_OPTIONS.clear()
if sys.argv[1] == "cached":
    jax.config.update("jax_compilation_cache_dir", sys.argv[2])
config = SweepConfig(model="mlp", optimizer="momentum", steps=2000, batch_size=100,
                     eval_every=100)
grid = {"learning_rate": [0.01, 0.1], "beta": [0.0, 0.9]}
out = {}
for run in ("cold", "warm"):
    marks = []
    start = time.perf_counter()
    run_sweep(config, grid, 4, progress=False,
              callback=lambda info: marks.append(time.perf_counter() - start))
    out[run] = time.perf_counter() - start
    out[run + "_first_block"] = marks[0]
    if run == "cold":
        out["jax_seconds"] = dict(durations)
print(json.dumps(out))
"""

EVENTS = {
    "trace": "jaxpr_trace_duration",
    "lower": "jaxpr_to_mlir_module_duration",
    "compile": "backend_compile_duration",
}


def measure(variant: str, cache_dir: str) -> dict:
    """One fresh process: the cold and warm sweep of ``variant``."""
    run = subprocess.run(
        [sys.executable, "-c", CHILD, variant, cache_dir],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["current", "init-O3"])
    args = parser.parse_args()
    results: dict[str, list[dict]] = {v: [] for v in args.variants}
    cache_dir = tempfile.mkdtemp(prefix="gdyn_jax_cache_")
    if "cached" in args.variants:
        measure("cached", cache_dir)  # fills the persistent compilation cache
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for variant in args.variants:
            results[variant].append(measure(variant, cache_dir))
            load.append(os.getloadavg()[0])
    shutil.rmtree(cache_dir, ignore_errors=True)
    print(f"16 members x 2,000 steps; medians of {args.repeats} fresh processes, alternating;")
    print(f"1-minute load average {min(load):.2f}-{max(load):.2f}")
    print(
        "| variant | cold total (s) | warm total (s) | cold first block (s) | warm first block "
        "(s) | time to first step added (s) | JAX trace / lower / XLA compile (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for variant, runs in results.items():

        def med(key, runs=runs):
            return float(np.median([r[key] for r in runs]))

        jax_s = " / ".join(
            f"{np.median([r['jax_seconds'].get(e, 0.0) for r in runs]):.2f}"
            for e in EVENTS.values()
        )
        print(
            f"| {variant} | {med('cold'):.2f} | {med('warm'):.2f} | {med('cold_first_block'):.2f} "
            f"| {med('warm_first_block'):.2f} | "
            f"{med('cold_first_block') - med('warm_first_block'):.2f} | {jax_s} |"
        )


if __name__ == "__main__":
    main()

"""Benchmark: the wall time of one `gdyn analyze` answer, a fresh process each time.

What a user waits for: ``python -m gdyn_jax.cli analyze momentum --hp learning_rate=0.1 --hp
beta=0.9 --curvature 1.0`` from start to exit, in four settings, alternated round by round so
that the machine's load falls on all of them alike:

- ``no cache``: ``GDYN_COMPILATION_CACHE=0`` (the command before the cache was on by default);
- ``cold cache``: the cache on, in an empty folder (the first answer ever: compiles and writes);
- ``warm cache``: the cache on, in the folder a previous run filled (every later answer);
- ``imports only``: ``python -c "from gdyn_jax.commands import closed_loop"`` (what the
  process imports before any analysis: jax, scipy.signal, optax; the floor without deferral).

``--baseline DIR`` adds the warm-cache answer and the imports of another checkout (e.g. a
``git worktree`` of the previous commit), alternated with the others, for a same-run ratio.

Prints the median and minimum wall time of each and the median CPU time (user + system, of the
child process: what a quiet machine would take for a single-threaded process, roughly, when
other work shares the cores), the load average before and after, and the machine.
Usage::

    PYTHONPATH=. python benchmarks/analyze_latency.py [--rounds 7] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANALYZE = [
    sys.executable, "-m", "gdyn_jax.cli", "analyze", "momentum", "--hp", "learning_rate=0.1",
    "--hp", "beta=0.9", "--curvature", "1.0",
]  # fmt: skip
IMPORTS = [sys.executable, "-c", "from gdyn_jax.commands import closed_loop"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall(argv: list[str], root: Path = ROOT, **env: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh process with ``root`` first on the path."""
    environ = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), environ.get("PYTHONPATH")]))
    cpu, start = _cpu(), time.perf_counter()
    subprocess.run(argv, env=environ, check=True, capture_output=True, cwd=root)
    return time.perf_counter() - start, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    load = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm = str(Path(tmp) / "warm")
        base_warm = str(Path(tmp) / "base_warm")
        _wall(ANALYZE, GDYN_COMPILATION_CACHE=warm)  # fill the warm caches once
        if args.baseline:
            _wall(ANALYZE, args.baseline, GDYN_COMPILATION_CACHE=base_warm)
        for i in range(args.rounds):
            cold = str(Path(tmp) / f"cold{i}")
            settings = [
                ("no cache", ANALYZE, ROOT, {"GDYN_COMPILATION_CACHE": "0"}),
                ("cold cache", ANALYZE, ROOT, {"GDYN_COMPILATION_CACHE": cold}),
                ("warm cache", ANALYZE, ROOT, {"GDYN_COMPILATION_CACHE": warm}),
                ("imports only", IMPORTS, ROOT, {}),
            ]
            if args.baseline:
                settings += [
                    (
                        "baseline: warm cache",
                        ANALYZE,
                        args.baseline,
                        {"GDYN_COMPILATION_CACHE": base_warm},
                    ),
                    ("baseline: imports only", IMPORTS, args.baseline, {}),
                ]
            for name, argv, root, env in settings:
                times.setdefault(name, []).append(_wall(argv, root, **env))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"load average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f}")
    print("| setting | wall median (s) | wall min (s) | CPU median (s) | runs |")
    print("|---|---:|---:|---:|---:|")
    for name, values in times.items():
        wall, cpu = zip(*values, strict=True)
        print(
            f"| {name} | {statistics.median(wall):.2f} | {min(wall):.2f} | "
            f"{statistics.median(cpu):.2f} | {len(values)} |"
        )


if __name__ == "__main__":
    main()

"""Benchmark: a rate map certified over S(mu, L) (``linearize.robust_rate_grid``).

Heavy ball on a GRID x GRID (learning rate, momentum) grid over S(1, KAPPA) with the weighted
off-by-one IQC, against a plain implementation of the same analysis in the same process: for
each point a new cvxpy problem per rho (constants, no parameters, so cvxpy canonicalises each
one), feasibility with P >= I, bisection on [0, 1] to the same tolerance. The plain loop is
timed on a random subset of the points (``--subset``) and extrapolated per point; the rates are
compared there. Our time (wall, and CPU seconds of this process) is cold: the first call in
the process, cvxpy's compilation of the parametrised problem and the jitted open loops of the
grid included. Wall clock, garbage collector paused (as ``timeit``), load average recorded
(the machine is shared). Usage::

    PYTHONPATH=. python benchmarks/robust.py [--grid 50] [--subset 30] [--kappa 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import cvxpy as cp
import numpy as np

from benchmarks.linearize import _timed
from gdyn_jax import linearize, optimizers
from gdyn_jax.linearize import robust


def plain_rate(A, B, C, mu, L, tol):
    """Bisection on [0, 1] with a freshly built feasibility SDP per rho (P >= I, LMI <= 0)."""
    AB, forms = robust.iqc_system(A, B, C, mu, L, "off_by_one")
    n = AB.shape[0]
    embed = np.vstack([np.eye(n), np.zeros((1, n))])
    lo, hi, found = 0.0, 1.0, None
    while hi - lo > tol:
        rho = 0.5 * (lo + hi)
        P = cp.Variable((n, n), symmetric=True)
        lam = cp.Variable(2, nonneg=True)
        lmi = AB.T @ P @ AB - rho**2 * (embed @ P @ embed.T)
        lmi = lmi + lam[0] * forms["sector"] + lam[1] * forms["off_by_one"]
        constraints = [P >> np.eye(n), 0.5 * (lmi + lmi.T) << 0, lam[1] <= rho**2 * cp.sum(lam)]
        problem = cp.Problem(cp.Minimize(0), constraints)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                problem.solve(solver=cp.CLARABEL)
        except cp.error.SolverError:
            lo = rho  # counted as infeasible, as a plain loop would
            continue
        if problem.status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            hi, found = rho, rho
        else:
            lo = rho
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=50)
    parser.add_argument("--subset", type=int, default=30)
    parser.add_argument("--kappa", type=float, default=10.0)
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()
    mu, L = 1.0, args.kappa
    grid = {
        "learning_rate": np.linspace(0.02 / L, 3.0 / L, args.grid),
        "beta": np.linspace(0.0, 0.95, args.grid),
    }
    load = os.getloadavg()
    cpu = time.process_time()
    result, ours = _timed(
        lambda: linearize.robust_rate_grid(optimizers.momentum, grid, mu, L, tol=args.tol)
    )
    ours_cpu = time.process_time() - cpu
    rng = np.random.default_rng(0)
    points = [tuple(p) for p in rng.integers(0, args.grid, size=(args.subset, 2))]
    diffs, plain_time = [], 0.0
    for i, j in points:
        r = result.results[i, j]
        rate, seconds = _timed(lambda r=r: plain_rate(r.A, r.B, r.C, mu, L, args.tol))
        plain_time += seconds
        ours_rate = result.rate[i, j]
        if rate is None or np.isnan(ours_rate):
            diffs.append(0.0 if (rate is None) == np.isnan(ours_rate) else np.inf)
        else:
            diffs.append(abs(rate - ours_rate))
    per_point = plain_time / len(points)
    settings = args.grid**2
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "points": settings,
        "ours_cold_s": ours,
        "ours_cpu_s": ours_cpu,
        "ours_solves": result.solves,
        "ours_solves_per_point": result.solves / settings,
        "ours_ms_per_solve": 1e3 * ours / max(result.solves, 1),
        "certified_points": int(np.sum(~np.isnan(result.rate))),
        "plain_per_point_s": per_point,
        "plain_extrapolated_s": per_point * settings,
        "speedup": per_point * settings / ours,
        "max_abs_rate_difference_on_subset": float(max(diffs)),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

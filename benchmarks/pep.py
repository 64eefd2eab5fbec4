"""One rate bracket's PEP side against PEPit written by hand for the same rule.

Robust momentum (lam = 0.5, mu = 0.1, L = 1), metric ||y_n - x*||^2 / ||x_0 - x*||^2 from the
state at rest, n = 5, 10, 20: ``linearize.rate_bracket(..., iqc=None)`` (the rule's (A, B, C)
from jax.jacfwd, the Gram-matrix SDP over cvxpy + Clarabel) against PEPit 0.5 with the
published recursion typed by hand (its cvxpy wrapper with Clarabel, the same solver: its
default here is SCS, accurate to about 1e-5 only), alternating,
``--repeats`` times each; the IQC side (``robust_rate``) is timed once on its own.

    PYTHONPATH=. python benchmarks/pep.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers
from tests.test_rate_bracket import _pepit_robust_momentum_distance  # PEPit, typed by hand

MU, L, LAM = 0.1, 1.0, 0.5


def pepit_by_hand(n: int) -> float:
    """The test's PEPit problem (the published recursion typed by hand) at this benchmark's
    (mu, L, lam)."""
    return _pepit_robust_momentum_distance(MU, L, LAM, n)


def ours(n: int) -> float:
    return lz.rate_bracket(optimizers.robust_momentum(MU, L, LAM), MU, L, n, iqc=None).tau


def timed(fn, n):
    start = time.perf_counter()
    value = fn(n)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    ours(2), pepit_by_hand(2)  # warm-up: imports, jacfwd compilation
    print(
        "| n | ours, median (s) | PEPit by hand, median (s) | ours / PEPit | tau ours | tau PEPit |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (5, 10, 20):
        a, b = [], []
        for _ in range(args.repeats):
            ta, va = timed(ours, n)
            tb, vb = timed(pepit_by_hand, n)
            a.append(ta)
            b.append(tb)
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"| {n} | {ma:.2f} | {mb:.2f} | {ma / mb:.2f} | {va:.8f} | {vb:.8f} |")
    start = time.perf_counter()
    r = lz.robust_rate(optimizers.robust_momentum(MU, L, LAM), MU, L)
    print(f"IQC side (robust_rate): {time.perf_counter() - start:.2f} s, rate {r.rate:.6f}")


if __name__ == "__main__":
    main()

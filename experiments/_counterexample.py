r"""Lessard, Recht and Packard's counterexample (§4.6): heavy ball's limit cycle.

The piecewise quadratic (:math:`C^1`, :math:`m = 1`, :math:`L = 25`)

.. math::
    f(x) = \tfrac{25}{2}x^2 \ (x < 1), \quad \tfrac12 x^2 + 24x - 12 \ (1 \le x < 2), \quad
    \tfrac{25}{2}x^2 - 24x + 36 \ (x \ge 2)

is in :math:`S(1, 25)`, yet heavy ball tuned for the quadratics of that class settles on a
cycle from some starts. :func:`heavy_ball_cycle` runs it (float64, all starts in one
vmapped program) and measures the cycle; :func:`periodic_orbit` solves for the exact orbit;
:func:`part` scores the cycle against the paper and draws it. This is the §4.6 part of
``experiments/lessard2016.py``, which passes the paper's numbers in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments._harness import Report
from experiments._quadratic import iterates
from gdyn_jax import optimizers


def function(x: np.ndarray) -> np.ndarray:
    """The counterexample f (numpy)."""
    return np.where(
        x < 1, 12.5 * x**2, np.where(x < 2, 0.5 * x**2 + 24 * x - 12, 12.5 * x**2 - 24 * x + 36)
    )


def gradient(x):
    """Its gradient: 25x (x < 1), x + 24 (1 <= x < 2), 25x - 24 (jax)."""
    return jnp.where(x < 1, 25.0 * x, jnp.where(x < 2, x + 24.0, 25.0 * x - 24.0))


def heavy_ball_cycle(
    hyperparameters: dict, x0: float, starts: np.ndarray, steps: int, interval
) -> dict:
    """Heavy ball (``optimizers.momentum(**hyperparameters)``, zero initial velocity) on f for
    ``steps`` steps from ``x0`` and from each of ``starts`` (sorted): the run from ``x0``, the
    ``amplitude`` of its last 60 iterates, the ``period`` of its cycle and the exact periodic
    ``orbit``; the ``interval`` of starts around ``x0`` that end on a cycle, and the fraction
    of the starts in the published ``interval`` that do."""
    a, beta = hyperparameters["learning_rate"], hyperparameters["beta"]
    opt = optimizers.momentum(**hyperparameters)

    def one(start):
        return iterates(opt, lambda x, _: gradient(x), start, length=steps)

    lo, hi = interval
    with jax.enable_x64(True):
        runs = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray([x0, *starts])))
    amplitude = np.max(np.abs(runs[:, -60:]), axis=1)  # converged runs reach ~1e-300
    x = runs[0]
    period = next(p for p in range(1, 30) if np.allclose(x[-1], x[-1 - p], atol=1e-12))
    orbit = periodic_orbit(x[-period:], a, beta)
    cycles = amplitude[1:] > 1e-3
    i = left = right = int(np.argmin(np.abs(starts - x0)))
    while left > 0 and cycles[left - 1]:
        left -= 1
    while right < starts.size - 1 and cycles[right + 1]:
        right += 1
    inside = (starts >= lo) & (starts <= hi)
    return {
        "iterates": x,
        "amplitude": amplitude[0],
        "period": period,
        "orbit": orbit,
        "orbit_error": float(np.max(np.abs(np.sort(orbit) - np.sort(x[-period:])))),
        "interval": (starts[left], starts[right]),
        "resolution": starts[1] - starts[0],
        "fraction_of_paper_interval_on_cycle": cycles[inside].mean(),
        "start": starts[i],
    }


def periodic_orbit(points: np.ndarray, a: float, beta: float) -> np.ndarray:
    """The exact periodic heavy-ball orbit through the pieces ``points`` visit (one period):
    z_{j+1} - (1 + beta - a s_j) z_j + beta z_{j-1} = -a c_j, indices mod p (numpy solve)."""
    slope = np.where((points >= 1) & (points < 2), 1.0, 25.0)
    offset = np.where(points < 1, 0.0, np.where(points < 2, 24.0, -24.0))
    eye = np.eye(points.size)
    system = (
        np.roll(eye, 1, axis=1) - np.diag(1.0 + beta - a * slope) + beta * np.roll(eye, -1, axis=1)
    )
    return np.linalg.solve(system, -a * offset)


def part(report: Report, hyperparameters: dict, starts: int, published: dict) -> dict:
    """§4.6 in a report: heavy ball (``hyperparameters``: Polyak's tuning for [1, 25]) from
    ``published['x0']`` and from ``starts`` starts around ``published['interval']`` (the starts
    the paper finds ending on the cycle): the scored rows, a paragraph, the figure
    ``counterexample.png`` (its first ``published['shown']`` iterates). Returns the cycle."""
    lo, hi = published["interval"]
    grid = np.linspace(lo - 0.1, hi + 0.1, starts)
    cycle = heavy_ball_cycle(hyperparameters, published["x0"], grid, published["steps"], (lo, hi))
    amplitude = "counterexample from x0 = 3.3: amplitude of the last 60 iterates"
    report.bound(amplitude, cycle["amplitude"], lower=1e-3, label="a limit cycle")
    orbit = "counterexample: cycle vs its exact periodic orbit (max error)"
    report.compare(orbit, cycle["orbit_error"], 0.0, atol=1e-9)
    fraction = f"counterexample: fraction of starts in [{lo}, {hi}] ending on the cycle"
    report.compare(fraction, cycle["fraction_of_paper_interval_on_cycle"], 1.0, label="published")
    tol = 0.01 + cycle["resolution"]  # the paper gives the interval to 0.01
    for end, value, paper in zip(("lowest", "highest"), cycle["interval"], (lo, hi), strict=True):
        quantity = f"counterexample: {end} start on the cycle"
        report.compare(quantity, value, paper, atol=tol, label="published")
    report.text(
        "Counterexample (§4.6): f = 25x²/2 (x < 1), x²/2 + 24x − 12 (1 ≤ x < 2), 25x²/2 − 24x + 36 "
        "(x ≥ 2); heavy ball with a = 1/9, beta = 4/9 (the package's `momentum`, x_-1 = x_0), "
        f"float64. From x0 = 3.3 the iterates settle on a {cycle['period']}-cycle "
        f"{np.round(np.sort(cycle['orbit']), 6)}; starts on a grid of spacing "
        f"{cycle['resolution']:.2g} end on it from {cycle['interval'][0]:.4f} to "
        f"{cycle['interval'][1]:.4f} (paper: 3.07 ≤ x0 ≤ 3.46)."
    )
    caption = "Heavy ball's limit cycle on LRP's counterexample"
    with report.figure("counterexample.png", caption, (10, 4.0)) as fig:
        left, right = fig.subplots(1, 2)
        left.plot(cycle["iterates"][: published["shown"]], "o-", ms=3)
        left.set(xlabel="iteration k", ylabel="x_k")
        left.set_title("heavy ball (a = 1/9, β = 4/9), x0 = 3.3")
        x = np.linspace(-2.5, 3.5, 400)
        right.plot(x, function(x), "k-", lw=1)
        orbit = np.sort(cycle["orbit"])
        right.plot(orbit, function(orbit), "ro", label=f"limit cycle, period {cycle['period']}")
        right.set(xlabel="x", ylabel="f(x)", title="LRP §4.6: m = 1, L = 25")
        right.legend()
    return cycle

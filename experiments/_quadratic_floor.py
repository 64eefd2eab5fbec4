r"""The noise floor of momentum SGD on a quadratic: ``linearize`` against Monte-Carlo.

On :math:`f(\theta) = \tfrac12 \sum_i h_i \theta_i^2` with gradient noise of standard deviation
:math:`\sigma` per coordinate, the loop of momentum SGD settles to a stationary distribution
whose covariance ``linearize.stationary_covariance`` gives (a discrete Lyapunov equation) and
whose mean excess loss ``linearize.stationary_excess_loss`` gives. :func:`part` sets both beside
vmapped runs of the same optimizer from :mod:`gdyn_jax.optimizers` (seeds × momenta in one
program, float64). This is the second part of ``experiments/liu2018.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from experiments._harness import Report
from experiments._quadratic import final
from gdyn_jax import linearize, optimizers
from gdyn_jax.plotting import plot_bar_pairs


def floor_rows(momenta, learning_rate: float, curvatures, noise_sd: float, seeds: int, steps: int):
    """Per momentum: the predicted and Monte-Carlo variance along each curvature and excess
    loss (runs of ``steps`` steps from 0, ``seeds`` of them)."""
    h = np.asarray(curvatures)

    def one(mu, key):
        opt = optimizers.momentum(learning_rate, mu)

        def grad(theta, k):
            return h * theta + noise_sd * jax.random.normal(k, h.shape)

        return final(opt, grad, jnp.zeros(h.size), jax.random.split(key, steps))

    keys = jax.random.split(jax.random.key(1), seeds)
    noise = noise_sd**2 * np.eye(h.size)
    with jax.enable_x64(True):
        run = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
        thetas = np.asarray(run(jnp.asarray(momenta), keys))
        rows = []
        for mu, theta in zip(momenta, thetas, strict=True):
            system = linearize.linearize(optimizers.momentum(learning_rate, mu), np.diag(h))
            cov = np.asarray(linearize.stationary_covariance(system, noise))
            excess = 0.5 * np.sum(h * theta**2, axis=1)
            predicted = float(linearize.stationary_excess_loss(system, noise, np.diag(h)))
            rows.append(
                dict(momentum=mu, learning_rate=learning_rate)
                | dict(predicted_variance=np.diag(cov)[: h.size], monte_carlo_variance=theta.var(0))
                | dict(predicted_excess_loss=predicted, monte_carlo_excess_loss=excess.mean())
                | {"monte_carlo_excess_loss_se": excess.std() / np.sqrt(excess.size)}
            )
    return rows


def part(
    report: Report, momenta, learning_rate: float, curvatures, noise_sd: float, seeds, steps
) -> list[dict]:
    """:func:`floor_rows` in a report: a paragraph, the scored rows (within 4 standard errors
    of a variance estimate; the floor's growth 1/(1−μ) within 5%), the figure
    ``noise_floor.png``. Returns the rows."""
    rows = floor_rows(momenta, learning_rate, curvatures, noise_sd, seeds, steps)
    tol = 4 * np.sqrt(2 / seeds)  # 4 standard errors of a variance estimate
    report.text(
        f"Noise floor: momentum SGD, a = {learning_rate}, on ½ Σ h θ² with h = "
        f"{curvatures} and gradient noise sd {noise_sd}; `linearize.stationary_covariance`"
        f" against {seeds} vmapped runs of {steps} steps (tolerance 4 standard errors)."
    )
    for r in rows:
        m = r["momentum"]
        variances = zip(curvatures, r["monte_carlo_variance"], r["predicted_variance"], strict=True)
        for hi, mc, pred in variances:
            quantity = f"μ={m:g}: Var θ along h={hi:g}, Monte-Carlo"
            report.compare(quantity, mc, pred, rtol=tol, label="linearize")
        mc, pred = r["monte_carlo_excess_loss"], r["predicted_excess_loss"]
        report.compare(f"μ={m:g}: excess loss, Monte-Carlo", mc, pred, rtol=tol, label="linearize")
        if m > 0 and rows[0]["momentum"] == 0:
            quantity = f"μ={m:g}: predicted noise floor / floor at μ=0"
            ratio = pred / rows[0]["predicted_excess_loss"]
            report.compare(quantity, ratio, 1 / (1 - m), rtol=0.05, label="1/(1−μ)")
    with report.figure("noise_floor.png", "Quadratic noise floor: linearize vs Monte-Carlo") as fig:
        ax = fig.subplots()
        names = [f"μ={r['momentum']:g}" for r in rows]
        predicted = [r["predicted_excess_loss"] for r in rows]
        mc = [r["monte_carlo_excess_loss"] for r in rows]
        se2 = [2 * r["monte_carlo_excess_loss_se"] for r in rows]
        labels = ("linearize", "Monte-Carlo ± 2 se")
        plot_bar_pairs(ax, names, predicted, mc, labels=labels, right_err=se2)
        ax.set(yscale="log", ylabel="stationary excess loss")
        ax.legend(fontsize=8)
    return rows

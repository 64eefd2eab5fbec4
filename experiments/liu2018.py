r"""Momentum escapes saddles faster but settles noisier (Liu, Chen, Zhou, Zhao, NeurIPS 2018).

Streaming PCA: maximise :math:`w^\top \Sigma w` on the unit sphere from samples
:math:`x_k \sim \mathcal N(0, \Sigma)`, :math:`\Sigma = \mathrm{diag}(\lambda_1 > \lambda_2 >
\dots)`, with heavy-ball momentum from :mod:`gdyn_jax.optimizers` on the stochastic gradient
:math:`-x x^\top w` of :math:`-\tfrac12 (x^\top w)^2`, then a projection onto the sphere, from
the saddle :math:`w_0 = e_2`. All :math:`(\mu, \eta)` and seeds run in one vmapped scan:

- escape time: the first step with :math:`(w^\top e_1)^2 \ge 1/2`;
- stationary error: the mean of :math:`1 - (w^\top e_1)^2` over the second half of the run.

Liu et al.'s diffusion approximation says both depend on :math:`(\eta, \mu)` through the
effective step :math:`\eta/(1-\mu)` alone: escape time shrinks like :math:`1-\mu` (up to a
logarithm) and the stationary error grows like :math:`1/(1-\mu)`. The Ornstein-Uhlenbeck limit of
the tangent components near :math:`e_1` (drift :math:`-\eta(\lambda_1-\lambda_j)/(1-\mu)`, noise
variance :math:`\eta^2\lambda_1\lambda_j/(1-\mu)^2` per step) gives the level too:

.. math::
    1 - (w^\top e_1)^2 \approx \frac{\eta}{1-\mu}\, C, \qquad
    C = \sum_{j>1} \frac{\lambda_1 \lambda_j}{2(\lambda_1 - \lambda_j)}.

The law is a small-step limit: it is scored where :math:`\eta/(1-\mu)` is small, and the larger
steps show where and how it fails. Second part (``experiments/_quadratic_floor.py``): on a
quadratic with gradient noise, ``linearize.stationary_covariance`` against a Monte-Carlo run of
the same loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import _quadratic_floor as quadratic_floor
from experiments._harness import Modes, Report
from gdyn_jax import optimizers

TITLE = "Momentum SGD on streaming PCA: saddle escape vs stationary error (Liu et al. 2018)"
SOURCE = "Liu, Chen, Zhou, Zhao, 'Toward deeper understanding of nonconvex stochastic "
SOURCE += "optimization with momentum using diffusion approximations', NeurIPS 2018"
ESCAPE_OVERLAP = 0.5
BLOCK = 100  # steps between recorded points
QUAD_CURVATURES, QUAD_NOISE, QUAD_LEARNING_RATE = (1.0, 0.2), 0.1, 0.05


@dataclass(frozen=True)
class Settings(Modes):
    eigenvalues: tuple[float, ...] = (1.0, 0.5, 0.3, 0.2)
    momenta: tuple[float, ...] = (0.0, 0.5, 0.9)
    learning_rates: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005)
    seeds: int = 128
    steps: int = 100_000
    diffusion_limit: float = 0.01  # effective steps eta/(1-mu) up to which the law is scored
    mc_seeds: int = 2000
    mc_steps: int = 1000

    TINY = dict(
        learning_rates=(0.01, 0.02),
        seeds=16,
        steps=4000,
        diffusion_limit=0.05,
        mc_seeds=256,
        mc_steps=300,
    )
    FULL = dict(
        eigenvalues=(1.0, 0.5, 0.3, 0.2, 0.1, 0.05),
        momenta=(0.0, 0.3, 0.6, 0.9),
        learning_rates=(0.00025, 0.0005, 0.001, 0.0025, 0.005),
        seeds=512,
        steps=200_000,
        mc_seeds=8000,
        mc_steps=2000,
    )

    @property
    def diffusion_constant(self) -> float:
        """C of the Ornstein-Uhlenbeck limit."""
        lam = np.asarray(self.eigenvalues)
        return float(np.sum(lam[0] * lam[1:] / (2 * (lam[0] - lam[1:]))))


def simulate_pca(s: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (momentum, learning rate, seed): the escape step (-1 if never), the overlap
    (w.e1)^2 at the end of each block of BLOCK steps, and the summed error over each block."""
    scale = jnp.sqrt(jnp.asarray(s.eigenvalues))
    w0 = jnp.zeros(scale.size).at[1].set(1.0)  # the saddle e2

    def one(mu, eta, key):
        opt = optimizers.momentum(eta, mu)

        def step(carry, t):
            w, state, escaped = carry
            x = scale * jax.random.normal(jax.random.fold_in(key, t), scale.shape)
            updates, state = opt.update(-x * jnp.dot(x, w), state, w)
            w = optax.apply_updates(w, updates)
            w = w / jnp.linalg.norm(w)
            hit = (escaped < 0) & (w[0] ** 2 >= ESCAPE_OVERLAP)
            return (w, state, jnp.where(hit, t + 1, escaped)), 1.0 - w[0] ** 2

        def block(carry, b):
            carry, error = jax.lax.scan(step, carry, b * BLOCK + jnp.arange(BLOCK))
            return carry, (carry[0][0] ** 2, error.sum())

        init = (w0, opt.init(w0), jnp.int32(-1))
        (_, _, escaped), (overlap, error) = jax.lax.scan(block, init, jnp.arange(s.steps // BLOCK))
        return escaped, overlap, error

    run = jax.vmap(jax.vmap(jax.vmap(one, (None, None, 0)), (None, 0, None)), (0, None, None))
    keys = jax.random.split(jax.random.key(0), s.seeds)
    out = jax.jit(run)(jnp.asarray(s.momenta), jnp.asarray(s.learning_rates), keys)
    escaped, overlap, error = (np.asarray(v, np.float64) for v in out)
    return np.where(escaped > 0, escaped, np.nan), overlap, error


def fit_exponent(mu, values) -> float:
    """p in values ~ (1/(1-mu))^p, least squares on logs."""
    return float(np.polyfit(np.log(1 / (1 - np.asarray(mu))), np.log(values), 1)[0])


def run(s: Settings, report: Report) -> None:
    escaped, overlap, error = simulate_pca(s)  # (M, E, S), (M, E, S, blocks) twice
    half = error.shape[-1] // 2
    stationary = error[..., half:].sum(-1) / (half * BLOCK)
    mu, eta = np.asarray(s.momenta)[:, None], np.asarray(s.learning_rates)[None, :]
    effective, c = eta / (1 - mu), s.diffusion_constant
    regime = effective <= s.diffusion_limit * (1 + 1e-9)  # where the law is scored
    err, err_se = stationary.mean(-1), stationary.std(-1) / np.sqrt(s.seeds)
    escape = np.nanmedian(escaped, -1)
    late = np.nanmax(escaped) >= half * BLOCK or np.isnan(escaped).any()
    report.text(
        f"Streaming PCA, Σ = diag{s.eigenvalues}, from the saddle e2; {s.seeds} seeds × "
        f"{len(s.momenta)} momenta × {len(s.learning_rates)} step sizes in one vmapped scan of "
        f"{s.steps} steps. Escape: first step with (w·e1)² ≥ 1/2 (median over seeds); stationary "
        f"error: mean of 1 − (w·e1)² over the second half, which every run entered escaped: "
        f"{'**no**' if late else 'yes'}. Diffusion limit: C = {c:.4f}; the law is scored where "
        f"η/(1−μ) ≤ {s.diffusion_limit:g} (the diffusion regime)."
    )
    for j, e in enumerate(s.learning_rates):
        p_esc, p_sta = fit_exponent(s.momenta, escape[:, j]), fit_exponent(s.momenta, err[:, j])
        report.compare(f"η={e:g}: escape-time exponent in 1/(1−μ)", p_esc, -1.0, atol=0.3)
        report.compare(f"η={e:g}: stationary-error exponent in 1/(1−μ)", p_sta, 1.0, atol=0.25)
        rise, drop = np.max(np.diff(escape[:, j])), np.min(np.diff(err[:, j]))
        what = "largest step of the escape time as μ grows"
        report.bound(f"η={e:g}: {what}", rise, upper=0.0, label="decreasing")
        what = "smallest step of the stationary error as μ grows"
        report.bound(f"η={e:g}: {what}", drop, lower=0.0, label="increasing")
        for i in np.flatnonzero(regime[:, j]):
            m, error, at = s.momenta[i], err[i, j], f"η={e:g}, μ={s.momenta[i]:g}"
            if m > 0:
                quantity = f"{at}: stationary error / error at μ=0"
                report.compare(quantity, error / err[0, j], 1 / (1 - m), rtol=0.1, label="1/(1−μ)")
            law = c * effective[i, j]
            report.compare(f"{at}: stationary error", error, law, rtol=0.1, label="C η/(1−μ)")
    _effective_step_rows(report, s, escape, err, err_se)
    _figures(report, s, overlap, escape, err, effective)
    floor = quadratic_floor.part(
        report, s.momenta, QUAD_LEARNING_RATE, QUAD_CURVATURES, QUAD_NOISE, s.mc_seeds, s.mc_steps
    )
    report.record(
        diffusion_constant=c,
        effective_step=effective,
        escape_median=escape,
        stationary_error=err,
        stationary_error_se=err_se,
        noise_floor=floor,
    )


def _effective_step_rows(report: Report, s: Settings, escape, err, err_se) -> None:
    """Equal eta/(1-mu), equal escape time and error; the error against the law, tabled."""
    effective = np.asarray(s.learning_rates)[None, :] / (1 - np.asarray(s.momenta)[:, None])
    cells = list(np.ndindex(effective.shape))
    for (i, j), (k, l) in itertools.combinations(cells, 2):
        if not np.isclose(effective[i, j], effective[k, l], rtol=1e-9):
            continue
        first, second = (s.momenta[i], s.learning_rates[j]), (s.momenta[k], s.learning_rates[l])
        tag = "(μ={:g}, η={:g}) vs (μ={:g}, η={:g})".format(*first, *second)
        for what, value in (("escape time", escape), ("stationary error", err)):
            quantity = f"same η/(1−μ) = {effective[i, j]:g}, {what}: {tag}"
            report.compare(quantity, value[i, j], value[k, l], rtol=0.1)
    report.text(
        "Measured stationary error / the diffusion law C η/(1−μ), against the effective "
        "step (scored above only in the diffusion regime; beyond it, the departure):"
    )
    law = err / (s.diffusion_constant * effective)
    rows = [
        (effective[i, j], s.momenta[i], s.learning_rates[j], err[i, j], err_se[i, j], law[i, j])
        for i, j in sorted(cells, key=lambda ij: effective[ij])
    ]
    report.table(("η/(1−μ)", "μ", "η", "error", "standard error", "error / law"), rows)


def _figures(report, s, overlap, escape, err, effective) -> None:
    mus, etas = np.asarray(s.momenta), np.asarray(s.learning_rates)
    caption = (
        "Streaming PCA from a saddle: escape, and the stationary error against the effective step"
    )
    with report.figure("pca_escape_stationary.png", caption, (15, 4.3)) as fig:
        left, middle, right = fig.subplots(1, 3)
        steps = BLOCK * np.arange(1, overlap.shape[-1] + 1)
        for i, mu in enumerate(mus):
            left.semilogx(steps, overlap[i, -1].mean(0), label=f"μ = {mu:g}")
        left.axhline(ESCAPE_OVERLAP, color="k", ls=":", lw=0.8)
        left.set(
            xlabel="step", ylabel="(w·e1)², mean over seeds", title=f"escape, η = {etas[-1]:g}"
        )
        left.legend(fontsize=8)
        for j, eta in enumerate(etas):
            middle.loglog(1 / (1 - mus), escape[:, j], f"C{j}o-", label=f"η = {eta:g}")
            middle.loglog(1 / (1 - mus), escape[0, j] * (1 - mus), f"C{j}:")
            right.loglog(
                effective[:, j], err[:, j] / effective[:, j], f"C{j}o", label=f"η = {eta:g}"
            )
        middle.set(
            xlabel="1/(1−μ)", ylabel="median escape step", title="escape time; dotted: ∝ 1−μ"
        )
        right.axhline(s.diffusion_constant, color="k", ls="--", label="diffusion law C")
        right.axvline(s.diffusion_limit, color="0.6", ls=":", label="scored up to here")
        right.set(xlabel="effective step η/(1−μ)", ylabel="stationary error / (η/(1−μ))")
        right.set_title("collapse onto the law, and the departure")
        for ax in (middle, right):
            ax.legend(fontsize=7)

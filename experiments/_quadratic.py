r"""An optimizer run on a diagonal quadratic, and the rate fitted to its error.

The loss is :math:`f(\theta) = \tfrac12 \sum_i h_i \theta_i^2` (optimum at 0), started from
:math:`\theta_0 = \mathbf{1}`; the error after :math:`k` steps is :math:`\|\theta_k\|`, whose
geometric tail decays at the loop's spectral radius over the curvatures :math:`h_i`.
"""

from __future__ import annotations

import pathlib

import numpy as np
import optax

from experiments._report import save_figure


def error_norms(opt: optax.GradientTransformation, eigenvalues, steps: int) -> np.ndarray:
    """``||θ_k||`` for k = 0..steps under ``opt`` on the quadratic, in float64."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        h = jnp.asarray(eigenvalues, dtype=jnp.float64)
        theta0 = jnp.ones_like(h)

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(h * params, state, params)
            params = optax.apply_updates(params, updates)
            return (params, state), jnp.linalg.norm(params)

        _, norms = jax.lax.scan(step, (theta0, opt.init(theta0)), None, length=steps)
        return np.concatenate([[float(jnp.linalg.norm(theta0))], np.asarray(norms)])


def fitted_rate(errors: np.ndarray, skip: int) -> float:
    """The per-step rate of the geometric tail of ``errors``: a log-linear fit after ``skip``
    steps, where the relative error is below 1e-1 and above float64 rounding (1e-11)."""
    k = np.arange(errors.size)
    rel = errors / errors[0]
    keep = (k >= skip) & (rel < 1e-1) & (rel > 1e-11)
    keep = keep if keep.sum() >= 10 else (k >= skip) & (rel > 1e-11)
    return float(np.exp(np.polyfit(k[keep], np.log(errors[keep]), 1)[0]))


def plot_error_decay(run: dict, path: pathlib.Path, title: str) -> None:
    """Each method's relative error (solid) beside its predicted rate**k (dotted), log scale.

    ``run`` maps ``errors`` and ``predicted`` to dicts keyed by method name.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, (method, e) in enumerate(run["errors"].items()):
        label = method.replace("_", " ")
        rate = run["predicted"][method]
        ax.semilogy(e / e[0], color=f"C{i}", label=f"{label}: measured")
        ax.semilogy(
            rate ** np.arange(e.size), color=f"C{i}", ls=":", label=f"{label}: rate {rate:.4f}$^k$"
        )
    ax.set_ylim(1e-14, 10)
    ax.set_xlabel("step k")
    ax.set_ylabel(r"relative error $\|\theta_k-\theta^*\|/\|\theta_0-\theta^*\|$")
    ax.set_title(title)
    ax.legend(fontsize=7)
    save_figure(fig, path)

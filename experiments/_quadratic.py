r"""Optimizers run on explicit gradients and on a diagonal quadratic; their error decay.

:func:`iterates` runs an optax transform on a gradient function (any loss; batches or noise as
its inputs; :func:`final` keeps only the last iterate). On the quadratic
:math:`f(\theta) = \tfrac12 \sum_i h_i \theta_i^2` (optimum at 0), started from
:math:`\theta_0 = \mathbf{1}`, the error after :math:`k` steps is :math:`\|\theta_k\|`, whose
geometric tail decays at the loop's spectral radius over the curvatures :math:`h_i`
(``gdyn_jax.measurements.tail_rate`` fits it; :func:`worst_rate` predicts it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.measurements import tail_rate


def iterates(opt: optax.GradientTransformation, grad, start, inputs=None, length=None):
    """``θ_0, θ_1, ...`` under ``opt`` from ``start`` with the gradient ``grad(θ, input)`` for
    each of ``inputs`` (or ``grad(θ, None)`` ``length`` times): one ``lax.scan``, vmappable."""
    start = jnp.asarray(start)
    step = _step(opt, grad, keep=True)
    _, path = jax.lax.scan(step, (start, opt.init(start)), inputs, length=length)
    return jnp.concatenate([start[None], path])


def final(opt: optax.GradientTransformation, grad, start, inputs=None, length=None):
    """The last of :func:`iterates`, without keeping the path."""
    start = jnp.asarray(start)
    step = _step(opt, grad, keep=False)
    (params, _), _ = jax.lax.scan(step, (start, opt.init(start)), inputs, length=length)
    return params


def _step(opt: optax.GradientTransformation, grad, keep: bool):
    """One step of ``opt`` on ``grad`` as a ``lax.scan`` body (emitting θ if ``keep``)."""

    def step(carry, x):
        params, state = carry
        updates, state = opt.update(grad(params, x), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params if keep else None)

    return step


def error_norms(opt: optax.GradientTransformation, eigenvalues, steps: int) -> np.ndarray:
    """``||θ_k||`` for k = 0..steps under ``opt`` on the quadratic, in float64."""
    with jax.enable_x64(True):
        h = jnp.asarray(eigenvalues, dtype=jnp.float64)
        path = iterates(opt, lambda p, _: h * p, jnp.ones_like(h), length=steps)
        return np.asarray(jnp.linalg.norm(path, axis=1))


def worst_rate(factory, hyperparameters: dict, curvatures) -> float:
    """``linearize.convergence_rate`` of one setting: the largest spectral radius over
    ``curvatures``."""
    grid = {k: np.asarray([v], dtype=np.float64) for k, v in hyperparameters.items()}
    return float(np.max(linearize.convergence_rate(factory, grid, curvatures)))


def plot_error_decay(ax, errors: dict, rates: dict, title: str) -> None:
    """Each method's relative error (solid) beside its predicted ``rate**k`` (dotted)."""
    for i, (method, e) in enumerate(errors.items()):
        label, rate = method.replace("_", " "), rates[method]
        ax.semilogy(e / e[0], color=f"C{i}", label=f"{label}: measured")
        k = np.arange(e.size)
        ax.semilogy(rate**k, color=f"C{i}", ls=":", label=f"{label}: rate {rate:.4f}$^k$")
    ax.set_ylim(1e-14, 10)
    ax.set_xlabel("step k")
    ax.set_ylabel(r"relative error $\|\theta_k-\theta^*\|/\|\theta_0-\theta^*\|$")
    ax.set_title(title)
    ax.legend(fontsize=7)


def tuned_runs(report, rules: dict, eigenvalues, steps: int, skip: int, title: str) -> dict:
    """Each rule ``name -> (factory, hyperparameters)`` run on the quadratic: its measured tail
    rate (``analysis.tail_rate`` after ``skip`` steps) scored against
    ``linearize.convergence_rate`` within 3%, and the figure ``quadratic_run.png``."""
    errors, out = {}, {"measured": {}, "predicted": {}}
    for name, (factory, hp) in rules.items():
        errors[name] = error_norms(factory(**hp), eigenvalues, steps)
        rate = worst_rate(factory, hp, eigenvalues)
        out["predicted"][name], out["measured"][name] = rate, tail_rate(errors[name], skip=skip)
        measured = out["measured"][name]
        report.compare(
            f"{title}: {name} measured rate", measured, rate, rtol=0.03, label="linearize"
        )
    with report.figure("quadratic_run.png", f"Error decay, {title}, vs the predicted rate") as fig:
        plot_error_decay(fig.subplots(), errors, out["predicted"], title)
    return out

r"""Each Hessian direction of a real network behaves as the closed loop ``linearize`` computes.

A fully connected tanh network is trained to a minimum of the square loss on the first MNIST-1D
examples (full batch, float64, L-BFGS), the top-k Hessian eigenpairs :math:`(\lambda_i, q_i)`
are found there by Lanczos on Hessian-vector products, and the parameters are kicked by
:math:`c\,q_i`. Training then continues, full batch, with SGD, heavy ball and Nesterov (the
package's optimizers, the state starting at zero), and the coordinate :math:`p_i(k) =
q_i^\top(\theta^{\text{kicked}}_k - \theta^{\text{unkicked}}_k)` is set beside
:math:`c\,(1 - y_k(\lambda_i))`, with :math:`y` the step response of
``linearize(opt, lambda_i)`` (``gdyn_jax.predictions.modes``). For each optimizer the step sizes
put the sharpest mode in each regime the loop has (damped, underdamped, oscillating, and unstable
with a growth of about 100 over the horizon: ``predictions.regime_learning_rates``); the other
modes fall where their curvature puts them, and every (setting, mode) is classified
from its own poles.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from experiments._harness import Modes, Report
from gdyn_jax import data, measurements, models, optimizers, predictions
from gdyn_jax.measurements import hessian

TITLE = "Mode by mode on a real network: kicked Hessian directions follow linearize's responses"
SOURCE = "Wu et al. 2021 (optimizers as control systems); Cohen et al. 2021 (stability limit)"
#: name -> (gdyn_jax.optimizers name, fixed hyperparameters)
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "heavy ball": ("momentum", {"beta": 0.5}),
    "nesterov": ("nesterov", {"beta": 0.5}),
}
STABLE_RTOL, UNSTABLE_RTOL = 0.01, 0.1  # declared bounds on the relative L2 error
GROWTH = 100.0  # free-response growth of the sharpest mode over the horizon (unstable runs)


@dataclass(frozen=True)
class Settings(Modes):
    examples: int = 200
    widths: tuple[int, ...] = (16, 16)
    lbfgs_steps: int = 4000
    modes: int = 8
    lanczos_iters: int = 80
    kick: float = 1e-5
    steps: int = 60

    TINY = dict(examples=50, widths=(8,), lbfgs_steps=300, modes=3, lanczos_iters=30, steps=30)
    FULL = dict(examples=500, widths=(32, 32), lbfgs_steps=8000, modes=10, lanczos_iters=100)


def problem(s: Settings):
    """(loss, initial float64 params): square loss of fc-tanh on the first examples."""
    x, y = data.load("mnist1d", f"train[:{s.examples}]")
    x, y = jnp.asarray(x, jnp.float64), jax.nn.one_hot(y, 10, dtype=jnp.float64)
    model = models.get("fc", 10, widths=s.widths, activation="tanh")
    params = jax.tree.map(lambda v: v.astype(jnp.float64), model.init(jax.random.key(0), x[:1]))

    def loss(p):
        return 0.5 * jnp.mean(jnp.sum((model.apply(p, x) - y) ** 2, axis=-1))

    return loss, params


def kicks(name: str, values, vectors, loss, params, s: Settings) -> list:
    """``predictions.kick_test`` of optimizer ``name``, one step size per regime of the top mode."""
    factory, fixed = optimizers.get(OPTIMIZERS[name][0]), OPTIMIZERS[name][1]
    lrs = predictions.regime_learning_rates(
        factory, values[0], growth=GROWTH, steps=s.steps, **fixed
    )
    settings = [{"learning_rate": lr, **fixed} for lr in lrs.values()]
    return predictions.kick_test(loss, params, factory, settings, values, vectors, s.kick, s.steps)


def run(s: Settings, report: Report) -> None:
    with jax.enable_x64(True):
        loss, params = problem(s)
        params, losses = measurements.minimize(loss, params, s.lbfgs_steps)
        key = jax.random.key(1)
        eig = jax.jit(lambda p: hessian.top_eigenpairs(loss, p, key, s.modes, s.lanczos_iters))
        values, vectors = (np.asarray(v) for v in eig(params))
        residual = measurements.eigen_residuals(loss, params, values, vectors)
        flat = ravel_pytree(params)[0]
        grad_norm = float(np.linalg.norm(ravel_pytree(jax.grad(loss)(params))[0]))
        results = {k: kicks(k, values, vectors, loss, params, s) for k in OPTIMIZERS}
    report.text(
        f"fc-tanh {s.widths} ({flat.size} parameters), square loss on the first {s.examples} "
        f"MNIST-1D examples, float64. After {s.lbfgs_steps} L-BFGS steps: loss "
        f"{float(losses[-1]):.3g}, gradient norm {grad_norm:.2g}. Top {s.modes} eigenvalues "
        f"(Lanczos, {s.lanczos_iters} iterations): {', '.join(f'{v:.4g}' for v in values)}; "
        f"residuals ‖Hq − λq‖/λ ≤ {residual.max():.1g}. Kick c = {s.kick:g} (‖θ*‖ = "
        f"{np.linalg.norm(flat):.3g}), {s.steps} steps: small enough for the quadratic model; the "
        "unkicked run is subtracted, which cancels the residual gradient to first order. Error: "
        f"relative L2 over the horizon. Declared bounds: {STABLE_RTOL:.0%} for stable loops, "
        f"{UNSTABLE_RTOL:.0%} for unstable ones (their response amplifies a relative error in λ "
        "about 100-fold over the horizon); an unstable mode must grow at least 10-fold. Heavy "
        "ball and Nesterov use β = 0.5."
    )
    for name, tests in results.items():
        for t in tests:
            a = t.hparams["learning_rate"]
            for i, (reg, err) in enumerate(zip(t.regimes, t.error, strict=True)):
                mode = f"{name}, a = {a:.4g}: mode {i + 1} (a·λ = {a * values[i]:.3g}, {reg})"
                upper = UNSTABLE_RTOL if reg == "unstable" else STABLE_RTOL
                report.bound(f"{mode} relative error", err, upper=upper)
                if reg == "unstable":
                    report.bound(f"{name}: mode {i + 1} growth |p(T)|/c", t.growth[i], lower=10)
        seen = {reg for t in tests for reg in t.regimes}
        report.bound(f"{name}: regimes seen", len(seen), lower=3 if name == "sgd" else 4)
    plot(report, results)
    report.record(
        eigenvalues=values,
        residuals=residual,
        final_loss=float(losses[-1]),
        gradient_norm=grad_norm,
        kicks=results,
    )


def plot(report: Report, results: dict) -> None:
    caption = "p_i(k)/c: measured (dots) and 1 − y_k(λ_i) from linearize (lines), per mode"
    with report.figure("mode_responses.png", caption, (15, 9)) as fig:
        axes = fig.subplots(len(results), 4, squeeze=False)
        for row, (name, tests) in zip(axes, results.items(), strict=True):
            for ax, t in zip(row, tests, strict=False):
                for i in range(len(t.error)):
                    ax.plot(t.predicted[i], color=f"C{i}", lw=1)
                    ax.plot(t.measured[i], ".", color=f"C{i}", ms=3, label=f"mode {i + 1}")
                if t.regimes[0] == "unstable":
                    ax.set_yscale("symlog", linthresh=1.0)
                a = t.hparams["learning_rate"]
                ax.set_title(f"{name}, a = {a:.3g} (top mode {t.regimes[0]})", fontsize=9)
            for ax in row[len(tests) :]:
                ax.axis("off")
        axes[0, 0].legend(fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("step after the kick")

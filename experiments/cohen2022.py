r"""Adaptive edge of stability: full-batch Adam's preconditioned sharpness settles at 38/η.

Cohen et al. (2022) freeze Adam's preconditioner :math:`P = \operatorname{diag}(\sqrt{\hat\nu})
+ \epsilon`: the update is then heavy ball on :math:`P^{-1}\nabla L` with the EMA first moment,
a linear loop that is stable on a quadratic with Hessian :math:`H` while the *preconditioned
sharpness* :math:`\lambda_{\max}(P^{-1}H)` stays below :math:`(2 + 2\beta_1)/(\eta(1-\beta_1))`
(38/η at :math:`\beta_1 = 0.9`). Under full-batch Adam it rises to that limit and hovers there.

Here the limit is computed by ``linearize.max_stable_curvature`` from Adam's own code with
``freeze=('nu', 'count')`` at a state where :math:`P = 1` and the count is late (so the loop's
curvature is the preconditioned one), and the preconditioned sharpness is tracked by the sweep
engine (``track_preconditioned_sharpness``: Lanczos on :math:`P^{-1/2} H P^{-1/2}`, P frozen at
each evaluation) for fc-tanh on the first MNIST-1D examples, square loss, all learning rates in
one vmapped sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from experiments import _training as tr
from experiments._harness import Modes, Report
from gdyn_jax import linearize, optimizers

TITLE = "Adaptive edge of stability: Adam's preconditioned sharpness hovers at 38/η"
SOURCE = "Cohen et al., 'Adaptive gradient methods at the edge of stability', arXiv:2207.14484"
B1 = 0.9
RTOL = 0.1  # declared band on late preconditioned sharpness / limit


@dataclass(frozen=True)
class Settings(Modes):
    learning_rates: tuple[float, ...] = (1e-3, 3e-3)
    steps: int = 1000
    eval_every: int = 50
    examples: int = 1000
    widths: tuple[int, ...] = (100, 100)
    lanczos_iters: int = 20

    TINY = dict(learning_rates=(1e-2,), steps=20, eval_every=10, examples=100, widths=(16,))
    FULL = dict(learning_rates=(3e-4, 1e-3, 3e-3), steps=3000, widths=(200, 200))


def frozen_limit(learning_rate: float) -> float:
    """``max_stable_curvature`` of the package's Adam with ν and the count frozen at P = 1."""
    defaults = optimizers.hyperparameters("adam")
    opt = optimizers.adam(learning_rate, b1=B1)
    count, b2, eps = 10_000, defaults["b2"], defaults["eps"]
    with jax.enable_x64(True):
        adam, rest = opt.init(np.zeros(1))
        nu = np.full(1, (1 - eps) ** 2 * (1 - b2**count))  # sqrt(nu / (1 - b2^c)) + eps = 1
        state = (adam._replace(count=count, nu=nu), rest)
    return float(linearize.max_stable_curvature(opt, state=state, freeze=("nu", "count")))


def late(curve: np.ndarray) -> float:
    """The median of the last half of a curve's finite values (NaN if none)."""
    tail = np.asarray(curve, float)[len(curve) // 2 :]
    tail = tail[np.isfinite(tail)]
    return float(np.median(tail)) if tail.size else float("nan")


def run(s: Settings, report: Report) -> None:
    config = tr.full_batch_fc(s.widths, s.examples, s.lanczos_iters)
    config |= dict(steps=s.steps, eval_every=s.eval_every, track_preconditioned_sharpness=True)
    lrs = {"learning_rate": list(s.learning_rates)}
    ds = tr.sweep(lrs, 1, optimizer="adam", hparams={"b1": B1}, **config)
    curves = ds.preconditioned_sharpness.isel(seed=0)
    limits = {lr: frozen_limit(lr) for lr in s.learning_rates}
    report.text(
        f"Full-batch Adam (β1 = {B1}, β2, ε at the package's defaults), fc-tanh {s.widths}, "
        f"square loss, the first {s.examples} MNIST-1D examples, {s.steps} steps; λ_max(P⁻¹H) "
        f"by {s.lanczos_iters} Lanczos iterations every {s.eval_every} steps. Late value: the "
        f"median over the second half of training. Agreement: late / limit within ±{RTOL:.0%}; "
        "the limit from linearize is also set beside Cohen et al.'s (2 + 2β1)/(η(1 − β1))."
        + (" Tiny mode is far too short to reach the edge." if report.mode == "tiny" else "")
    )
    for i, lr in enumerate(s.learning_rates):
        value = late(curves.isel(learning_rate=i).values)
        quantity = f"η = {lr:g}: frozen-Adam limit (max_stable_curvature)"
        published = (2 + 2 * B1) / (lr * (1 - B1))
        report.compare(quantity, limits[lr], published, rtol=1e-6, label="Cohen et al. 2022")
        report.compare(f"η = {lr:g}: late λ_max(P⁻¹H) / limit", value / limits[lr], 1.0, rtol=RTOL)
    caption = "Preconditioned sharpness (dashed: the frozen-Adam limit, linearize) and loss"
    with report.figure("preconditioned_sharpness.png", caption, (11, 4.2)) as fig:
        left, right = fig.subplots(1, 2)
        for i, lr in enumerate(s.learning_rates):
            left.plot(ds.step, curves.isel(learning_rate=i), color=f"C{i}", label=f"η = {lr:g}")
            left.axhline(limits[lr], color=f"C{i}", ls="--", lw=1)
            right.plot(ds.step, ds.train_loss.isel(learning_rate=i, seed=0), color=f"C{i}")
        left.set(xlabel="step", ylabel="λ_max(P⁻¹H)", yscale="log", title="full-batch Adam")
        right.set(xlabel="step", ylabel="train loss (square)", yscale="log")
        left.legend()
    late_values = {lr: late(curves.sel(learning_rate=lr).values) for lr in s.learning_rates}
    train_loss = ds.train_loss.isel(seed=0).values
    report.record(
        limits=limits,
        late_preconditioned_sharpness=late_values,
        curves=curves.values,
        train_loss=train_loss,
    )

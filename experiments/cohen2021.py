r"""Edge of stability: full-batch sharpness settles at the optimizer's stability limit.

Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically occurs at
the edge of stability", ICLR 2021: with full-batch gradient descent the sharpness
:math:`\lambda_{\max}(\nabla^2 L)` rises during training until it reaches the largest curvature
the update rule is stable on, then hovers there while the loss keeps falling non-monotonically.
That limit is the loop's stability boundary on a one-dimensional quadratic, computed by
``gdyn_jax.linearize.max_stable_curvature`` (never a hand formula):

.. math::
    \text{GD: } \frac{2}{a}, \qquad \text{heavy ball: } \frac{2+2\beta}{a}, \qquad
    \text{Nesterov: } \frac{2+2\beta}{(1+2\beta)\,a}.

Each optimizer runs at learning rates whose limits take given values (the limit scales as
:math:`1/a`), with the square loss on one-hot targets, full batch, the paper's fully connected
tanh network on the first examples of MNIST-1D (quick) or CIFAR-10 (full, when prepared), and the
sweep engine's Lanczos sharpness on the same examples. The final sharpness (median over the last
quarter of training) is set beside the limit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from experiments import _training as tr
from experiments._harness import Modes, Report
from gdyn_jax import data, linearize, optimizers

TITLE = "Edge of stability: sharpness hovers at max_stable_curvature for GD, heavy ball, Nesterov"
SOURCE = "Cohen et al., ICLR 2021 (Figs. 1, 2 and the momentum appendix)"
#: name -> (gdyn_jax.optimizers name, fixed hyperparameters)
OPTIMIZERS = {
    "gd": ("sgd", {}),
    "momentum": ("momentum", {"beta": 0.9}),
    "nesterov": ("nesterov", {"beta": 0.9}),
}
RTOL = 0.1  # agreement band on final sharpness / limit


@dataclass(frozen=True)
class Settings(Modes):
    # GD sharpens slowest per step, so it gets the lower limits (larger steps); heavy ball at
    # limit 20 is thrown out of the basin on this network, so the momentum methods use 30, 40.
    limits: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("gd", (20.0, 30.0)),
        ("momentum", (30.0, 40.0)),
        ("nesterov", (30.0, 40.0)),
    )
    steps: int = 4000
    eval_every: int = 100
    train_subset: int = 1000
    sharpness_iters: int = 20
    seeds: int = 1
    widths: tuple[int, ...] = (200, 200)
    dataset: str = "mnist1d"

    TINY = dict(
        limits=tuple((k, (20.0,)) for k in OPTIMIZERS),
        steps=20,
        eval_every=10,
        train_subset=200,
        sharpness_iters=5,
        widths=(32, 32),
    )
    # the paper's CIFAR-10 when it is prepared in the data dir
    FULL = dict(steps=10000, train_subset=5000, seeds=2, dataset="cifar10")


def limit(optimizer: str, learning_rate: float) -> float:
    """The stability limit of ``optimizer`` from ``linearize.max_stable_curvature``."""
    name, fixed = OPTIMIZERS[optimizer]
    return float(linearize.max_stable_curvature(optimizers.get(name)(learning_rate, **fixed)))


def final_sharpness(curve: np.ndarray) -> float:
    """Median of the finite sharpness values over the last quarter of the eval points."""
    tail = np.asarray(curve, float)[-max(2, len(curve) // 4) :]
    return float(np.median(tail[np.isfinite(tail)])) if np.isfinite(tail).any() else np.nan


def run(s: Settings, report: Report) -> None:
    try:
        data.load(s.dataset, "test[:1]")
    except FileNotFoundError:  # CIFAR-10 not prepared here: the quick setting's data
        s = dataclasses.replace(s, dataset="mnist1d", train_subset=4000)
    results, runs = {}, []
    for optimizer, limits in s.limits:
        lrs = [limit(optimizer, 1.0) / target for target in limits]  # the limit is c / a
        name, fixed = OPTIMIZERS[optimizer]
        setup = tr.full_batch_fc(s.widths, s.train_subset, s.sharpness_iters, s.dataset)
        config = dict(steps=s.steps, eval_every=s.eval_every, track_sharpness=True, **setup)
        results[optimizer] = ds = tr.sweep(
            {"learning_rate": lrs}, s.seeds, optimizer=name, hparams=fixed, **config
        )
        for i, lr in enumerate(lrs):
            sharp = ds["sharpness"].isel(learning_rate=i).values  # (seed, step)
            runs.append(
                {
                    "optimizer": optimizer,
                    "learning_rate": lr,
                    "beta": fixed.get("beta"),
                    "threshold": limit(optimizer, lr),
                    "final_sharpness": float(np.mean([final_sharpness(c) for c in sharp])),
                    "initial_sharpness": float(np.nanmean(sharp[:, 0])),
                    "diverged": bool((ds["diverged_at"].isel(learning_rate=i) >= 0).any()),
                }
            )
    report.text(
        f"{s.dataset}, first {s.train_subset} training examples, fully connected tanh network "
        f"(widths {s.widths}), square loss on one-hot targets, full batch; sharpness by Lanczos on "
        f"the same examples. Agreement: final sharpness within ±{100 * RTOL:.0f}% of the limit."
        + (" Tiny mode is far too short to sharpen." if report.mode == "tiny" else "")
    )
    for r in runs:
        beta = "" if r["beta"] is None else f", β={r['beta']}"
        r["ratio"] = r["final_sharpness"] / r["threshold"]
        quantity = f"{r['optimizer']} a={r['learning_rate']:.4g}{beta}: final sharpness"
        measured, predicted = r["final_sharpness"], r["threshold"]
        report.compare(quantity, measured, predicted, rtol=RTOL, label="max_stable_curvature")
    _figures(report, results)
    report.record(runs=runs, dataset=s.dataset)


def _figures(report: Report, results: dict) -> None:
    caption = "Sharpness (top) and train loss (bottom); dashed: max_stable_curvature at each "
    with report.figure("sharpness.png", f"{caption}learning rate", (14, 7.5)) as fig:
        axes = fig.subplots(2, len(results), sharex=True, squeeze=False)
        for col, (optimizer, ds) in enumerate(results.items()):
            steps = ds["step"].values
            for i, lr in enumerate(ds["learning_rate"].values):
                threshold = limit(optimizer, float(lr))
                axes[0, col].plot(steps, ds["sharpness"].isel(learning_rate=i).values.T, f"C{i}")
                label = f"a = {lr:.4g}: limit {threshold:.3g}"
                axes[0, col].axhline(threshold, ls="--", color=f"C{i}", label=label)
                loss = ds["train_loss"].isel(learning_rate=i).values.T
                axes[1, col].semilogy(steps, loss, f"C{i}")
            axes[0, col].set(title=f"{optimizer}: sharpness", ylabel="top Hessian eigenvalue")
            axes[1, col].set(title=f"{optimizer}: train loss", xlabel="step", ylabel="square loss")
            axes[0, col].legend(fontsize=8)

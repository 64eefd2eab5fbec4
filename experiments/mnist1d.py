r"""MNIST-1D test accuracies of the paper's four models (Greydanus & Kobak, ICML 2024).

The paper trains each model with Adam (learning rate :math:`10^{-2}`, batch 100, 6000 steps)
on MNIST-1D (4000 train / 1000 test sequences of length 40) and reports test accuracy:
logistic 32%, MLP 68%, CNN 94%, GRU 91% (human 96%). Here every model is trained the same way
through the sweep engine, all seeds in one vmapped program (a seed sets the initialisation
and the batch order), and the accuracies are set beside the published ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from experiments import _training as tr
from experiments._harness import Modes, Report
from gdyn_jax.plotting import plot_bar_pairs, plot_mean_band

TITLE = "MNIST-1D: logistic / MLP / CNN / GRU test accuracy with Adam (Greydanus & Kobak 2024)"
SOURCE = "Greydanus & Kobak, Scaling down deep learning with MNIST-1D, ICML 2024 (test accuracies)"
#: model -> gdyn_jax.models name
MODELS = {"logistic": "logistic", "mlp": "mlp", "cnn": "cnn1d", "gru": "gru"}
#: published test accuracies (fraction)
PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}
LEARNING_RATE, BATCH_SIZE = 1e-2, 100
ATOL = 0.05  # agreement band around the published accuracy (absolute)


@dataclass(frozen=True)
class Settings(Modes):
    steps: int = 6000
    eval_every: int = 500
    seeds: int = 3

    TINY = dict(steps=20, eval_every=10, seeds=2)
    FULL = dict(eval_every=250, seeds=5)


def run(s: Settings, report: Report) -> None:
    curves, accuracy, seconds = {}, {}, {}
    for key, model in MODELS.items():
        start = time.perf_counter()
        config = tr.MNIST1D_MLP | {"model": model, "steps": s.steps, "eval_every": s.eval_every}
        ds = tr.sweep({"learning_rate": [LEARNING_RATE]}, s.seeds, optimizer="adam", **config)
        seconds[key] = time.perf_counter() - start
        curves[key] = ds["test_accuracy"].isel(learning_rate=0)
        accuracy[key] = tr.mean_sd(curves[key].isel(step=-1).values)

    report.text(
        f"Adam, learning rate {LEARNING_RATE}, batch {BATCH_SIZE}; all seeds of a model in one "
        f"vmapped sweep. Agreement: the mean within ±{100 * ATOL:.0f} accuracy points of the "
        "published value."
        + (" Tiny mode trains a few steps: far below the paper." if report.mode == "tiny" else "")
    )
    for key in MODELS:
        quantity = f"{key} test accuracy (%), {tr.pm(accuracy[key], 100)} over {s.seeds} seeds"
        measured, published = 100 * accuracy[key]["mean"], 100 * PUBLISHED[key]
        report.compare(quantity, measured, published, atol=100 * ATOL, label="published")
    report.text(
        "Wall time per model (compilation and all seeds, this machine): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
        + "."
    )
    _figures(report, curves, accuracy)
    report.record(test_accuracy=accuracy, published=PUBLISHED, seconds_per_model=seconds)


def _figures(report: Report, curves: dict, accuracy: dict) -> None:
    caption = "Test accuracy (mean ± sd); dashed: published"
    with report.figure("test_accuracy_curves.png", caption, size=(7, 4.5)) as fig:
        ax = fig.subplots()
        for i, (key, curve) in enumerate(curves.items()):
            plot_mean_band(ax, curve["step"], 100 * curve.values, label=key, color=f"C{i}")
            ax.axhline(100 * PUBLISHED[key], ls="--", lw=1, color=f"C{i}")
        ax.set(xlabel="optimizer step", ylabel="test accuracy (%)", title="MNIST-1D, Adam")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    caption = "Final test accuracy: measured and published"
    with report.figure("test_accuracy_bars.png", caption, size=(6, 4)) as fig:
        ax = fig.subplots()
        mean, sd = ([100 * accuracy[k][m] for k in MODELS] for m in ("mean", "sd"))
        published = [100 * PUBLISHED[k] for k in MODELS]
        plot_bar_pairs(ax, MODELS, mean, published, labels=("measured", "published"), left_err=sd)
        ax.set(ylabel="final test accuracy (%)", ylim=(0, 100))
        ax.legend(loc="upper left")

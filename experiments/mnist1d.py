r"""MNIST-1D test accuracies of the paper's four models (Greydanus & Kobak, ICML 2024).

The paper trains each model with Adam (learning rate :math:`10^{-2}`, batch 100, 6000 steps)
on MNIST-1D (4000 train / 1000 test sequences of length 40) and reports test accuracy:
logistic 32%, MLP 68%, CNN 94%, GRU 91% (human 96%). Here every model is trained the same way
through the sweep engine, several seeds at once in one vmapped program (each seed varies the
initialisation and the batch order), and the accuracies are reported as mean ± sd over seeds
beside the published ones. The wall time of each model's sweep on this machine is recorded.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments import _training as tr
from experiments._report import Report, write_summary

TITLE = "MNIST-1D: logistic / MLP / CNN / GRU test accuracy with Adam (Greydanus & Kobak 2024)"

#: summary key -> gdyn_jax.models name
MODELS = {"logistic": "logistic", "mlp": "mlp", "cnn": "cnn1d", "gru": "gru"}
#: published test accuracies (fraction), Greydanus & Kobak 2024
PUBLISHED = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}
LEARNING_RATE = 1e-2
BATCH_SIZE = 100
SETTINGS = {
    "tiny": {"steps": 20, "eval_every": 10, "seeds": 2},
    "quick": {"steps": 6000, "eval_every": 500, "seeds": 3},
    "full": {"steps": 6000, "eval_every": 250, "seeds": 5},
}
#: agreement band around the published accuracy (absolute, in accuracy units)
ATOL = 0.05


def train_model(model: str, settings: dict) -> tuple[object, float]:
    """The paper's Adam training of one model, all seeds in one sweep; (dataset, seconds)."""
    return tr.sweep(
        {"learning_rate": [LEARNING_RATE]},
        settings["seeds"],
        dataset="mnist1d",
        model=model,
        optimizer="adam",
        loss="cross_entropy",
        steps=settings["steps"],
        batch_size=BATCH_SIZE,
        eval_every=settings["eval_every"],
    )


def _plot_curves(out_dir: pathlib.Path, results: dict) -> str:
    fig, ax = tr.figure(figsize=(7, 4.5))
    for key, (ds, _) in results.items():
        acc = ds["test_accuracy"].isel(learning_rate=0).values  # (seed, step)
        tr.band(ax, ds["step"].values, 100 * acc, label=f"{key} (measured)")
        ax.axhline(100 * PUBLISHED[key], ls="--", lw=1, color=ax.lines[-1].get_color())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MNIST-1D, Adam 1e-2, batch 100: mean ± sd over seeds\n(dashed: published)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return tr.save(fig, out_dir, "test_accuracy_curves.png")


def _plot_bars(out_dir: pathlib.Path, accuracy: dict) -> str:
    fig, ax = tr.figure(figsize=(6, 4))
    keys = list(MODELS)
    x = np.arange(len(keys))
    means = [100 * accuracy[k]["mean"] for k in keys]
    sds = [100 * accuracy[k]["sd"] for k in keys]
    ax.bar(x - 0.2, means, 0.4, yerr=sds, capsize=4, label="measured (mean ± sd)")
    ax.bar(x + 0.2, [100 * PUBLISHED[k] for k in keys], 0.4, label="published")
    ax.set_xticks(x, keys)
    ax.set_xlabel("model")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("MNIST-1D test accuracy: measured vs Greydanus & Kobak 2024")
    ax.legend(loc="upper left")
    return tr.save(fig, out_dir, "test_accuracy_bars.png")


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Trains the four models, writes figures, ``summary.json`` and ``report.md``."""
    out_dir = pathlib.Path(out_dir)
    settings = SETTINGS[mode]
    results = {key: train_model(model, settings) for key, model in MODELS.items()}
    accuracy = {
        key: tr.mean_sd(ds["test_accuracy"].isel(learning_rate=0, step=-1).values)
        for key, (ds, _) in results.items()
    }
    seconds = {key: secs for key, (_, secs) in results.items()}
    figures = [_plot_curves(out_dir, results), _plot_bars(out_dir, accuracy)]

    report = Report(
        TITLE,
        source="Greydanus & Kobak, Scaling down deep learning with MNIST-1D, "
        "ICML 2024 (Table of test accuracies)",
    )
    report.text(
        f"Mode `{mode}`: Adam, learning rate {LEARNING_RATE}, batch {BATCH_SIZE}, "
        f"{settings['steps']} steps, {settings['seeds']} seeds per model in one vmapped sweep "
        f"(seeds vary the initialisation and the batch order). Agreement: measured mean within "
        f"±{100 * ATOL:.0f} accuracy points of the published value."
        + (
            " Tiny mode trains for a few steps only, so accuracies are far below the paper's."
            if mode == "tiny"
            else ""
        )
    )
    for key in MODELS:
        report.compare(
            f"{key} test accuracy (%), mean ± sd over {settings['seeds']} seeds: "
            f"{tr.pm(accuracy[key], 100)}",
            100 * accuracy[key]["mean"],
            100 * PUBLISHED[key],
            atol=100 * ATOL,
        )
    report.text(
        "Wall time per model (compilation + training of all seeds, this machine): "
        + ", ".join(f"{k} {s:.1f} s" for k, s in seconds.items())
        + "."
    )
    report.figure(figures[0], "Test accuracy against steps (mean ± sd band); dashed: published")
    report.figure(figures[1], "Final test accuracy, measured (mean ± sd) and published")
    summary = {
        "mode": mode,
        "settings": {
            **settings,
            "learning_rate": LEARNING_RATE,
            "batch_size": BATCH_SIZE,
            "optimizer": "adam",
        },
        "test_accuracy": accuracy,
        "published": PUBLISHED,
        "seconds": seconds,
        "figures": figures,
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

r"""Optimizer state memory, measured from real optimizer states (Cui 2023, after P. Wirth).

The course paper "Training Deep Neural Networks" (Cui, 2023) tabulates, for a model with
:math:`n` float32 parameters, the optimizer state each method keeps: SGD none, momentum one
vector (4n bytes), AdaGrad and RMSProp one accumulator (~4n), Adam and AdamW two moments
(~8n), LARS one momentum trace (~4n). Here each optimizer from :mod:`gdyn_jax.optimizers` is
initialised on the real parameters of a model from :mod:`gdyn_jax.models`, and the bytes of
its dynamic float leaves (step counts and other bookkeeping excluded through
``optimizers.dynamic_state_mask``) are divided by the number of parameters;
``optimizers.state_bytes_per_param`` must give the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from experiments._harness import Modes, Report
from gdyn_jax import models, optimizers
from gdyn_jax.plotting import plot_bar_pairs

TITLE = "Optimizer state memory per parameter, measured from real states (Cui 2023 table)"
SOURCE = "Cui 2023, 'Training Deep Neural Networks' (optimizer table, after P. Wirth)"
#: published state memory, bytes per float32 parameter, and the table's label ('~': about)
PUBLISHED = {
    "sgd": (0.0, "0"),
    "momentum": (4.0, "4n"),
    "adagrad": (4.0, "~4n"),
    "rmsprop": (4.0, "~4n"),
    "adam": (8.0, "~8n"),
    "adamw": (8.0, "~8n"),
    "lars": (4.0, "~4n"),
}


@dataclass(frozen=True)
class Settings(Modes):
    model: str = "mlp"

    TINY = dict(model="logistic")


def measure(name: str, params) -> dict:
    """Dynamic-state bytes per parameter of optimizer ``name`` initialised on ``params``."""
    defaults = optimizers.hyperparameters(name)
    kwargs = {k: (0.01 if v is None else v) for k, v in defaults.items()}
    state = optimizers.get(name)(**kwargs).init(params)
    flags = jax.tree.leaves(optimizers.dynamic_state_mask(state))
    nbytes = [int(np.asarray(x).nbytes) for x in jax.tree.leaves(state)]
    dynamic = sum(b for b, keep in zip(nbytes, flags, strict=True) if keep)
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {
        "optimizer": name,
        "num_params": n,
        "state_bytes": dynamic,
        "bookkeeping_bytes": sum(nbytes) - dynamic,
        "bytes_per_param": dynamic / n,
        "library_bytes_per_param": float(optimizers.state_bytes_per_param(name)),
        "hyperparameters": sorted(defaults),
    }


def run(s: Settings, report: Report) -> None:
    model = models.get(s.model, num_classes=10)
    params = model.init(jax.random.key(0), jnp.zeros((1, 40), jnp.float32))
    rows = [measure(name, params) for name in PUBLISHED]
    n = rows[0]["num_params"]
    report.text(
        f"Model `{s.model}` (gdyn_jax.models) on MNIST-1D inputs, n = {n} float32 parameters. "
        "Measured: the bytes of the state's dynamic leaves (moments, traces, accumulators) / n. "
        "The paper's '~' entries ignore O(1) counters: they agree within 0.5 byte per parameter."
    )
    for row in rows:
        name = row["optimizer"]
        published, label = PUBLISHED[name]
        measured, atol = row["bytes_per_param"], 0.5 if label.startswith("~") else 0.0
        quantity = f"{name}: state bytes per parameter"
        report.compare(quantity, measured, published, atol=atol, label=f"published {label}")
        quantity, library = f"{name}: library state_bytes_per_param", row["library_bytes_per_param"]
        report.compare(quantity, library, measured, atol=1e-6, label="measured")
    report.text(
        "Tunable numeric hyperparameters (`optimizers.hyperparameters`; the paper counts only "
        "the commonly tuned ones, so these are listed, not scored):"
    )
    table = [
        (r["optimizer"], ", ".join(r["hyperparameters"]), len(r["hyperparameters"])) for r in rows
    ]
    report.table(("optimizer", "hyperparameters", "count"), table)
    with report.figure("state_memory.png", "Optimizer state per parameter", (7, 3.6)) as fig:
        ax = fig.subplots()
        names = [r["optimizer"] for r in rows]
        measured, published = [r["bytes_per_param"] for r in rows], [PUBLISHED[k][0] for k in names]
        plot_bar_pairs(ax, names, measured, published, labels=("measured", "published"))
        ax.set(ylabel="state bytes per parameter", title=f"float32 model, n = {n}")
        ax.legend()
    report.record(model=s.model, num_params=n, optimizers=rows)

r"""Optimizer state memory, measured from real optimizer states (Cui 2023, after P. Wirth).

The course paper "Training Deep Neural Networks" (Cui, 2023) tabulates, for a model with
:math:`n` float32 parameters, the optimizer state each method keeps: SGD none, momentum one
vector (4n bytes), AdaGrad and RMSProp one accumulator (~4n), Adam and AdamW two moments
(~8n), LARS one momentum trace (~4n). Here the states are *measured*: each optimizer from
:mod:`gdyn_jax.optimizers` is initialised on the real parameters of a model from
:mod:`gdyn_jax.models`, and the bytes of its dynamic float leaves (bookkeeping such as step
counts excluded through ``optimizers.dynamic_state_mask``) are divided by the number of
parameters. ``optimizers.state_bytes_per_param`` gives the same number from the library.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._report import Report, save_figure, write_summary

TITLE = "Optimizer state memory per parameter, measured from real states (Cui 2023 table)"

# Published state memory in bytes per float32 parameter (Cui 2023, after P. Wirth's guide).
PUBLISHED_BYTES = {
    "sgd": 0.0,
    "momentum": 4.0,
    "adagrad": 4.0,
    "rmsprop": 4.0,
    "adam": 8.0,
    "adamw": 8.0,
    "lars": 4.0,
}
# Label as printed in the table ("~" where the paper says approximately).
PUBLISHED_LABEL = {
    "sgd": "0",
    "momentum": "4n",
    "adagrad": "~4n",
    "rmsprop": "~4n",
    "adam": "~8n",
    "adamw": "~8n",
    "lars": "~4n",
}
MODELS = {"tiny": "logistic", "quick": "mlp", "full": "mlp"}


def _model_params(model_name: str):
    import jax
    import jax.numpy as jnp

    from gdyn_jax import models

    model = models.get(model_name, num_classes=10)
    return model.init(jax.random.key(0), jnp.zeros((1, 40), jnp.float32))


def _measure(name: str, params) -> dict:
    """Dynamic-state bytes per parameter of optimizer ``name`` initialised on ``params``."""
    import jax

    from gdyn_jax import optimizers

    defaults = optimizers.hyperparameters(name)
    kwargs = {k: (0.01 if v is None else v) for k, v in defaults.items()}
    state = optimizers.get(name)(**kwargs).init(params)
    mask = optimizers.dynamic_state_mask(state)
    leaves = jax.tree.leaves(state)
    flags = jax.tree.leaves(mask)
    dynamic = sum(int(np.asarray(x).nbytes) for x, keep in zip(leaves, flags, strict=True) if keep)
    total = sum(int(np.asarray(x).nbytes) for x in leaves)
    n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    return {
        "optimizer": name,
        "num_params": n,
        "state_bytes": dynamic,
        "bookkeeping_bytes": total - dynamic,
        "bytes_per_param": dynamic / n,
        "library_bytes_per_param": float(optimizers.state_bytes_per_param(name)),
        "hyperparameters": sorted(defaults),
        "num_hyperparameters": len(defaults),
    }


def _plot(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["optimizer"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(x - 0.2, [r["bytes_per_param"] for r in rows], 0.4, label="measured (real state)")
    ax.bar(x + 0.2, [PUBLISHED_BYTES[n] for n in names], 0.4, label="published (Cui 2023)")
    ax.set_xticks(x, names)
    ax.set_ylabel("optimizer state (bytes per parameter)")
    ax.set_xlabel("optimizer")
    ax.set_title(f"Optimizer state memory, float32 {rows[0]['num_params']}-parameter model")
    ax.legend()
    save_figure(fig, path)


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Measure each optimizer's state size on a real model and compare with the table."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = MODELS[mode]
    params = _model_params(model_name)
    rows = [_measure(name, params) for name in PUBLISHED_BYTES]

    report = Report(TITLE, source="Cui 2023, 'Training Deep Neural Networks' (optimizer table)")
    report.text(
        f"Model: `{model_name}` from gdyn_jax.models on MNIST-1D inputs, "
        f"n = {rows[0]['num_params']} float32 parameters. Measured = bytes of the optimizer "
        "state's dynamic leaves (moments, traces, accumulators; step counts and other "
        "bookkeeping excluded) divided by n. The '~' entries are approximate in the paper "
        "(they ignore O(1) counters), so they agree within 0.5 byte per parameter."
    )
    for row in rows:
        name = row["optimizer"]
        report.compare(
            f"{name}: state bytes per parameter (bytes / n)",
            row["bytes_per_param"],
            PUBLISHED_BYTES[name],
            atol=0.5 if PUBLISHED_LABEL[name].startswith("~") else 1e-9,
            expected_label=f"{PUBLISHED_LABEL[name]} bytes",
        )
        report.compare(
            f"{name}: library state_bytes_per_param vs measured",
            row["library_bytes_per_param"],
            row["bytes_per_param"],
            atol=1e-6,
        )
    table = ["| optimizer | tunable hyperparameters | count |", "|---|---|---|"]
    table += [
        f"| {r['optimizer']} | {', '.join(r['hyperparameters'])} | {r['num_hyperparameters']} |"
        for r in rows
    ]
    report.text(
        "Tunable numeric hyperparameters (from `optimizers.hyperparameters`; the paper's "
        "counts include only the commonly tuned ones, so these are listed, not compared):\n\n"
        + "\n".join(table)
    )
    _plot(rows, out_dir / "state_memory.png")
    report.figure("state_memory.png", "Measured and published optimizer state per parameter")
    summary = {
        "model": model_name,
        "num_params": rows[0]["num_params"],
        "optimizers": rows,
        "published_bytes_per_param": PUBLISHED_BYTES,
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

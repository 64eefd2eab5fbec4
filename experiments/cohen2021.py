r"""Edge of stability: full-batch sharpness settles at the optimizer's stability limit.

Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically occurs at
the edge of stability", ICLR 2021. With full-batch gradient descent on a network, the
sharpness :math:`\lambda_{\max}(\nabla^2 L)` rises during training (progressive sharpening)
until it reaches the largest curvature the update rule is stable on, then hovers there while
the loss keeps decreasing non-monotonically. That limit is the loop's stability boundary on a
one-dimensional quadratic, computed here by ``gdyn_jax.linearize.max_stable_curvature``
(never a hand-written formula):

.. math::
    \text{GD: } \frac{2}{a}, \qquad \text{heavy ball: } \frac{2+2\beta}{a}, \qquad
    \text{Nesterov: } \frac{2+2\beta}{(1+2\beta)\,a}.

Each optimizer is run at learning rates chosen so that its limits take given target values
(``a = max_stable_curvature(opt(a=1))/target``, the limit scaling as ``1/a``), with the
square loss on one-hot targets, full batch, the paper's fully connected tanh network on the
first examples of MNIST-1D (quick) or CIFAR-10 (full, when prepared), and the sweep engine's
Lanczos sharpness on the same examples. The summary
sets the final sharpness (median over the last quarter of training) beside the limit.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments import _training as tr
from experiments._report import Report, write_summary

TITLE = "Edge of stability: sharpness hovers at max_stable_curvature for GD, heavy ball, Nesterov"

#: summary name -> (gdyn_jax.optimizers name, fixed hyperparameters)
OPTIMIZERS = {
    "gd": ("sgd", {}),
    "momentum": ("momentum", {"beta": 0.9}),
    "nesterov": ("nesterov", {"beta": 0.9}),
}
SETTINGS = {
    "tiny": {
        "targets": [20.0],
        "steps": 20,
        "eval_every": 10,
        "train_subset": 200,
        "sharpness_iters": 5,
        "seeds": 1,
        "widths": (32, 32),
        "dataset": "mnist1d",
    },
    "quick": {
        # GD sharpens slowest per step, so it gets the larger steps (lower limits); heavy ball
        # at limit 20 (a = 0.19) is thrown out of the basin on this network, so the momentum
        # methods use 30 and 40.
        "targets": {"gd": [20.0, 30.0], "momentum": [30.0, 40.0], "nesterov": [30.0, 40.0]},
        "steps": 4000,
        "eval_every": 100,
        "train_subset": 1000,
        "sharpness_iters": 20,
        "seeds": 1,
        "widths": (200, 200),
        "dataset": "mnist1d",
    },
    "full": {
        "targets": {"gd": [20.0, 30.0], "momentum": [30.0, 40.0], "nesterov": [30.0, 40.0]},
        "steps": 10000,
        "eval_every": 100,
        "train_subset": 5000,
        "sharpness_iters": 20,
        "seeds": 2,
        "widths": (200, 200),
        "dataset": "cifar10",  # the paper's setting; MNIST-1D when CIFAR-10 is not prepared
    },
}
#: agreement band on final_sharpness / threshold
RTOL = 0.1


def threshold(optimizer: str, learning_rate: float, beta: float | None) -> float:
    """The stability limit of ``optimizer`` from ``linearize.max_stable_curvature``."""
    from gdyn_jax import linearize, optimizers

    name, fixed = OPTIMIZERS[optimizer]
    hp = {"beta": beta} if beta is not None else {}
    return float(linearize.max_stable_curvature(optimizers.get(name)(learning_rate, **hp)))


def learning_rates(optimizer: str, targets: list[float]) -> list[float]:
    r"""Learning rates whose stability limits equal ``targets``: the limit is :math:`c/a`."""
    beta = OPTIMIZERS[optimizer][1].get("beta")
    unit = threshold(optimizer, 1.0, beta)
    return [unit / t for t in targets]


def final_sharpness(curve: np.ndarray) -> float:
    """Median of the finite sharpness values over the last quarter of the eval points."""
    tail = np.asarray(curve, float)[-max(2, len(curve) // 4) :]
    tail = tail[np.isfinite(tail)]
    return float(np.median(tail)) if tail.size else float("nan")


def _sweep(optimizer: str, lrs: list[float], settings: dict):
    name, fixed = OPTIMIZERS[optimizer]
    return tr.sweep(
        {"learning_rate": lrs},
        settings["seeds"],
        dataset=settings["dataset"],
        model="fc",
        model_kwargs={"widths": settings["widths"], "activation": "tanh"},
        optimizer=name,
        loss="mse",
        batch_size=None,
        steps=settings["steps"],
        eval_every=settings["eval_every"],
        hparams=fixed,
        train_subset=settings["train_subset"],
        track_sharpness=True,
        sharpness_subset=settings["train_subset"],
        sharpness_iters=settings["sharpness_iters"],
    )


def _plot(out_dir: pathlib.Path, results: dict, runs: list[dict]) -> str:
    fig, axes = tr.figure(2, 3, figsize=(14, 7.5), sharex=True)
    for col, (optimizer, (ds, _)) in enumerate(results.items()):
        steps = ds["step"].values
        for i, lr in enumerate(ds["learning_rate"].values):
            run = next(
                r
                for r in runs
                if r["optimizer"] == optimizer and np.isclose(r["learning_rate"], lr)
            )
            sharp = ds["sharpness"].isel(learning_rate=i).values
            loss = ds["train_loss"].isel(learning_rate=i).values
            (line,) = axes[0, col].plot(steps, sharp[0], label=f"a = {lr:.4g}")
            for s in range(1, sharp.shape[0]):
                axes[0, col].plot(steps, sharp[s], color=line.get_color(), alpha=0.5)
            axes[0, col].axhline(
                run["threshold"],
                ls="--",
                color=line.get_color(),
                label=f"limit {run['threshold']:.3g} (linearize)",
            )
            axes[1, col].semilogy(steps, loss.T, color=line.get_color())
        beta = OPTIMIZERS[optimizer][1].get("beta")
        label = optimizer + (f", β = {beta}" if beta is not None else "")
        axes[0, col].set_title(f"{label}: sharpness")
        axes[0, col].set_ylabel("top Hessian eigenvalue (1/parameter²)")
        axes[0, col].legend(fontsize=8)
        axes[0, col].grid(alpha=0.3)
        axes[1, col].set_title(f"{label}: full-batch train loss")
        axes[1, col].set_xlabel("optimizer step")
        axes[1, col].set_ylabel("square loss")
        axes[1, col].grid(alpha=0.3)
    fig.suptitle(
        "Full-batch training, square loss, fc-tanh: sharpness hovers at the "
        "stability limit (dashed)"
    )
    return tr.save(fig, out_dir, "sharpness.png")


def _available(settings: dict) -> dict:
    """``settings`` with MNIST-1D in place of a dataset that is not prepared here."""
    from gdyn_jax import data

    try:
        data.load(settings["dataset"], "test[:1]")
    except FileNotFoundError:
        return {**settings, "dataset": "mnist1d", "train_subset": 4000}
    return settings


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Runs the three full-batch sweeps; writes ``sharpness.png``, summary and report."""
    out_dir = pathlib.Path(out_dir)
    settings = _available(SETTINGS[mode])
    results, runs = {}, []
    for optimizer in OPTIMIZERS:
        targets = settings["targets"]
        lrs = learning_rates(
            optimizer, targets[optimizer] if isinstance(targets, dict) else targets
        )
        results[optimizer] = _sweep(optimizer, lrs, settings)
        ds = results[optimizer][0]
        beta = OPTIMIZERS[optimizer][1].get("beta")
        for i, lr in enumerate(ds["learning_rate"].values):
            sharp = ds["sharpness"].isel(learning_rate=i).values  # (seed, step)
            finals = [final_sharpness(s) for s in sharp]
            limit = threshold(optimizer, float(lr), beta)
            final = float(np.nanmean(finals))
            runs.append(
                {
                    "optimizer": optimizer,
                    "learning_rate": float(lr),
                    "beta": beta,
                    "threshold": limit,
                    "final_sharpness": final,
                    "ratio": final / limit,
                    "initial_sharpness": float(np.nanmean(sharp[:, 0])),
                    "max_sharpness": float(np.nanmax(sharp)) if np.isfinite(sharp).any() else None,
                    "diverged": bool((ds["diverged_at"].isel(learning_rate=i).values >= 0).any()),
                }
            )
    figure = _plot(out_dir, results, runs)

    report = Report(
        TITLE,
        source="Cohen et al., ICLR 2021 (Figs. 1, 2 and the momentum "
        "appendix); limits from gdyn_jax.linearize.max_stable_curvature",
    )
    report.text(
        f"Mode `{mode}`: {settings['dataset']}, first {settings['train_subset']} training "
        f"examples, the paper's fully connected tanh network (model `fc`, widths "
        f"{'-'.join(map(str, settings['widths']))}), square loss on one-hot targets, full batch, "
        f"{settings['steps']} steps, sharpness by {settings['sharpness_iters']} Lanczos "
        f"iterations on the same examples every {settings['eval_every']} steps. Final "
        f"sharpness = median over the last quarter of training. Agreement: ratio to the limit "
        f"within ±{100 * RTOL:.0f}%."
        + (
            " Tiny mode is far too short for sharpening; its rows only exercise the pipeline."
            if mode == "tiny"
            else ""
        )
        + (
            " The paper's setting is CIFAR-10 (first 5000 images); the full mode uses it when "
            "CIFAR-10 is prepared in the data dir."
            if settings["dataset"] != "cifar10"
            else ""
        )
    )
    for r in runs:
        beta = f", β={r['beta']}" if r["beta"] is not None else ""
        report.compare(
            f"{r['optimizer']} a={r['learning_rate']:.4g}{beta}: final sharpness "
            f"(limit ratio {r['ratio']:.3f})",
            r["final_sharpness"],
            r["threshold"],
            rtol=RTOL,
        )
    report.figure(
        figure,
        "Sharpness (top) and train loss (bottom) against steps; dashed: "
        "max_stable_curvature of each optimizer at each learning rate",
    )
    summary = {
        "mode": mode,
        "settings": settings,
        "runs": runs,
        "seconds": {k: secs for k, (_, secs) in results.items()},
        "figures": [figure],
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

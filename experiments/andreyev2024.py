r"""The edge of stochastic stability: mini-batch SGD holds the *batch sharpness* at 2/η.

Andreyev & Beneventano, "Edge of Stochastic Stability: Revisiting the Edge of Stability for
SGD", arXiv:2412.20553. Full-batch gradient descent trains at the edge of stability, its
sharpness :math:`\lambda_{\max}` at :math:`2/\eta` (Cohen et al. 2021, ``cohen2021``). Under
mini-batch SGD what settles at :math:`2/\eta` is the batch sharpness

.. math::
    \mathrm{BS} = \mathbb{E}_B\!\left[\frac{g_B^\top H_B\, g_B}{\|g_B\|^2}\right],

the curvature of a mini-batch loss along its own gradient, while :math:`\lambda_{\max}` of the
full loss settles *below* :math:`2/\eta`, the lower the smaller the batch.

SGD at one step size trains an MNIST-1D tanh MLP (square loss) at several batch sizes up to the
full batch, through the sweep engine with ``track_sharpness`` and ``track_batch_sharpness``
(16 random mini-batches of the training batch size at each evaluation; :math:`\lambda_{\max}`
of the full training set the batches are drawn from, the same mean loss). Each batch size
trains for the same number of epochs, as many as the smallest batch needs for its batch
sharpness to plateau (the paper trains until it does): measured here at
:math:`\eta = 0.5`, batch 16 is still rising at 20,000 steps (320 epochs, 0.81) and
has plateaued by 60,000. Scored: the median over the last quarter of training of
:math:`\mathrm{BS}\cdot\eta/2` within ±10 % of 1 at every batch size;
:math:`\lambda_{\max}\cdot\eta/2` below it at every mini-batch size (not at the full batch,
where the batch sharpness is a Rayleigh quotient of the same Hessian and can only reach
:math:`\lambda_{\max}` from below); and :math:`\lambda_{\max}\cdot\eta/2` lower the smaller
the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments import _training as tr
from experiments._harness import Modes, Report

TITLE = "Edge of stochastic stability: SGD's batch sharpness settles at 2/eta, lambda_max below"
SOURCE = "Andreyev & Beneventano, arXiv:2412.20553 (2024)"
RTOL = 0.1  # the band on batch sharpness * eta / 2 around 1


@dataclass(frozen=True)
class Settings(Modes):
    learning_rate: float = 0.5
    batch_sizes: tuple[int, ...] = (16, 64, 256, 1000)  # 1000 = the full training set
    examples: int = 1000
    widths: tuple[int, ...] = (32, 32)
    epochs: int = 1000  # per batch size: 62,500 steps at batch 16, 1,000 at the full batch
    evals: int = 40  # evaluations per run
    sharpness_iters: int = 20
    seeds: int = 1

    TINY = dict(batch_sizes=(16, 64), examples=64, widths=(8,), epochs=5, evals=5)
    FULL = dict(epochs=2000, seeds=2, batch_sizes=(16, 32, 64, 128, 256, 1000))


def steps_for(s: Settings, batch: int) -> int:
    """``s.epochs`` epochs at ``batch``, rounded up to a multiple of ``s.evals``."""
    per_epoch = -(-s.examples // min(batch, s.examples))
    return s.evals * -(-(s.epochs * per_epoch) // s.evals)


def settled(curve: np.ndarray) -> float:
    """Median of the finite values over the last quarter of the evaluation points."""
    tail = np.asarray(curve, float)[..., -max(2, curve.shape[-1] // 4) :]
    return float(np.median(tail[np.isfinite(tail)])) if np.isfinite(tail).any() else np.nan


def run(s: Settings, report: Report) -> None:
    rows, curves = [], {}
    for batch in sorted(s.batch_sizes):
        setup = tr.full_batch_fc(s.widths, s.examples, s.sharpness_iters)
        setup["batch_size"] = None if batch >= s.examples else batch
        ds = tr.sweep(
            {"learning_rate": [s.learning_rate]},
            s.seeds,
            optimizer="sgd",
            steps=steps_for(s, batch),
            eval_every=steps_for(s, batch) // s.evals,
            track_sharpness=True,
            track_batch_sharpness=True,
            **setup,
        )
        half = s.learning_rate / 2  # eta / 2: the scale at which the edge is 1
        sharp = half * ds["sharpness"].isel(learning_rate=0).values  # (seed, step)
        batch_sharp = half * ds["batch_sharpness"].isel(learning_rate=0).values
        epochs = ds["step"].values * min(batch, s.examples) / s.examples
        curves[batch] = (epochs, sharp, batch_sharp, ds["train_loss"].values)
        rows.append(
            {
                "batch_size": batch,
                "steps": steps_for(s, batch),
                "batch_sharpness": settled(batch_sharp),
                "sharpness": settled(sharp),
                "diverged": bool((ds["diverged_at"] >= 0).any()),
            }
        )
    report.text(
        f"MNIST-1D, first {s.examples} training examples, fully connected tanh network (widths "
        f"{s.widths}), square loss, SGD with eta = {s.learning_rate} for {s.epochs} epochs at "
        f"batch sizes {s.batch_sizes} ({s.examples} = full batch), {s.seeds} seed(s). Both "
        "sharpnesses are scaled by eta/2, so that the edge of stability is 1; 'settled' is the "
        "median over the last quarter of the evaluations."
        + (" Tiny mode is far too short to sharpen." if report.mode == "tiny" else "")
    )
    report.table(
        ["batch size", "steps", "BS·η/2 settled", "λ_max·η/2 settled", "diverged"],
        [
            [r["batch_size"], r["steps"], r["batch_sharpness"], r["sharpness"], r["diverged"]]
            for r in rows
        ],
    )
    for r in rows:
        b = r["batch_size"]
        report.compare(
            f"batch {b}: batch sharpness · η/2", r["batch_sharpness"], 1.0, rtol=RTOL,
            label="edge of stochastic stability",
        )  # fmt: skip
        if b < s.examples:  # at the full batch BS <= lambda_max (a Rayleigh quotient)
            report.bound(
                f"batch {b}: λ_max · η/2 − batch sharpness · η/2",
                r["sharpness"] - r["batch_sharpness"],
                upper=0.0,
                label="λ_max below",
            )
    lam = [r["sharpness"] for r in rows]  # in increasing batch size
    report.bound(
        "largest drop of λ_max · η/2 from one batch size to the next larger",
        max(np.subtract(lam[:-1], lam[1:]), default=np.nan),
        upper=0.0,
        label="lower the smaller the batch",
    )
    _figure(report, curves)
    report.record(rows=rows)


def _figure(report: Report, curves: dict) -> None:
    caption = (
        "Batch sharpness (solid) and λ_max (dashed), both times η/2, against the epoch, one "
        "colour per batch size; the edge of stability at 1"
    )
    with report.figure("batch_sharpness.png", caption, (8, 5)) as fig:
        ax = fig.subplots()
        for i, (batch, (epochs, sharp, batch_sharp, _)) in enumerate(curves.items()):
            ax.plot(epochs, batch_sharp.T, f"C{i}", label=f"batch {batch}")
            ax.plot(epochs, sharp.T, f"C{i}", ls="--")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(xlabel="epoch", ylabel="sharpness · η/2")
        ax.legend(fontsize=8)

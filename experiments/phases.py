r"""Pre-flight: the phase of every learning rate predicted at init, checked against training.

Lewkowycz et al. (2020) describe the phases of gradient descent by the learning rate
:math:`\eta` against the initial sharpness :math:`\lambda_0`: lazy below :math:`2/\lambda_0`, a
catapult above it (the loss spikes, the sharpness falls, training goes on), divergence beyond
(about :math:`4/\lambda_0` for their two-layer networks); Cohen et al. (2021) add progressive
sharpening up to the edge of stability. ``gdyn_jax.predictions.preflight`` predicts the phase
of every (rate, seed) of a sweep from the rule's loop (``linearize``) and a few numbers
measured at the seed's initialisation, in seconds: :math:`\lambda_0` (the batch sharpness for
mini-batches, preconditioned for Adam), the cubic and quartic behaviour of the loss along
the top eigenvector (a second-order model of whether the oscillation lowers the sharpness,
a catapult, or raises it, divergence), and the divergence edge probed by runs of the rule
at bracketed rates (``gdyn_jax.predictions.probe``), which makes the call. The grid spans a
fixed range around the naive limit, widened to a factor 4 either side of the probed edge
(``_phases.covering``). This experiment trains the same grid and scores the calls against
the naive rule (divergent iff :math:`\eta` exceeds the limit at :math:`\lambda_0`) and the
learning-rate range test (Smith 2017; fastai's ``lr_find``); the second-order model's
boundary is reported beside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments import _phases
from experiments._harness import Modes, Report
from gdyn_jax.predictions import measure_init
from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.probe import ROUNDS
from gdyn_jax.sweep import SweepConfig, assemble

TITLE = "Pre-flight: stable / catapult / edge of stability / divergent, predicted at init"
SOURCE = (
    "Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari, arXiv:2003.02218, 2020; Cohen et al., "
    "ICLR 2021; Smith, WACV 2017"
)
#: the done-when targets of the issue
CALL_TARGET = 0.90
BOUNDARY_TOLERANCE = 0.15


@dataclass(frozen=True)
class Settings(Modes):
    models: tuple[str, ...] = ("mlp",)
    losses: tuple[str, ...] = ("mse",)
    batch_sizes: tuple[int | None, ...] = (None,)
    optimizers: tuple[str, ...] = ("sgd", "heavy ball")
    rates: int = 8
    span: tuple[float, float] = (0.3, 30.0)  # rates from span[0] to span[1] x the naive limit
    seeds: int = 2
    steps: int = 60
    eval_every: int = 2
    train_subset: int | None = 1000
    examples: int | None = None  # examples of the measurements (None: the training set)
    iters: int = 20
    range_steps: int = 100
    rounds: int = 1
    extra_rates: int = 2
    probe_steps: int | None = None  # the probe's runs (predictions.probe): None, the run's
    probe_rounds: int = ROUNDS  # length; 0: the second-order model decides
    track_sharpness: bool = False  # needed to measure the edge of stability

    TINY = dict(
        rates=4,
        seeds=1,
        steps=10,
        train_subset=200,
        optimizers=("sgd",),
        range_steps=20,
        rounds=0,
        iters=8,
        probe_steps=8,
        probe_rounds=3,
    )
    FULL = dict(
        models=("mlp", "cnn1d"),
        losses=("mse", "cross_entropy"),
        batch_sizes=(None, 100),
        optimizers=("sgd", "heavy ball", "nesterov", "adam"),
        rates=40,
        seeds=8,
        steps=200,
        eval_every=5,
        train_subset=None,
        rounds=1,
        extra_rates=4,
        track_sharpness=True,
    )


def config_of(s: Settings, model: str, loss: str, batch: int | None, name: str) -> SweepConfig:
    optimizer, fixed = _phases.OPTIMIZERS[name]
    return SweepConfig(
        dataset="mnist1d",
        model=model,
        loss=loss,
        optimizer=optimizer,
        hparams=fixed,
        steps=s.steps,
        eval_every=s.eval_every,
        batch_size=batch,
        train_subset=s.train_subset,
        track_sharpness=s.track_sharpness,
    )


def run(s: Settings, report: Report) -> None:
    cases = []
    for model in s.models:
        for loss in s.losses:
            for batch in s.batch_sizes:
                shared = None
                for name in s.optimizers:
                    config = config_of(s, model, loss, batch, name)
                    if shared is None and name != "adam":
                        shared = measure_init(
                            assemble(config, {"learning_rate": [1.0]}),
                            s.seeds,
                            examples=s.examples,
                            iters=s.iters,
                        )
                    case = _phases.run_case(config, s, None if name == "adam" else shared)
                    case.update(model=model, loss=loss, batch=batch or "full", optimizer=name)
                    cases.append(case)
    score(report, s, cases)
    figures(report, cases)
    report.record(cases=[summary(c) for c in cases])


def summary(case: dict) -> dict:
    keys = (
        "model",
        "loss",
        "batch",
        "optimizer",
        "boundary",
        "predicted_boundary",
        "model_boundary",
        "naive_boundary",
        "range_boundary",
        "scores",
        "pairs_scored",
        "probed_up_to",
        "seconds",
    )
    return {k: case[k] for k in keys} | {
        "lrs": case["lrs"],
        "predicted": case["preflight"].phase.tolist(),
        "measured": np.asarray(ph.MEASURED_PHASES)[case["measured"]].tolist(),
    }


def score(report: Report, s: Settings, cases: list) -> None:
    report.text(
        f"MNIST-1D, {s.rates} learning rates from {s.span[0]} to {s.span[1]} times the naive "
        f"limit of each case (the rate at which the rule's limit equals the curvature at init) "
        f"× {s.seeds} seeds, {s.steps} steps; models {s.models}, losses {s.losses}, batches "
        f"{s.batch_sizes} (None = full batch), train subset {s.train_subset}. Scored: the "
        f"divergent / not-divergent call on the (rate, seed) pairs within a factor "
        f"{_phases.WINDOW:g} of the measured boundary (half the seeds diverged, refined by "
        f"{s.rounds} round(s) of {s.extra_rates} extra rates)."
    )
    rows = []
    for c in cases:
        label = f"{c['model']}/{c['loss']}/{c['batch']}/{c['optimizer']}"
        sc = c["scores"]
        rows.append(
            [
                label,
                c["pairs_scored"],
                *(f"{sc[k]:.2f}" for k in sc),
                f"{c['boundary']:.4g}",
                f"{c['predicted_boundary']:.4g}",
                f"{c['model_boundary']:.4g}",
                f"{c['naive_boundary']:.4g}",
                f"{c['range_boundary']:.4g}",
            ]
        )
        if not np.isfinite(c["boundary"]) and not np.isfinite(c["predicted_boundary"]):
            report.text(
                f"{label}: no seed diverged at any rate of the sweep (up to η = "
                f"{c['lrs'][-1]:.4g}), and the probe found none up to η = "
                f"{c['probed_up_to']:.4g}: no boundary to score."
            )
            continue
        report.bound(
            f"{label}: pre-flight call right near the boundary",
            sc["preflight"],
            lower=CALL_TARGET,
            label="issue's target",
        )
        error = abs(c["predicted_boundary"] / c["boundary"] - 1)
        report.bound(
            f"{label}: predicted boundary, relative error in η",
            error,
            upper=BOUNDARY_TOLERANCE,
            label="issue's target",
        )
    report.table(
        [
            "case",
            "pairs",
            "pre-flight",
            "naive",
            "range test",
            "measured η*",
            "predicted η*",
            "2nd-order model η*",
            "naive η*",
            "range test η*",
        ],
        rows,
    )
    _confusion(report, cases)
    cost = [
        [
            c["optimizer"],
            f"{c['seconds']['preflight']:.2f}",
            f"{c['seconds']['probe']:.2f}",
            f"{c['seconds']['preflight_compile']:.1f}",
            f"{c['seconds']['range_test']:.2f}",
            f"{c['seconds']['sweep']:.1f}",
        ]
        for c in cases
    ]
    report.table(
        ["optimizer", "pre-flight s", "of it, probe s", "compile s", "range test s", "sweep s"],
        cost,
    )


def _confusion(report: Report, cases: list) -> None:
    """Confusion of predicted against measured phases per optimizer, and the precision and
    recall of the catapult and edge-of-stability calls."""
    for name in dict.fromkeys(c["optimizer"] for c in cases):
        pred = np.concatenate(
            [c["preflight"].phase.ravel() for c in cases if c["optimizer"] == name]
        )
        meas = np.concatenate(
            [
                np.asarray(ph.MEASURED_PHASES)[c["measured"]].ravel()
                for c in cases
                if c["optimizer"] == name
            ]
        )
        rows = [
            [p] + [int(np.sum((pred == p) & (meas == m))) for m in ph.MEASURED_PHASES]
            for p in ph.PHASES
        ]
        report.table([f"{name}: predicted \\ measured", *ph.MEASURED_PHASES], rows)
        for phase in ("catapult", "edge of stability"):
            hit = np.sum((pred == phase) & (meas == phase))
            precision = hit / max(np.sum(pred == phase), 1)
            recall = hit / max(np.sum(meas == phase), 1)
            report.text(
                f"{name}, {phase}: precision {precision:.2f}, recall {recall:.2f} "
                f"({int(np.sum(pred == phase))} predicted, {int(np.sum(meas == phase))} "
                "measured)."
            )


COLOURS = ("tab:green", "tab:olive", "tab:orange", "tab:red", "tab:purple", "tab:gray")
LINES = (
    ("boundary", "k", "-", "measured"),
    ("predicted_boundary", "b", "--", "pre-flight"),
    ("naive_boundary", "b", ":", "naive limit"),
    ("range_boundary", "m", "-.", "range test"),
)


def figures(report: Report, cases: list) -> None:
    caption = "Phase per rate and seed: measured (upper rows) and predicted (lower rows)"
    with report.figure("phase_maps.png", caption, (8, 1.5 + 1.3 * len(cases))) as fig:
        axes = fig.subplots(len(cases), 1, squeeze=False)[:, 0]
        names = ph.MEASURED_PHASES + ("unknown",)
        for ax, c in zip(axes, cases, strict=True):
            pred = np.vectorize(names.index)(c["preflight"].phase)
            seeds = pred.shape[1]
            for row, codes in enumerate(np.concatenate([pred, c["measured"]], axis=1).T):
                colours = [COLOURS[k] for k in codes]
                ax.scatter(c["lrs"], np.full(len(codes), row), c=colours, s=25, marker="s")
            for key, colour, style, label in LINES:
                if np.isfinite(c[key]):
                    ax.axvline(c[key], color=colour, ls=style, lw=1.2, label=label)
            ax.axhline(seeds - 0.5, color="0.7", lw=0.8)
            ax.set(xscale="log", yticks=[(seeds - 1) / 2, seeds + (seeds - 1) / 2])
            ax.set_yticklabels(["predicted", "measured"], fontsize=7)
            ax.set_title(
                f"{c['model']} / {c['loss']} / batch {c['batch']} / {c['optimizer']}", fontsize=8
            )
        for k, name in enumerate(names):
            axes[0].scatter([], [], c=COLOURS[k], marker="s", label=name)
        axes[0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes[-1].set_xlabel("learning rate")

r"""Central flows: the averaged trajectory at the edge of stability, for GD, heavy ball, Nesterov.

Cohen, Damian, Talwalkar, Kolter, Lee, "Understanding Optimization in Deep Learning with
Central Flows", ICLR 2025. At the edge of stability the loss of full-batch gradient descent
oscillates; its average over the oscillation follows the *central flow*
:math:`\dot w = -\eta_{\text{eff}}[\nabla L + \tfrac12\nabla\langle\Sigma,\nabla^2 L\rangle]`,
with :math:`\Sigma` the smallest covariance that holds the sharpness at the rule's limit
:math:`S^*`, and is predicted as :math:`L(w) + \tfrac12 S^*\operatorname{tr}\Sigma`. The paper
covers GD and RMSProp; here the limit, the exit mode (a real pole leaving at :math:`z=-1`), the
effective step (the open loop's gain at :math:`z = 1`) and its delay (the group delay there)
come from each rule's own code (``gdyn_jax.predictions.rule_edge``), so heavy ball and Nesterov
follow from the same construction.

Each rule runs on an MNIST-1D tanh MLP (square loss, full batch) at a step size whose limit
:math:`S^*` is set per rule (the limit scales as :math:`1/a`); the real run's loss averaged over
a centred window of :math:`2k` steps is set beside the central flow's prediction and beside the
stable flow (gradient flow with the rule's effective step and delay), after the central flow
first reaches :math:`0.99\,S^*`. Whether a real run sits at the edge as the flow assumes is
measured beside it: the share of the loss its oscillation carries against the flow's
:math:`\tfrac12 S^*\operatorname{tr}\Sigma`, and the rule's soft width
(``RuleEdge.soft_width``: heavy ball's leaving pole turns into a complex pair of modulus
:math:`\sqrt\beta` 0.07 % below :math:`S^*`, so its oscillation dies between bursts; see the
concept page).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments import _edge_runs as er
from experiments._harness import Modes, Report
from gdyn_jax import optimizers
from gdyn_jax.predictions import central_flow, rule_edge

TITLE = "Central flows: GD, heavy ball and Nesterov averaged at the edge of stability"
SOURCE = "Cohen, Damian, Talwalkar, Kolter, Lee, ICLR 2025 (central flows)"
#: name -> (gdyn_jax.optimizers name, fixed hyperparameters)
RULES = {
    "gd": ("sgd", {}),
    "heavy ball": ("momentum", {"beta": 0.9}),
    "nesterov": ("nesterov", {"beta": 0.9}),
}
CF_RTOL = 0.05  # the issue's bound on the central flow's median relative error
GF_FACTOR = 5.0  # gradient flow's error at least this many times larger
DISTANCE_RATIO = 0.2  # |w_bar - w_CF| <= 0.2 |w_bar - w_GF| at the end
SHARPNESS_RTOL = 0.01


@dataclass(frozen=True)
class Settings(Modes):
    examples: int = 1000
    widths: tuple[int, ...] = (32, 32)
    # S* per rule: each reaches the edge within the first ~100 steps on this network; heavy
    # ball at S* = 8 catapults (its sharpness swings 0.8-1.07 S*), so it gets 12
    limits: tuple[tuple[str, float], ...] = (("gd", 4.0), ("heavy ball", 12.0), ("nesterov", 8.0))
    steps: int = 400
    half_window: int = 10  # k: the loss is averaged over 2k steps, whole period-2 cycles
    windows: tuple[int, ...] = (1, 5, 10, 25)  # the k shown beside it
    num_eigs: int = 2
    substeps: int = 1  # raised per rule to min_substeps (GD 2, heavy ball 2, Nesterov 1)

    TINY = dict(examples=64, widths=(8,), steps=12, half_window=2, windows=(1, 2), num_eigs=1)
    FULL = dict(steps=1200, num_eigs=3)


def learning_rate(rule: str, limit: float) -> float:
    """The step size whose ``max_stable_curvature`` is ``limit`` (the limit scales as 1/a)."""
    name, fixed = RULES[rule]
    return rule_edge(optimizers.get(name)(1.0, **fixed)).limit / limit


def run(s: Settings, report: Report) -> None:
    loss_fn, params = er.mnist1d_tanh(s.examples, s.widths)
    rows, curves = [], {}
    for rule, limit in s.limits:
        row, curves[rule] = _one_rule(s, loss_fn, params, rule, limit)
        rows.append(row)
    report.text(
        f"MNIST-1D, first {s.examples} examples, tanh MLP {s.widths}, square loss, full batch, "
        f"{s.steps} steps; each rule at the step size a whose limit is S* (table). The real "
        f"loss is averaged over a centred window of 2k = {2 * s.half_window} steps (k fixed "
        "beforehand: whole period-2 cycles, short against the run; the errors at other k are "
        "shown beside it, as the real loss also has slower self-stabilisation cycles); errors are "
        "medians over the steps after the central flow first reaches 0.99 S*. The two-step "
        "average and the loss at the two-step midpoint (w_{t-1} + 2w_t + w_{t+1})/4 are shown "
        "beside them. The stable flow is gradient flow with the rule's effective step eta_eff "
        "through its delay tau (both from the rule's open loop at z = 1). Whether the real run "
        "sits at the edge as the central flow assumes: the share of the averaged loss its "
        "oscillation carries, (L_bar - L(w_bar)) / L_bar over the window, beside the flow's "
        "S* tr Sigma / 2 / predicted loss (medians over the scored steps), and the rule's soft "
        "width (how far below S* its leaving pole stays real, so that the oscillation decays "
        "slowly and can hover; heavy ball's is 7e-4 at beta = 0.9, GD's 1/2)."
    )
    _tables(report, rows, s.windows)
    for r in rows:
        _score(report, r)
    _figure(report, curves)
    report.record(rules=rows)


def _one_rule(s: Settings, loss_fn, params, rule: str, limit: float) -> tuple[dict, tuple]:
    """The real run, its central and stable flows, and the numbers setting them side by side."""
    name, fixed = RULES[rule]
    lr = learning_rate(rule, limit)
    opt = optimizers.get(name)(lr, **fixed)
    losses, weights = er.real_run(loss_fn, params, opt, s.steps)
    flow = central_flow(loss_fn, params, opt, s.steps, num_eigs=s.num_eigs, substeps=s.substeps)
    mids = er.midpoint_losses(loss_fn, params, weights)
    shares = er.oscillation_shares(loss_fn, params, losses, weights, flow, s.half_window)
    k = s.half_window
    row = er.summary(rule, limit, losses, weights, flow, mids, k, s.windows, shares)
    row.update(learning_rate=lr, effective_step=flow.edge.effective_step)
    row.update(delay=flow.edge.delay, soft_width=flow.edge.soft_width)
    distances = er.weight_distances(weights, flow, k)
    return row, (losses, er.centred_mean(losses, k), mids, flow, distances, shares)


def _tables(report: Report, rows: list[dict], windows) -> None:
    report.table(
        ["rule", "S*", "a", "eta_eff", "tau", "substeps", "edge at", "CF err", "GF err"]
        + ["2-step err", "midpoint err", "midpoint bias", "|w-CF|", "|w-GF|", "SDCP res."]
        + ["soft width", "osc. share real", "osc. share CF"],
        [
            [r["rule"], r["limit"], r["learning_rate"], r["effective_step"], r["delay"]]
            + [str(tuple(r["substeps"])), r["edge_step"], r["cf_error"], r["gf_error"]]
            + [r.get(key, np.nan) for key in ("two_step_error", "midpoint_error")]
            + [r.get("midpoint_bias", np.nan), r["distance_cf"], r["distance_gf"]]
            + [r["sdcp_residual"], r["soft_width"]]
            + [r.get("share_real", np.nan), r.get("share_cf", np.nan)]
            for r in rows
        ],
    )
    report.table(
        ["rule"] + [f"CF / GF err, k = {k}" for k in windows],
        [
            [r["rule"]] + [f"{e['cf']:.4f} / {e['gf']:.4f}" for e in r["errors_by_k"].values()]
            for r in rows
        ],
    )


def _score(report: Report, r: dict) -> None:
    rule = r["rule"]
    report.bound(
        f"{rule}: median rel. error of the CF loss vs the averaged loss",
        r["cf_error"],
        upper=CF_RTOL,
        label="issue 24",
    )
    report.bound(
        f"{rule}: stable flow's error / central flow's",
        r["gf_error"] / r["cf_error"],
        lower=GF_FACTOR,
        label="issue 24",
    )
    report.bound(
        f"{rule}: weight distance to CF / to GF at the end",
        r["distance_cf"] / r["distance_gf"],
        upper=DISTANCE_RATIO,
        label="issue 24",
    )
    report.compare(
        f"{rule}: central flow sharpness / S* (median)",
        1 + r.get("cf_sharpness_error", np.nan),
        1.0,
        rtol=SHARPNESS_RTOL,
        label="max_stable_curvature",
    )


def _figure(report: Report, curves: dict) -> None:
    caption = (
        "Loss (top): real run (grey), its 2k-step average (black), two-step midpoint (green), "
        "central flow prediction (red), stable flow (blue dashed); central flow sharpness "
        "(second row) against S*; distance in weight space (third) from the real run's 2k-step "
        "mean to the central flow (red) and the stable flow (blue); the share of the loss "
        "carried by the oscillation (bottom, 2k-step means): real run (black), central flow (red)"
    )
    with report.figure("central_flow.png", caption, (14, 11)) as fig:
        axes = fig.subplots(4, len(curves), squeeze=False, sharex="col")
        for col, (rule, curve) in enumerate(curves.items()):
            losses, avg, mids, flow, (d_cf, d_gf), (real, predicted) = curve
            t = np.arange(len(losses))
            ax = axes[0, col]
            ax.plot(t, losses, color="0.7", lw=0.6)
            ax.plot(t, avg, "k", t, mids, "g", t, flow.predicted_loss, "r")
            ax.plot(t, flow.stable_loss, "b--")
            ax.set(title=rule, ylabel="square loss")
            axes[1, col].plot(t, flow.sharpness, "r")
            axes[1, col].axhline(flow.edge.limit, ls="--", color="k")
            axes[1, col].set(ylabel="sharpness")
            axes[2, col].plot(np.arange(len(d_cf)), d_cf, "r", np.arange(len(d_gf)), d_gf, "b")
            axes[2, col].set(ylabel="|w_bar - w_flow|")
            axes[3, col].plot(t, real, "k", t, predicted, "r")
            axes[3, col].set(xlabel="step", ylabel="oscillation's loss share")

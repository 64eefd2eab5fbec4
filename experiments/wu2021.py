r"""SGD, momentum and NAG as control systems (Wu, Jing, Du, Chen, Sci. China Inf. Sci. 2021).

Wu et al. read SGD as a first-order system, heavy-ball momentum as a second-order one and
Nesterov's method (NAG) as second-order with an extra zero; the learning rate :math:`a` and the
momentum :math:`\beta` set stability and convergence time. With :math:`K = a h`:

.. math::
    T_{\rm SGD} = \frac{K}{z-(1-K)}, \quad
    T_{\rm HB} = \frac{Kz}{z^2-(1+\beta-K)z+\beta}, \quad
    T_{\rm NAG}:\ z^2-(1+\beta)(1-K)z+\beta(1-K),\ \text{zero at } \tfrac{\beta}{1+\beta}.

Theory (``gdyn_jax.linearize``): step responses, root loci in :math:`a`, maps of the 2% settling
time and overshoot over :math:`(a, \beta)`. Training (sweep engine): MLPs on MNIST-1D over an
:math:`(a, \beta)` grid with several seeds, and two predictions of the measured number of steps to
a target training loss, both from quantities measured at the initialisation:

- the NTK loop (``gdyn_jax.predictions.ntk_loop``, the bridge from a rule's loop to a network's
  training curve): the empirical NTK at the initialisation of each seed on the first
  ``ntk_examples`` training examples, the cross-entropy's Gauss-Newton model there, every mode
  through the rule's own closed loop; the first step at which the predicted loss reaches the
  target. It replaces the settling time of the loop at the sharpest curvature :math:`h_0`, which
  only decides stability (with :math:`\beta = 0.9` most settings are underdamped there and
  settle at the rate :math:`\sqrt\beta` whatever the step);
- the loss of the quadratic model :math:`L_0 + g^\top\delta + \frac12\delta^\top H\delta` under
  the optimizer's exact closed loops, with the spectrum of :math:`H` as the gradient sees it (the
  Gauss quadrature of Lanczos started at :math:`g`, ``hessian.spectral_measure``;
  ``analysis.quadratic_model_loss``): the first step at which it reaches the target.

Which settings diverge: the naive call (unstable iff :math:`K = a h_0` is past the loop's limit)
against the pre-flight (``gdyn_jax.predictions.preflight``, ``gdyn preflight``: each seed's
curvature at initialisation, the rule's loop, and runs of the rule at bracketed learning rates),
each seed's call scored against that seed's run in the sweep. The probe's runs are
``probe_steps`` long, shorter than the sweep's: divergence is not monotone in :math:`a` here,
and probing the runs' full 2,000 steps called 95.6 % of the pairs right at twice the time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from experiments import _training as tr
from experiments._control import FACTORIES, factory, predict_settling, theory
from experiments._harness import Modes, Report
from gdyn_jax.measurements import steps_to_target
from gdyn_jax.plotting import plot_mean_band
from gdyn_jax.predictions import ntk_loop, ntk_predict, preflight, quadratic_model_loss, score_sweep
from gdyn_jax.sweep import SweepConfig, run_sweep

TITLE = "Wu et al. 2021: SGD / momentum / NAG step responses, root loci, settling maps, training"
SOURCE = "Wu, Jing, Du, Chen, Sci. China Inf. Sci. 64(5):150102, 2021"


@dataclass(frozen=True)
class Settings(Modes):
    map_size: int = 41
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
    betas: tuple[float, ...] = (0.5, 0.9)
    steps: int = 2000
    eval_every: int = 50
    seeds: int = 3
    nodes: int = 40  # quadrature nodes of the gradient's spectral measure
    target_loss: float = 1.0
    ntk_examples: int = 256  # the NTK loop's kernel: the first training examples
    probe_steps: int = 300  # the pre-flight's runs of each rule (``gdyn preflight``)

    TINY = dict(
        map_size=8,
        lrs=(0.01, 0.1),
        betas=(0.9,),
        steps=20,
        eval_every=10,
        seeds=2,
        nodes=10,
        target_loss=2.2,
        ntk_examples=64,
        probe_steps=20,
    )
    FULL = dict(
        map_size=81,
        lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        betas=(0.5, 0.8, 0.9, 0.95),
        steps=6000,
        seeds=5,
    )


def grid_of(name: str, s: Settings) -> dict:
    betas = {} if name == "sgd" else {"beta": np.asarray(s.betas)}
    return {"learning_rate": np.asarray(s.lrs)} | betas


def run(s: Settings, report: Report) -> None:
    theory(report, s.map_size)
    curvature = tr.initial_curvature(s.seeds, nodes=s.nodes, **tr.MNIST1D_MLP)
    h0 = float(np.mean([c["sharpness"] for c in curvature]))
    kernels = ntk_kernels(s.seeds, s.ntk_examples)
    rows, best, measurement = [], {}, None
    for name in FACTORIES:
        grid_rows, best[name], measurement = train(name, s, curvature, h0, kernels, measurement)
        rows += grid_rows
    rho, rho_ntk = training_rows(s, report, rows, curvature, best)
    preflight_rows(s, report, rows)
    training_figures(report, s, rows, best)
    report.record(
        curvature=curvature,
        initial_sharpness=h0,
        grid=rows,
        spearman_quadratic_model=rho,
        spearman_ntk_loop=rho_ntk,
        best={k: {key: b[key] for key in ("setting", "test_accuracy")} for k, b in best.items()},
    )


def train(name: str, s: Settings, curvature: list, h0: float, kernels, measurement=None):
    """One sweep of optimizer ``name`` over its grid: per grid point, the two predictions beside
    the measured steps to the target loss, and the pre-flight's phase per seed beside the
    measured divergence; the best setting by final test accuracy; the pre-flight's measurement
    at initialisation (``measurement``: an earlier one, reused: it does not depend on the rule)."""
    grid = grid_of(name, s)
    config = SweepConfig(
        optimizer=FACTORIES[name], steps=s.steps, eval_every=s.eval_every, **tr.MNIST1D_MLP
    )
    listed = {k: list(map(float, v)) for k, v in grid.items()}
    ds = run_sweep(config, listed, seeds=s.seeds, progress=False)
    pre = preflight(config, listed, s.seeds, measurement=measurement, probe_steps=s.probe_steps)
    called = _preflight_calls(pre, ds, grid)
    loss = ds["train_loss"].transpose(*grid, "seed", "step").values
    measured = steps_to_target(ds["step"].values, loss, s.target_loss)
    diverged = (ds["diverged_at"] >= 0).transpose(*grid, "seed").values
    at_h0 = predict_settling(name, grid, h0)
    model = predict_steps(name, grid, curvature, s)
    bridge = ntk_steps(name, grid, kernels, s)
    rows = []
    for index in np.ndindex(at_h0["stable"].shape):
        point = {k: float(v[i]) for (k, v), i in zip(grid.items(), index, strict=True)}
        rows.append(
            {"optimizer": name, "beta": None, **point}
            | {
                "K": float(grid["learning_rate"][index[0]] * h0),
                "predicted_stable": bool(at_h0["stable"][index]),
                "predicted_settling_at_h0": float(at_h0["settling"][index]),
                "predicted_steps_ntk_loop": float(bridge[index]),
                "predicted_steps_quadratic_model": float(model[index]),
                "measured_steps_to_target": float(np.median(measured[index])),
                "diverged_fraction": float(diverged[index].mean()),
                "diverged": diverged[index].tolist(),
                **{k: v[index] for k, v in called.items()},
            }
        )
    top = tr.best_accuracy(ds)
    best = {
        "setting": top.setting,
        "test_accuracy": tr.mean_sd(top.scores),
        "curve": ds["test_accuracy"].isel(top.index),
        "label": ", ".join(f"{k}={v:g}" for k, v in top.setting.items()),
    }
    return rows, best, pre.measurement


def _preflight_calls(pre, ds, grid: dict) -> dict[str, np.ndarray]:
    """Per grid point (in ``grid``'s index order): the pre-flight's phase per seed, the
    measured phase per seed (``score_sweep``: the sweep's own curves) and the pre-flight's
    seconds (measuring, the rules' loops and the probe; compilation apart), shared by the
    grid's points."""
    shape = tuple(len(v) for v in grid.values())
    measured = score_sweep(pre, ds)["measured"]
    where = {tuple(np.float32(p)): i for i, p in enumerate(pre.points)}
    out = {k: np.empty(shape, object) for k in ("preflight_phase", "measured_phase")}
    for index in np.ndindex(shape):
        i = where[tuple(np.float32(v[j]) for v, j in zip(grid.values(), index, strict=True))]
        out["preflight_phase"][index] = pre.phase[i].tolist()
        out["measured_phase"][index] = measured[i].tolist()
    out["preflight_seconds"] = np.full(shape, pre.seconds["total"] / np.prod(shape))
    return out


def predict_steps(name: str, grid: dict, curvature: list, s: Settings) -> np.ndarray:
    """Median over seeds of the first step at which the quadratic model reaches the target."""
    steps = np.arange(s.steps + 1)
    per_seed = []
    for c in curvature:
        change = quadratic_model_loss(factory(name), grid, c["nodes"], c["weights"], steps.size)
        loss = np.nan_to_num(c["loss"] + change, nan=np.inf)
        per_seed.append(steps_to_target(steps, loss, s.target_loss))
    return np.median(per_seed, axis=0)


def ntk_kernels(seeds: int, examples: int) -> list:
    """Per seed, the NTK modes at the sweep's initialisation of that seed, on the first
    ``examples`` training examples (cross-entropy: its Gauss-Newton model)."""
    config = SweepConfig(optimizer="sgd", **tr.MNIST1D_MLP)
    out = []
    for seed in range(seeds):
        program, _, state = ntk_predict.prepare(
            config, {"learning_rate": 0.1}, steps=1, seed=seed, examples=examples
        )
        task, data = program.task, program.data
        variables = {"params": state.params, **state.model_state}
        out.append(ntk_loop.ntk_modes(task.model, variables, data.x_train, data.y_train, task.loss))
    return out


def ntk_steps(name: str, grid: dict, kernels: list, s: Settings) -> np.ndarray:
    """Median over seeds of the first step at which the NTK loop's loss reaches the target."""
    steps = np.arange(s.steps + 1)
    shape = tuple(len(v) for v in grid.values())
    out = np.empty(shape)
    for index in np.ndindex(shape):
        hp = {k: float(v[i]) for (k, v), i in zip(grid.items(), index, strict=True)}
        per_seed = []
        for modes in kernels:
            r = ntk_loop.mode_responses(factory(name), hp, modes.curvatures, s.steps)
            loss = np.nan_to_num(modes.loss(r), nan=np.inf)
            per_seed.append(steps_to_target(steps, loss, s.target_loss))
        out[index] = np.median(per_seed)
    return out


def spearman(x, y) -> tuple[float, int]:
    """Spearman's rank correlation over the pairs where both are finite, and their number."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    rho = float(spearmanr(x[keep], y[keep]).statistic) if keep.sum() >= 3 else np.nan
    return rho, int(keep.sum())


def training_rows(s: Settings, report: Report, rows: list, curvature: list, best: dict):
    """The training part's paragraphs and scored rows; returns the two Spearman correlations
    (quadratic model, NTK loop)."""
    measured = np.array([r["measured_steps_to_target"] for r in rows])
    bridge = np.array([r["predicted_steps_ntk_loop"] for r in rows])
    model = np.array([r["predicted_steps_quadratic_model"] for r in rows])
    rho_ntk, n_ntk = spearman(bridge, measured)
    rho, n = spearman(model, measured)
    both = np.isfinite(model) & np.isfinite(measured) & (model > 0)
    ratio = np.median(measured[both] / model[both])
    flat = np.mean([c["weights"][c["nodes"] <= 0].sum() / c["weights"].sum() for c in curvature])
    report.text(
        f"Training: MNIST-1D residual MLP, cross-entropy, batch 100, β ∈ {s.betas} for momentum "
        f"and NAG. Measured: the first evaluation step with the full training loss ≤ "
        f"{s.target_loss} (median over seeds). At initialisation, on the whole training set: "
        f"sharpness h0 = {tr.pm(tr.mean_sd([c['sharpness'] for c in curvature]), digits=3)}; the "
        f"gradient's spectral measure from {s.nodes} Lanczos steps started at the gradient, "
        f"{100 * flat:.0f}% of its weight on curvatures ≤ 0 (taken as flat by the quadratic "
        "model). The quadratic model's predicted steps are its first step at the target loss, "
        "mini-batch noise ignored. Each Spearman correlation is over the grid points where both "
        "numbers are finite: settings that neither diverge nor stall within the run."
    )
    for what, value, points in (
        ("quadratic model over the gradient's spectrum", rho, n),
        ("NTK loop (the bridge)", rho_ntk, n_ntk),
    ):
        quantity = f"Spearman, {what} vs measured steps ({points} points)"
        report.bound(quantity, value, lower=0.5, label="same ordering")
    report.text(
        f"Median measured / predicted steps for the quadratic model: {ratio:.2g} (it ignores "
        "the mini-batch noise and the curvature that changes along the way). The NTK loop "
        f"predicts the whole curve from the kernel of the first {s.ntk_examples} examples, mode "
        "by mode through each rule's loop; the settling time of the loop at the sharpest "
        "curvature h0, which it replaces, ranks the steps badly: with β = 0.9 most settings are "
        "underdamped at h0 and settle at the rate √β whatever a is, so the sharpest direction "
        "decides stability, not how fast the loss falls."
    )
    report.text(
        "Test accuracy of the best setting per optimizer (final step, "
        "a diverged seed counted as 0; no published number, so not scored): "
        + "; ".join(
            f"{k} {tr.pm(b['test_accuracy'], 100)}% at {b['label']}" for k, b in best.items()
        )
        + "."
    )
    return rho, rho_ntk


def preflight_rows(s: Settings, report: Report, rows: list) -> None:
    """Which grid points diverge: the linear loop at h0 (the naive call) against the pre-flight
    (``gdyn_jax.predictions.preflight``: the curvature at each seed's initialisation, the
    rule's loop, and runs of the rule at bracketed rates), each seed's call scored against the
    sweep's run of that seed."""
    pre = np.array([p == "divergent" for r in rows for p in r["preflight_phase"]])
    meas = np.array([p == "divergent" for r in rows for p in r["measured_phase"]])
    naive = np.array([not r["predicted_stable"] for r in rows for _ in r["measured_phase"]])
    right, naive_right = np.mean(pre == meas), np.mean(naive == meas)
    unstable = [r["diverged_fraction"] >= 0.5 for r in rows if not r["predicted_stable"]]
    stable = [r["diverged_fraction"] < 0.5 for r in rows if r["predicted_stable"]]
    seconds = sum(r["preflight_seconds"] for r in rows)
    report.text(
        "Which settings diverge. The naive call, unstable iff K = a·h0 is past the loop's limit "
        f"at the initial sharpness, is right for {100 * naive_right:.1f} % of the "
        f"{meas.size} (point, seed) pairs: of the points it calls unstable "
        f"{100 * np.mean(unstable or [np.nan]):.0f} % diverged (most seeds), the rest lowered "
        "their sharpness and trained (the catapult); of those it calls stable "
        f"{100 * np.mean(stable or [np.nan]):.0f} % trained, the rest diverged once training "
        "sharpened the loss past its limit (the edge of stability, see cohen2021). The "
        "pre-flight (`gdyn preflight`, before any training: each seed's curvature at "
        "initialisation, the rule's loop, and runs of the rule of "
        f"{s.probe_steps} steps at bracketed rates) calls each seed; it took "
        f"{seconds:.1f} s for the three grids, compilation apart."
    )
    quantity = f"pre-flight: divergent call right over the (point, seed) pairs ({meas.size})"
    report.bound(quantity, float(right), lower=0.9, label="the pre-flight's target")
    report.bound(
        "pre-flight's call minus the naive call at h0 (fraction right)",
        float(right - naive_right),
        lower=0.0,
        label="no worse than the naive call",
    )


def training_figures(report: Report, s: Settings, rows: list, best: dict) -> None:
    caption = "Predicted vs measured steps to the target loss"
    with report.figure("settling_vs_training.png", caption, (7.5, 5.5)) as fig:
        ax = fig.subplots()
        for i, name in enumerate(FACTORIES):
            sel = [r for r in rows if r["optimizer"] == name]
            y = [r["measured_steps_to_target"] for r in sel]
            for key, marker, what in (
                ("predicted_steps_quadratic_model", "o", "quadratic model"),
                ("predicted_steps_ntk_loop", "x", "NTK loop"),
            ):
                x = [r[key] for r in sel]
                ax.scatter(x, y, color=f"C{i}", marker=marker, label=f"{name}: {what}")
        ax.plot([1, s.steps], [1, s.steps], "k:", lw=0.8, label="equal")
        ax.set(xscale="log", yscale="log", xlabel="predicted steps")
        ax.set_ylabel("measured steps (median over seeds)")
        ax.set_title("MNIST-1D MLP (unreached or unstable points omitted)")
        ax.legend(fontsize=7)
    caption = "Test accuracy of the best settings (mean ± sd over seeds)"
    with report.figure("test_accuracy_sgd_momentum_nag.png", caption, (7, 4.5)) as fig:
        ax = fig.subplots()
        for name, b in best.items():
            curve = b["curve"]
            plot_mean_band(ax, curve["step"], 100 * curve.values, label=f"{name}: {b['label']}")
        ax.set(xlabel="step", ylabel="test accuracy (%)")
        ax.legend()

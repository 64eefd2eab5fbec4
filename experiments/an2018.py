r"""PID against heavy-ball momentum on MNIST-1D (An et al., CVPR 2018).

An, Wang, Sun, Wei, Wu, Lyu, Du, "A PID controller approach for stochastic optimization of
deep networks", CVPR 2018: heavy-ball momentum is a PI controller of the gradient, and its
integral action overshoots; a derivative term (PID) damps the overshoot and reaches a target
accuracy in fewer steps. ``pid(a, β, ki=1, kd)`` is momentum plus a P and a D term (with
:math:`k_i = 1` the integral term :math:`a k_i I` is momentum's :math:`a v`, as in An et al.'s
MNIST script):

.. math::
    I \leftarrow \beta I + g,\quad D \leftarrow \beta D + (1-\beta)(g - g_{\rm prev}),\quad
    \theta \leftarrow \theta - a (g + k_i I + k_d D).

Theory (``gdyn_jax.linearize``): the closed loops at the measured initial sharpness :math:`h_0`,
their poles, zeros and predicted overshoot; :math:`k_d` is *designed* as the candidate with the
least predicted overshoot whose loop stays stable at :math:`2h_0` (a margin for sharpening).
Training (sweep engine): MLPs on MNIST-1D, batch 100, several seeds; the overshoot of the
training-loss curve (``analysis.curve_overshoot``), steps to a target test accuracy, accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments import _training as tr
from experiments._harness import Modes, Report
from gdyn_jax import linearize, optimizers
from gdyn_jax.measurements import curve_overshoot, steps_to_target
from gdyn_jax.plotting import plot_mean_band, plot_pole_zero

TITLE = "An et al. 2018: PID vs momentum on MNIST-1D; overshoot, steps to target, poles/zeros"
SOURCE = "An et al., CVPR 2018 (claims: less overshoot, fewer steps to a target than momentum)"
BETA, KI = 0.9, 1.0


@dataclass(frozen=True)
class Settings(Modes):
    lrs: tuple[float, ...] = (0.01, 0.03, 0.1)
    kds: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
    steps: int = 2000
    eval_every: int = 25
    seeds: int = 3
    target_accuracy: float = 0.55
    sharpness_subset: int = 1000
    sharpness_iters: int = 20

    TINY = dict(
        lrs=(0.03,),
        kds=(1.0, 10.0),
        steps=20,
        eval_every=10,
        seeds=2,
        target_accuracy=0.15,
        sharpness_subset=200,
        sharpness_iters=5,
    )
    FULL = dict(
        lrs=(0.003, 0.01, 0.03, 0.1),
        kds=(1.0, 3.0, 10.0, 30.0, 100.0),
        steps=6000,
        eval_every=20,
        seeds=5,
        target_accuracy=0.6,
    )


def step_metrics(lrs, kds, curvature: float, steps: int = 5000) -> dict:
    """``linearize.step_info`` of momentum (over a) and PID (over a × kd) at ``curvature``."""
    grid = {"learning_rate": np.asarray(lrs, float)}
    mom = linearize.linearize_grid(optimizers.momentum, grid, curvature, beta=BETA)
    grid["kd"] = np.asarray(kds, float)
    pid = linearize.linearize_grid(optimizers.pid, grid, curvature, beta=BETA, ki=KI)
    return {"momentum": linearize.step_info(mom, steps), "pid": linearize.step_info(pid, steps)}


def design_kd(lrs, kds, h0: float) -> list[float]:
    """Per learning rate: the kd with least predicted overshoot, also stable at 2·h0."""
    at_h0, at_2h0 = step_metrics(lrs, kds, h0)["pid"], step_metrics(lrs, kds, 2 * h0)["pid"]
    ok = np.asarray(at_h0["Stable"], bool) & np.asarray(at_2h0["Stable"], bool)
    over = np.where(ok, at_h0["Overshoot"], np.inf)
    return [float(kds[np.argmin(o)]) if np.isfinite(o).any() else float(min(kds)) for o in over]


def measure(ds, steps, target: float) -> dict:
    """Seed statistics of one setting: loss-curve overshoot, steps to ``target`` accuracy."""
    acc = ds["test_accuracy"].values
    return {
        "overshoot_pct": tr.mean_sd([curve_overshoot(c) for c in ds["train_loss"].values]),
        "steps_to_target": tr.mean_sd(steps_to_target(steps, acc, target, below=False)),
        "final_test_accuracy": tr.mean_sd(acc[:, -1]),
        "diverged": int((ds["diverged_at"].values >= 0).sum()),
    }


def run(s: Settings, report: Report) -> None:
    sharpness = dict(subset=s.sharpness_subset, iters=s.sharpness_iters, **tr.MNIST1D_MLP)
    h0s = [c["sharpness"] for c in tr.initial_curvature(s.seeds, **sharpness)]
    h0 = float(np.mean(h0s))
    kd = design_kd(s.lrs, s.kds, h0)
    pred = step_metrics(s.lrs, s.kds, h0)
    train = {"steps": s.steps, "eval_every": s.eval_every, **tr.MNIST1D_MLP}
    lrs, beta = {"learning_rate": s.lrs}, {"beta": BETA}
    mom = tr.sweep(lrs, s.seeds, optimizer="momentum", hparams=beta, **train)
    designed = {"learning_rate": s.lrs, "kd": sorted(set(kd))}  # only the designed gains
    pid = tr.sweep(designed, s.seeds, optimizer="pid", hparams={"beta": BETA, "ki": KI}, **train)
    report.text(
        f"MNIST-1D residual MLP, cross-entropy, batch 100, β = {BETA}, ki = {KI}; measured "
        f"initial sharpness h0 = {tr.pm(tr.mean_sd(h0s), digits=3)}. kd designed per learning "
        f"rate with `linearize`: {dict(zip(s.lrs, kd, strict=True))}. Rows compare PID with "
        "momentum, both measured, as An et al. do; the tolerance is one standard deviation of "
        "momentum's value over seeds."
    )
    rows, steps = [], mom["step"].values
    for i, (lr, k) in enumerate(zip(s.lrs, kd, strict=True)):
        row = {"learning_rate": lr, "kd": k, "K0": lr * h0}
        j = s.kds.index(k)
        row["momentum"] = measure(mom.sel(learning_rate=lr), steps, s.target_accuracy)
        row["pid"] = measure(pid.sel(learning_rate=lr, kd=k), steps, s.target_accuracy)
        row["momentum"]["predicted_overshoot_pct"] = float(pred["momentum"]["Overshoot"][i])
        row["pid"]["predicted_overshoot_pct"] = float(pred["pid"]["Overshoot"][i, j])
        rows.append(row)
        m, p = row["momentum"], row["pid"]
        difference = p["predicted_overshoot_pct"] - m["predicted_overshoot_pct"]
        report.bound(
            f"a={lr:g}: predicted overshoot on h0, PID − momentum (points)", difference, upper=0.0
        )
        for key, what in (
            ("overshoot_pct", "training-loss overshoot (%)"),
            ("steps_to_target", f"steps to {100 * s.target_accuracy:.0f}% test accuracy"),
        ):
            quantity = f"a={lr:g}: {what}, PID {tr.pm(p[key])} − momentum {tr.pm(m[key])}"
            difference = p[key]["mean"] - m[key]["mean"]
            report.bound(quantity, difference, upper=m[key]["sd"], label="≤ momentum's sd")
        report.text(
            f"a={lr:g}: final test accuracy PID {tr.pm(p['final_test_accuracy'], 100)}% "
            f"vs momentum {tr.pm(m['final_test_accuracy'], 100)}%."
        )
    loops = _figures(report, s, kd, h0, mom, pid, steps)
    report.record(initial_sharpness=tr.mean_sd(h0s), kd_design=kd, rows=rows, poles_zeros=loops)


def _figures(report: Report, s: Settings, kd, h0, mom, pid, steps) -> dict:
    """The pole-zero maps and step responses at h0 and the training curves; returns the poles
    and zeros of the two loops at the middle learning rate."""
    mid = len(s.lrs) // 2
    loops = {
        "momentum": optimizers.momentum(s.lrs[mid], BETA),
        "pid": optimizers.pid(s.lrs[mid], BETA, KI, kd[mid]),
    }
    systems = {name: linearize.linearize(opt, h0) for name, opt in loops.items()}
    tfs = {name: linearize.transfer_function(system) for name, system in systems.items()}
    caption = "Poles and zeros of momentum and PID at the measured initial sharpness, and their"
    with report.figure("pid_poles_zeros.png", f"{caption} step responses", (15, 4.6)) as fig:
        axes = fig.subplots(1, 3)
        for ax, (name, tf) in zip(axes, tfs.items(), strict=False):
            title = f"{name}: a = {s.lrs[mid]:g}, h0 = {h0:.3g}"
            plot_pole_zero(ax, tf.poles(), tf.zeros(), title=title)
        for name, system in systems.items():
            axes[2].plot(linearize.step_response(system, 120), label=name)
        axes[2].set(xlabel="step k", ylabel="θ_k", title="step responses on h0")
        axes[2].legend()
    caption = "Training loss and test accuracy, PID vs momentum (mean ± sd)"
    with report.figure("pid_vs_momentum.png", caption, (5 * len(s.lrs), 8)) as fig:
        axes = fig.subplots(2, len(s.lrs), squeeze=False)
        for col, (lr, k) in enumerate(zip(s.lrs, kd, strict=True)):
            for ax, var in zip(axes[:, col], ("train_loss", "test_accuracy"), strict=True):
                plot_mean_band(ax, steps, mom[var].sel(learning_rate=lr).values, label="momentum")
                pid_runs = pid[var].sel(learning_rate=lr, kd=k).values
                plot_mean_band(ax, steps, pid_runs, label=f"PID kd={k:g}")
                ax.set(xlabel="step", ylabel=var.replace("_", " "), title=f"a = {lr:g}")
            axes[1, col].axhline(s.target_accuracy, color="k", ls=":", lw=0.8)
            axes[0, col].legend(fontsize=8)
    return {k: {"poles": tf.poles(), "zeros": tf.zeros()} for k, tf in tfs.items()}

r"""PID against heavy-ball momentum on MNIST-1D (An et al., CVPR 2018).

An, Wang, Sun, Wei, Wu, Lyu, Du, "A PID controller approach for stochastic optimization of
deep networks", CVPR 2018: heavy-ball momentum is a PI controller of the gradient (error)
signal, and its integral action overshoots; adding a derivative term (PID) damps the
overshoot and reaches a target accuracy in fewer steps. Here ``pid(a, β, ki=1, kd)`` is
exactly momentum plus a P and a D term (the integral term :math:`a k_i I` with :math:`k_i = 1`
is momentum's :math:`a v`; An et al.'s MNIST script also uses I = 1):

.. math::
    I \leftarrow \beta I + g,\quad D \leftarrow \beta D + (1-\beta)(g - g_{\rm prev}),\quad
    \theta \leftarrow \theta - a (g + k_i I + k_d D).

Theory (``gdyn_jax.linearize``): the closed loops of momentum and PID at the measured initial
sharpness :math:`h_0` (:math:`K = a h_0`), their poles and zeros and predicted overshoot; the
derivative gain :math:`k_d` is *designed* from the candidates as the one with the least
predicted overshoot whose loop stays stable at twice the curvature (a 2x margin for
sharpening). Training (sweep engine): MLPs on MNIST-1D, mini-batch 100, several seeds; the
overshoot of the training-loss curve (its largest rebound above the running minimum, % of the
descent), steps to a target test accuracy and the final accuracy.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments import _training as tr
from experiments._report import Report, write_summary

TITLE = "An et al. 2018: PID vs momentum on MNIST-1D; overshoot, steps to target, poles/zeros"

BETA = 0.9
KI = 1.0
SETTINGS = {
    "tiny": {
        "lrs": [0.03],
        "kds": [1.0, 10.0],
        "steps": 20,
        "eval_every": 10,
        "seeds": 2,
        "target_accuracy": 0.15,
        "sharpness_subset": 200,
        "sharpness_iters": 5,
    },
    "quick": {
        "lrs": [0.01, 0.03, 0.1],
        "kds": [1.0, 3.0, 10.0, 30.0],
        "steps": 2000,
        "eval_every": 25,
        "seeds": 3,
        "target_accuracy": 0.55,
        "sharpness_subset": 1000,
        "sharpness_iters": 20,
    },
    "full": {
        "lrs": [0.003, 0.01, 0.03, 0.1],
        "kds": [1.0, 3.0, 10.0, 30.0, 100.0],
        "steps": 6000,
        "eval_every": 20,
        "seeds": 5,
        "target_accuracy": 0.6,
        "sharpness_subset": 1000,
        "sharpness_iters": 20,
    },
}


def _common(settings: dict) -> dict:
    return {"dataset": "mnist1d", "model": "mlp", "loss": "cross_entropy", "batch_size": 100}


def loops(lrs, kds, curvature: float, steps: int = 5000) -> dict:
    """Predicted step metrics of momentum (over a) and PID (over a × kd) at ``curvature``."""
    from gdyn_jax import linearize, optimizers

    lrs = np.asarray(lrs, float)
    mom = linearize.step_info(
        linearize.linearize_grid(optimizers.momentum, {"learning_rate": lrs}, curvature, beta=BETA),
        steps,
    )
    pid = linearize.step_info(
        linearize.linearize_grid(
            optimizers.pid,
            {"learning_rate": lrs, "kd": np.asarray(kds, float)},
            curvature,
            beta=BETA,
            ki=KI,
        ),
        steps,
    )
    return {"momentum": mom, "pid": pid}


def design_kd(lrs, kds, h0: float) -> list[float]:
    """Per learning rate: the kd with least predicted overshoot, stable at 2·h0 too."""
    at_h0 = loops(lrs, kds, h0)["pid"]
    at_2h0 = loops(lrs, kds, 2 * h0)["pid"]
    chosen = []
    for i in range(len(lrs)):
        ok = np.asarray(at_h0["Stable"][i], bool) & np.asarray(at_2h0["Stable"][i], bool)
        over = np.where(ok, at_h0["Overshoot"][i], np.inf)
        chosen.append(
            float(kds[int(np.argmin(over))]) if np.isfinite(over).any() else float(min(kds))
        )
    return chosen


def poles_zeros(lr: float, kd: float, h0: float) -> dict:
    """Poles and zeros (reference -> θ) of momentum and PID at curvature h0."""
    from gdyn_jax import linearize, optimizers

    out = {}
    for name, opt in (
        ("momentum", optimizers.momentum(lr, BETA)),
        ("pid", optimizers.pid(lr, BETA, KI, kd)),
    ):
        tf = linearize.transfer_function(linearize.linearize(opt, h0))
        out[name] = {
            "poles": tf.poles(),
            "zeros": tf.zeros(),
            "step": linearize.step_response(linearize.linearize(opt, h0), 120),
        }
    return out


def _measure(ds, steps, target: float) -> dict:
    loss = ds["train_loss"].values
    acc = ds["test_accuracy"].values
    return {
        "overshoot_pct": tr.mean_sd([tr.curve_overshoot(c) for c in loss]),
        "steps_to_target": tr.mean_sd([tr.steps_to_above(steps, c, target) for c in acc]),
        "final_test_accuracy": tr.mean_sd(acc[:, -1]),
        "diverged": int((ds["diverged_at"].values >= 0).sum()),
    }


def _plot_poles(out_dir, pz: dict, lr: float, kd: float, h0: float) -> str:
    fig, axes = tr.figure(1, 2, figsize=(12, 5))
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    ax = axes[0]
    ax.plot(circle.real, circle.imag, "k--", lw=0.8, label="unit circle")
    for (name, v), color in zip(pz.items(), ("C0", "C3"), strict=True):
        ax.plot(
            v["poles"].real, v["poles"].imag, "x", color=color, ms=10, mew=2, label=f"{name} poles"
        )
        if v["zeros"].size:
            ax.plot(
                v["zeros"].real,
                v["zeros"].imag,
                "o",
                mfc="none",
                mec=color,
                ms=10,
                mew=2,
                label=f"{name} zeros",
            )
    ax.set_aspect("equal")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")
    ax.set_title(f"Pole-zero map at h0 = {h0:.3g}, a = {lr:g}, β = {BETA}, kd = {kd:g}")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    ax = axes[1]
    for (name, v), color in zip(pz.items(), ("C0", "C3"), strict=True):
        ax.plot(v["step"], color=color, label=name)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("optimizer step k")
    ax.set_ylabel("θ_k (unit distance to the optimum)")
    ax.set_title("Predicted step responses on the quadratic h0")
    ax.legend()
    ax.grid(alpha=0.3)
    return tr.save(fig, out_dir, "pid_poles_zeros.png")


def _plot_curves(out_dir, steps, mom, pid, lrs, kd_design, target) -> str:
    fig, axes = tr.figure(2, len(lrs), figsize=(5 * len(lrs), 8), squeeze=False)
    for col, lr in enumerate(lrs):
        m = mom.sel(learning_rate=lr)
        p = pid.sel(learning_rate=lr, kd=kd_design[col])
        for row, (var, label) in enumerate(
            (("train_loss", "train loss (cross-entropy)"), ("test_accuracy", "test accuracy (%)"))
        ):
            scale = 100 if var == "test_accuracy" else 1
            ax = axes[row, col]
            tr.band(ax, steps, scale * m[var].values, label=f"momentum a={lr:g}, β={BETA}")
            tr.band(
                ax,
                steps,
                scale * p[var].values,
                label=f"PID a={lr:g}, ki={KI:g}, kd={kd_design[col]:g}",
            )
            if var == "test_accuracy":
                ax.axhline(100 * target, color="k", ls=":", lw=0.8, label="target")
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(f"a = {lr:g}: mean ± sd over seeds")
    fig.suptitle("MNIST-1D MLP, batch 100: PID (designed kd) vs momentum")
    return tr.save(fig, out_dir, "pid_vs_momentum.png")


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Designs kd with linearize, trains momentum and PID sweeps, writes the report."""
    out_dir = pathlib.Path(out_dir)
    s = SETTINGS[mode]
    h0_seeds = tr.initial_sharpness(
        s["seeds"],
        **_common(s),
        sharpness_subset=s["sharpness_subset"],
        sharpness_iters=s["sharpness_iters"],
    )
    h0 = float(np.nanmean(h0_seeds))
    kd_design = design_kd(s["lrs"], s["kds"], h0)
    pred = loops(s["lrs"], s["kds"], h0)
    train = {"steps": s["steps"], "eval_every": s["eval_every"]}
    mom, t_mom = tr.sweep(
        {"learning_rate": s["lrs"]},
        s["seeds"],
        **_common(s),
        **train,
        optimizer="momentum",
        hparams={"beta": BETA},
    )
    # Only the designed gains are trained (the candidates were screened by linearize).
    pid, t_pid = tr.sweep(
        {"learning_rate": s["lrs"], "kd": sorted(set(kd_design))},
        s["seeds"],
        **_common(s),
        **train,
        optimizer="pid",
        hparams={"beta": BETA, "ki": KI},
    )
    steps = mom["step"].values
    rows = []
    for i, lr in enumerate(s["lrs"]):
        j = s["kds"].index(kd_design[i])
        rows.append(
            {
                "learning_rate": lr,
                "beta": BETA,
                "ki": KI,
                "kd": kd_design[i],
                "K0": lr * h0,
                "predicted_overshoot_pct": {
                    "momentum": float(pred["momentum"]["Overshoot"][i]),
                    "pid": float(pred["pid"]["Overshoot"][i, j]),
                },
                "predicted_settling_steps": {
                    "momentum": float(pred["momentum"]["SettlingTime"][i]),
                    "pid": float(pred["pid"]["SettlingTime"][i, j]),
                },
                "momentum": _measure(mom.sel(learning_rate=lr), steps, s["target_accuracy"]),
                "pid": _measure(
                    pid.sel(learning_rate=lr, kd=kd_design[i]), steps, s["target_accuracy"]
                ),
            }
        )
    mid = len(s["lrs"]) // 2
    pz = poles_zeros(s["lrs"][mid], kd_design[mid], h0)
    figures = [
        _plot_poles(out_dir, pz, s["lrs"][mid], kd_design[mid], h0),
        _plot_curves(out_dir, steps, mom, pid, s["lrs"], kd_design, s["target_accuracy"]),
    ]

    report = Report(
        TITLE,
        source="An et al., CVPR 2018 (PID optimizer; their claims: less "
        "overshoot, fewer steps to a target accuracy than momentum)",
    )
    report.text(
        f"Mode `{mode}`: MNIST-1D residual MLP, cross-entropy, batch 100, {s['steps']} steps, "
        f"{s['seeds']} seeds, β = {BETA}, ki = {KI}. Measured initial sharpness h0 = "
        f"{tr.pm(tr.mean_sd(h0_seeds), digits=3)}. kd designed per learning rate from "
        f"{s['kds']} with `linearize` (least predicted overshoot, stable at 2·h0): "
        f"{dict(zip(s['lrs'], kd_design, strict=True))}. Target test accuracy "
        f"{100 * s['target_accuracy']:.0f}%. Rows compare PID (measured) with momentum "
        "(measured); 'agrees' means PID behaves as An et al. claim."
    )
    for r in rows:
        a = r["learning_rate"]
        pm_, pp = r["predicted_overshoot_pct"]["momentum"], r["predicted_overshoot_pct"]["pid"]
        report.compare(
            f"a={a:g}: predicted overshoot on h0 (%), PID vs momentum {pm_:.1f}",
            pp,
            pm_,
            agrees=bool(pp <= pm_),
            expected_label="< momentum's",
        )
        mo, po = r["momentum"]["overshoot_pct"], r["pid"]["overshoot_pct"]
        report.compare(
            f"a={a:g}: training-loss overshoot (%), PID {tr.pm(po)} vs momentum {tr.pm(mo)}",
            po["mean"],
            mo["mean"],
            agrees=bool(po["mean"] <= mo["mean"] + mo["sd"]),
            expected_label="≤ momentum's",
        )
        ms, ps = r["momentum"]["steps_to_target"], r["pid"]["steps_to_target"]
        report.compare(
            f"a={a:g}: steps to {100 * s['target_accuracy']:.0f}% test accuracy, "
            f"PID vs momentum {tr.pm(ms, digits=0)}",
            ps["mean"],
            ms["mean"],
            agrees=bool(ps["mean"] <= ms["mean"] + ms["sd"]),
            expected_label="≤ momentum's",
        )
        mf, pf = r["momentum"]["final_test_accuracy"], r["pid"]["final_test_accuracy"]
        report.text(
            f"a={a:g}: final test accuracy PID {tr.pm(pf, 100)}% vs momentum {tr.pm(mf, 100)}%."
        )
    for name, v in pz.items():
        report.text(
            f"{name} loop at a={s['lrs'][mid]:g}, h0={h0:.3g}: poles "
            f"{np.round(v['poles'], 4).tolist()}, zeros "
            f"{np.round(v['zeros'], 4).tolist()}."
        )
    report.figure(
        figures[0],
        "Poles and zeros of the momentum and PID loops, and their step "
        "responses, at the measured initial sharpness",
    )
    report.figure(figures[1], "Training loss and test accuracy, PID vs momentum (mean ± sd)")
    summary = {
        "mode": mode,
        "settings": s,
        "initial_sharpness": tr.mean_sd(h0_seeds),
        "kd_design": kd_design,
        "rows": rows,
        "poles_zeros": {
            k: {
                "poles": [[z.real, z.imag] for z in v["poles"]],
                "zeros": [[z.real, z.imag] for z in v["zeros"]],
            }
            for k, v in pz.items()
        },
        "seconds": {"momentum": t_mom, "pid": t_pid},
        "figures": figures,
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

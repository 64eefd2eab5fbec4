r"""SGD, momentum and NAG as control systems at :math:`h = 1` (Wu et al. 2021): the theory.

With :math:`K = a h`, SGD is the first-order loop :math:`K/(z-(1-K))`, heavy-ball momentum the
second-order :math:`Kz/(z^2-(1+\beta-K)z+\beta)` and NAG the second-order loop
:math:`z^2-(1+\beta)(1-K)z+\beta(1-K)` with a zero at :math:`\beta/(1+\beta)`. :func:`theory`
computes, with ``gdyn_jax.linearize``, the zeros and stability limits (set beside those closed
forms), the overshoot of the first-order loop, maps of the 2% settling time and overshoot over
:math:`(a, \beta)`, step responses and root loci in :math:`a`. This is the theory part of
``experiments/wu2021.py``, whose training part uses :func:`predict_settling` at the measured
sharpness.
"""

from __future__ import annotations

import numpy as np

from experiments._harness import Report
from gdyn_jax import linearize, optimizers
from gdyn_jax.plotting import plot_root_locus, plot_step_response

FACTORIES = {"sgd": "sgd", "momentum": "momentum", "nag": "nesterov"}
STEP_CASES = {
    "sgd": ((0.3, None), (1.0, None), (1.6, None)),
    "momentum": ((0.1, 0.5), (0.1, 0.9), (0.5, 0.5), (0.5, 0.9)),
    "nag": ((0.1, 0.5), (0.1, 0.9), (0.5, 0.5), (0.5, 0.9)),
}
BETA, A = 0.5, 0.5  # the zeros and stability limits are checked at this (a, beta)


def factory(name: str):
    """The optimizer factory of ``name`` (a key of ``FACTORIES``)."""
    return optimizers.get(FACTORIES[name])


def predict_settling(name: str, grid: dict, curvature: float, steps: int = 20000) -> dict:
    """Stability, 2% settling time and overshoot (inf where unstable) of every grid loop."""
    info = linearize.step_info(linearize.linearize_grid(factory(name), grid, curvature), steps)
    stable = np.asarray(info["Stable"], bool)
    settling, overshoot = (np.where(stable, info[k], np.inf) for k in ("SettlingTime", "Overshoot"))
    return {"stable": stable, "settling": settling, "overshoot": overshoot}


def theory(report: Report, map_size: int) -> None:
    """The theory part in a report: its paragraphs, scored rows and three figures (the maps on
    a ``map_size`` × ``map_size`` grid of (a, β))."""
    report.text(
        "Theory at h = 1 (so K = a), computed by `linearize` and set beside the closed forms."
    )
    zeros = {
        n: linearize.transfer_function(linearize.linearize(factory(n)(A, BETA), 1.0)).zeros()
        for n in ("momentum", "nag")
    }
    nag_zero, mom_zero = float(np.real(zeros["nag"][0])), float(np.abs(zeros["momentum"][0]))
    expected = BETA / (1 + BETA)
    report.compare(
        f"NAG closed-loop zero at β={BETA}", nag_zero, expected, rtol=1e-6, label="β/(1+β)"
    )
    quantity = f"momentum closed-loop zero at β={BETA}"
    report.compare(quantity, mom_zero, 0.0, atol=1e-9, label="Kz numerator")
    for name, formula, expected in (
        ("sgd", "2/a", 2 / A),
        ("momentum", "(2+2β)/a", (2 + 2 * BETA) / A),
        ("nag", "(2+2β)/((1+2β)a)", (2 + 2 * BETA) / ((1 + 2 * BETA) * A)),
    ):
        opt = factory(name)(A) if name == "sgd" else factory(name)(A, BETA)
        quantity = f"{name} stability limit at a={A}" + ("" if name == "sgd" else f", β={BETA}")
        limit = linearize.max_stable_curvature(opt)
        report.compare(quantity, limit, expected, rtol=1e-6, label=formula)
    overshoot = linearize.step_info(linearize.linearize(factory("sgd")(0.3), 1.0))["Overshoot"]
    report.compare("SGD overshoot at K=0.3 (first order: monotone)", overshoot, 0.0, atol=1e-9)
    lrs, betas = np.linspace(0.02, 4.0, map_size), np.linspace(0.0, 0.98, map_size)
    plane = {"learning_rate": lrs, "beta": betas}
    maps = {n: predict_settling(n, plane, 1.0, 3000) for n in ("momentum", "nag")}
    mom, nag = maps["momentum"]["overshoot"], maps["nag"]["overshoot"]
    both = np.isfinite(mom) & np.isfinite(nag)  # stable in both
    small, no_more = both & (lrs[:, None] <= 1.0), nag <= mom + 1e-9
    quantity = "fraction of stable map points with K ≤ 1 where NAG overshoots no more than momentum"
    report.compare(quantity, np.mean(no_more[small]), 1.0, atol=0.05, label="Wu et al.")
    report.text(
        f"Over the whole stable map the fraction is {np.mean(no_more[both]):.2f}: "
        "for K > 1 NAG's poles turn negative real and it overshoots more than momentum, "
        "before its earlier stability limit (2+2β)/(1+2β) < 2+2β."
    )
    _figures(report, lrs, betas, maps, zeros)


def _figures(report: Report, lrs, betas, maps: dict, zeros: dict) -> None:
    caption = "Step responses of SGD, momentum and NAG (h = 1)"
    with report.figure("step_responses.png", caption, (15, 4.2)) as fig:
        axes = fig.subplots(1, 3, sharey=True)
        for ax, (name, cases) in zip(axes, STEP_CASES.items(), strict=True):
            for a, b in cases:
                opt = factory(name)(a) if b is None else factory(name)(a, b)
                label = f"a={a:g}" + ("" if b is None else f", β={b:g}")
                response = linearize.step_response(linearize.linearize(opt, 1.0), 60)
                plot_step_response(ax, response, label=label)
            ax.set(title=f"{name}: step response", ylim=(-0.5, 2.2))
            ax.legend(fontsize=8)
    caption = "Root loci in the learning rate (h = 1); circles: zeros at a = 0.5"
    with report.figure("root_loci.png", caption, (17, 5)) as fig:
        a = np.linspace(0.01, 4.0, 400)
        for ax, name in zip(fig.subplots(1, 3), FACTORIES, strict=True):
            fixed = {} if name == "sgd" else {"beta": BETA}
            poles = linearize.root_locus(factory(name), "learning_rate", a, 1.0, **fixed)
            title = f"{name}" + (f", β = {BETA}" if fixed else "")
            plot_root_locus(ax, a, poles, name="learning rate a", title=title)
            z = zeros.get(name, np.array([]))
            ax.plot(np.real(z), np.imag(z), "o", mfc="none", mec="r", ms=10)
    caption = "Settling time and overshoot over (a, β) at h = 1; white: unstable"
    with report.figure("settling_overshoot_maps.png", caption, (12, 9)) as fig:
        axes = fig.subplots(2, 2)
        extent = [betas[0], betas[-1], lrs[0], lrs[-1]]
        for col, name in enumerate(("momentum", "nag")):
            m = {k: np.where(maps[name]["stable"], v, np.nan) for k, v in maps[name].items()}
            panels = (
                (np.log10(np.maximum(m["settling"], 1)), "log10 2% settling time (steps)", None),
                (m["overshoot"], "overshoot (%, clipped at 100)", 100),
            )
            for ax, (value, label, vmax) in zip(axes[:, col], panels, strict=True):
                im = ax.imshow(value, origin="lower", aspect="auto", extent=extent, vmax=vmax)
                fig.colorbar(im, ax=ax, label=label)
                ax.set(title=name, xlabel="momentum β", ylabel="learning rate a (= K)")

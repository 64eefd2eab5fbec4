r"""Why momentum really works (Goh, Distill 2017): rates, regions and optimal tuning.

For one eigenvalue :math:`\lambda` of the Hessian, heavy-ball momentum
(:math:`v \leftarrow \beta v + g`, :math:`\theta \leftarrow \theta - a v`) is a two-state loop
whose rate is the spectral radius of its closed loop. Over the :math:`(a, \beta)` plane its two
poles are real and positive (**monotone**), complex of modulus :math:`\sqrt\beta` (**ripples**;
Goh prints :math:`2\sqrt\beta`), real with a dominant negative one (**1-step oscillation**), or
outside the unit circle (**divergence**, :math:`a\lambda \ge 2(1+\beta)`). For curvatures in
:math:`[\lambda_n, \lambda_1]`, :math:`\kappa = \lambda_1/\lambda_n`, the optimal tuning is
:math:`a^* = (2/(\sqrt{\lambda_1}+\sqrt{\lambda_n}))^2`,
:math:`\beta^* = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2` with rate
:math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`, against gradient descent's :math:`(\kappa-1)/(\kappa+1)`
at :math:`a = 2/(\lambda_1+\lambda_n)`. Every number comes from :mod:`gdyn_jax.linearize` and is
set beside Goh's closed forms; a run on an ill-conditioned quadratic shows the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from experiments._harness import Modes, Report
from experiments._quadratic import tuned_runs
from gdyn_jax import extras, linearize, optimizers

TITLE = "Momentum's convergence rate over (a, beta), its regions and optimal tuning (Goh 2017)"
SOURCE = "G. Goh, 'Why Momentum Really Works', Distill 2017"
REGIONS = ("monotone", "ripples", "oscillation", "divergence")
QUADRATIC_KAPPA = 100.0


@dataclass(frozen=True)
class Settings(Modes):
    grid: int = 200
    region_grid: int = 120
    kappas: tuple[float, ...] = (10.0, 100.0, 1000.0)
    dim: int = 40
    steps: int = 400
    search: tuple[tuple[str, int], ...] = ()  # optimal_hyperparameters' search options

    TINY = dict(
        grid=40,
        region_grid=24,
        kappas=(10.0, 100.0),
        dim=8,
        steps=150,
        search=(("grid_size", 15), ("rounds", 12), ("num_curvatures", 17)),
    )
    FULL = dict(
        grid=400,
        region_grid=300,
        kappas=(10.0, 100.0, 1e3, 1e4),
        dim=100,
        steps=800,
        search=(("grid_size", 81), ("rounds", 30)),
    )


def closed_form(kappa: float) -> dict:
    """Goh's optimal momentum and GD tunings and rates for curvatures in [1, kappa]."""
    sk = np.sqrt(kappa)
    rate = (sk - 1) / (sk + 1)
    return {
        "momentum": {"learning_rate": (2 / (sk + 1)) ** 2, "beta": rate**2, "rate": rate},
        "gd": {"learning_rate": 2 / (kappa + 1), "rate": (kappa - 1) / (kappa + 1)},
    }


def classify(poles: np.ndarray, tol: float = 1e-9) -> str:
    """Goh's region of a pole set: divergence, ripples, oscillation or monotone."""
    if np.max(np.abs(poles)) >= 1.0 - tol:
        return "divergence"
    if np.any(np.abs(poles.imag) > tol):
        return "ripples"
    return "oscillation" if poles[np.argmax(np.abs(poles))].real < 0 else "monotone"


def rate_maps(s: Settings) -> dict:
    """Rate, stability and regions over the (a, beta) plane for the eigenvalue 1."""
    a, beta = np.linspace(0.0, 4.2, s.grid + 1)[1:], np.linspace(0.0, 0.995, s.grid)
    ra, rb = np.linspace(0.0, 4.2, s.region_grid + 1)[1:], np.linspace(0.0, 0.99, s.region_grid)
    with jax.enable_x64(True):
        grid = {"learning_rate": a, "beta": beta}
        rate = np.asarray(linearize.convergence_rate(optimizers.momentum, grid, [1.0]))
        stable = np.asarray(linearize.stability_region(optimizers.momentum, grid, 1.0), bool)
        region_grid = {"learning_rate": ra, "beta": rb}
        system = linearize.linearize_grid(optimizers.momentum, region_grid, 1.0)
    poles = np.linalg.eigvals(np.asarray(system.A))  # (len(ra), len(rb), 2)
    regions = np.array([[REGIONS.index(classify(p)) for p in row] for row in poles])
    return {
        "a": a,
        "beta": beta,
        "rate": rate.reshape(a.size, beta.size),
        "stable": stable,
        "region_a": ra,
        "region_beta": rb,
        "regions": regions,
        "poles": poles,
    }


def run(s: Settings, report: Report) -> None:
    maps = rate_maps(s)
    boundary = maps["stable"] == (maps["a"][:, None] < 2 * (1 + maps["beta"][None]))
    counts = {name: int(np.sum(maps["regions"] == i)) for i, name in enumerate(REGIONS)}
    ripple = maps["regions"] == REGIONS.index("ripples")
    with np.errstate(divide="ignore"):  # beta = 0 has no complex poles
        modulus = np.max(np.abs(maps["poles"]), axis=-1) / np.sqrt(maps["region_beta"])[None, :]
    report.text(
        "Rate map: `linearize.convergence_rate(momentum, {learning_rate, beta}, [1.0])`; "
        "stability from `linearize.stability_region`; regions from the poles of the batched "
        "closed loops of `linearize.linearize_grid` on a coarser grid. Goh prints the modulus of "
        "the complex poles as 2 sqrt(beta); their product is beta, so it is sqrt(beta)."
    )
    quantity = "stability map = {a < 2(1+beta)}: fraction of points"
    report.compare(quantity, boundary.mean(), 1.0, atol=0.005)
    report.compare("regions present (of 4)", sum(v > 0 for v in counts.values()), 4)
    for end, value in (("min", modulus[ripple].min()), ("max", modulus[ripple].max())):
        quantity = f"ripple poles ({ripple.sum()} points): {end} modulus / sqrt(beta)"
        report.compare(quantity, value, 1.0, atol=1e-9, label="Goh prints 2")
    table = []
    with jax.enable_x64(True):
        for kappa in s.kappas:
            cf, found = closed_form(kappa), {}
            for name, factory, names in (
                ("momentum", optimizers.momentum, ("learning_rate", "beta")),
                ("gd", optimizers.sgd, ("learning_rate",)),
            ):
                search = dict(names=names, **dict(s.search))
                hp, rate = linearize.optimal_hyperparameters(factory, 1.0, kappa, **search)
                found[name] = {k: float(v) for k, v in hp.items()} | {"rate": float(rate)}
                for key in (*names, "rate"):  # the rate to 0.5%, the tuning to 2%
                    rtol = 0.005 if key == "rate" else 0.02
                    quantity = f"kappa={kappa:g}: {name} {key}*"
                    report.compare(
                        quantity, found[name][key], cf[name][key], rtol=rtol, label="Goh"
                    )
            table.append({"kappa": kappa, "closed_form": cf, "library": found})
    eig, cf = np.geomspace(1.0, QUADRATIC_KAPPA, s.dim), closed_form(QUADRATIC_KAPPA)
    momentum = {k: cf["momentum"][k] for k in ("learning_rate", "beta")}
    rules = {"momentum": (optimizers.momentum, momentum)}
    rules["gd"] = (optimizers.sgd, {"learning_rate": cf["gd"]["learning_rate"]})
    quad = tuned_runs(report, rules, eig, s.steps, 10, f"quadratic kappa={QUADRATIC_KAPPA:g}")
    _figures(report, maps, table)
    report.record(
        region_counts=counts,
        stability_map_agreement=boundary.mean(),
        optimal=table,
        ripple_modulus_ratio=[modulus[ripple].min(), modulus[ripple].max()],
        quadratic_run=quad,
    )


def _figures(report: Report, maps: dict, table: list) -> None:
    caption = "Convergence rate over (a, beta) and Goh's four regions"
    with report.figure("rate_map.png", caption, (12, 4.8)) as fig:
        left, right = fig.subplots(1, 2)
        rate = np.where(maps["stable"], maps["rate"], np.nan).T
        im = left.pcolormesh(maps["a"], maps["beta"], rate, vmin=0, vmax=1, shading="auto")
        levels = [0.2, 0.4, 0.6, 0.8, 0.95]
        left.contour(
            maps["a"], maps["beta"], maps["rate"].T, levels=levels, colors="w", linewidths=0.6
        )
        left.plot(maps["a"], np.clip(maps["a"] / 2 - 1, 0, None), "r--", label="a = 2(1+β)")
        left.set(ylim=(0, maps["beta"][-1]), xlabel="learning rate a (λ = 1)", ylabel="β")
        left.set_title("Heavy-ball rate (white: divergence)")
        left.legend(loc="lower right", fontsize=8)
        fig.colorbar(im, ax=left, label="spectral radius per step")
        cmap = extras.colors.ListedColormap(["#4c72b0", "#55a868", "#dd8452", "#c44e52"])
        regions = (maps["region_a"], maps["region_beta"], maps["regions"].T)
        right.pcolormesh(*regions, cmap=cmap, vmin=-0.5, vmax=3.5, shading="auto")
        for i, name in enumerate(REGIONS):
            right.plot([], [], "s", color=cmap(i), label=name)
        right.set(xlabel="learning rate a (λ = 1)", ylabel="β", title="Regions from the poles")
        right.legend(loc="upper left", fontsize=8)
    with report.figure("rates_vs_kappa.png", "Optimal momentum and GD rates against kappa") as fig:
        ax = fig.subplots()
        k = np.geomspace(2, 2 * max(row["kappa"] for row in table), 100)
        ax.loglog(k, (np.sqrt(k) + 1) / 2, "C0-", label="momentum, closed form")
        ax.loglog(k, (k + 1) / 2, "C3-", label="GD, closed form")
        for name, style in (("momentum", "C0o"), ("gd", "C3s")):
            steps = [1 / (1 - row["library"][name]["rate"]) for row in table]
            ax.loglog([row["kappa"] for row in table], steps, style, label=f"{name}, linearize")
        ax.set(xlabel="condition number κ", ylabel="steps per e-fold, 1/(1-ρ)")
        ax.legend(fontsize=8)

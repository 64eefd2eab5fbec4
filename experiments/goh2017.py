r"""Why momentum really works (Goh, Distill 2017): rates, regions and optimal tuning.

For one eigenvalue :math:`\lambda` of the Hessian, heavy-ball momentum
(:math:`v \leftarrow \beta v + g`, :math:`\theta \leftarrow \theta - a v`) is a linear
two-state loop whose convergence rate is the spectral radius of its closed loop. Over the
:math:`(a, \beta)` plane the loop's two poles are

- real and positive (dominant): **monotone** decrease;
- complex, of modulus :math:`\sqrt\beta`: **ripples** (Goh prints :math:`2\sqrt\beta`;
  the correct modulus is :math:`\sqrt\beta`, checked here on the library's poles);
- real with a dominant negative pole: **1-step oscillation**;
- outside the unit circle: **divergence** (:math:`a\lambda \ge 2(1+\beta)`).

For curvatures in :math:`[\lambda_n, \lambda_1]` with :math:`\kappa = \lambda_1/\lambda_n`,
the optimal tuning is :math:`a^* = (2/(\sqrt{\lambda_1}+\sqrt{\lambda_n}))^2`,
:math:`\beta^* = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2`, with rate
:math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`, against gradient descent's
:math:`(\kappa-1)/(\kappa+1)` at :math:`a = 2/(\lambda_1+\lambda_n)`. Every number here comes
from :mod:`gdyn_jax.linearize` (``convergence_rate``, ``stability_region``,
``optimal_hyperparameters``, ``transfer_function``) and is set beside Goh's closed forms;
a run of :mod:`gdyn_jax.optimizers` on an ill-conditioned quadratic shows the rate.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._quadratic import error_norms, fitted_rate, plot_error_decay
from experiments._report import Report, save_figure, write_summary

TITLE = "Momentum's convergence rate over (a, beta), its regions and optimal tuning (Goh 2017)"

SETTINGS = {
    "tiny": {
        "grid": 40,
        "region_grid": 24,
        "kappas": (10.0, 100.0),
        "dim": 8,
        "steps": 150,
        "search": {"grid_size": 15, "rounds": 12, "num_curvatures": 17},
    },
    "quick": {
        "grid": 200,
        "region_grid": 120,
        "kappas": (10.0, 100.0, 1000.0),
        "dim": 40,
        "steps": 400,
        "search": {},
    },
    "full": {
        "grid": 400,
        "region_grid": 300,
        "kappas": (10.0, 100.0, 1000.0, 1e4),
        "dim": 100,
        "steps": 800,
        "search": {"grid_size": 81, "rounds": 30},
    },
}
LAMBDA = 1.0  # the one eigenvalue of the (a, beta) maps
REGIONS = ("monotone", "ripples", "oscillation", "divergence")


def closed_form(kappa: float, lam_min: float = 1.0) -> dict:
    """Goh's optimal momentum and GD tunings and rates, curvatures in [lam_min, kappa lam_min]."""
    lam_max = kappa * lam_min
    sk = np.sqrt(kappa)
    return {
        "momentum": {
            "learning_rate": (2.0 / (np.sqrt(lam_max) + np.sqrt(lam_min))) ** 2,
            "beta": ((sk - 1) / (sk + 1)) ** 2,
            "rate": (sk - 1) / (sk + 1),
        },
        "gd": {"learning_rate": 2.0 / (lam_max + lam_min), "rate": (kappa - 1) / (kappa + 1)},
    }


def _as_map(values, shape: tuple[int, int]) -> np.ndarray:
    """A library grid result as an (len(a), len(beta)) float array."""
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(shape)


def classify(poles: np.ndarray, tol: float = 1e-9) -> str:
    """Goh's region of a pole set: divergence, ripples, oscillation or monotone."""
    radius = np.max(np.abs(poles))
    if radius >= 1.0 - tol:
        return "divergence"
    if np.any(np.abs(poles.imag) > tol):
        return "ripples"
    dominant = poles[np.argmax(np.abs(poles))]
    return "oscillation" if dominant.real < 0 else "monotone"


def _optimum(factory, mu: float, lam_max: float, names: tuple[str, ...], **search) -> dict:
    """linearize.optimal_hyperparameters as a flat dict of floats (with 'rate')."""
    from gdyn_jax import linearize

    result = linearize.optimal_hyperparameters(factory, mu, lam_max, names=names, **search)
    if isinstance(result, tuple):  # (hyperparameters, rate)
        hparams, rate = result
        result = {**dict(hparams), "rate": rate}
    elif not isinstance(result, dict):  # a dataclass / NamedTuple
        result = {k: getattr(result, k) for k in (*names, "rate") if hasattr(result, k)} | (
            dict(result.hyperparameters) if hasattr(result, "hyperparameters") else {}
        )
    return {k: float(np.asarray(v)) for k, v in result.items() if np.ndim(v) == 0}


def rate_maps(cfg: dict) -> dict:
    """Convergence rate, stability and regions over the (a, beta) plane for lambda = 1."""
    import jax

    from gdyn_jax import linearize, optimizers

    a = np.linspace(0.0, 4.2, cfg["grid"] + 1)[1:] / LAMBDA
    beta = np.linspace(0.0, 0.995, cfg["grid"])
    grid = {"learning_rate": a, "beta": beta}
    shape = (a.size, beta.size)
    with jax.enable_x64(True):
        rate = _as_map(linearize.convergence_rate(optimizers.momentum, grid, [LAMBDA]), shape)
        stable = _as_map(linearize.stability_region(optimizers.momentum, grid, LAMBDA), shape)
    ra = np.linspace(0.0, 4.2, cfg["region_grid"] + 1)[1:] / LAMBDA
    rb = np.linspace(0.0, 0.99, cfg["region_grid"])
    with jax.enable_x64(True):  # one batched closed loop per (a, beta): A (na, nb, 2, 2)
        system = linearize.linearize_grid(
            optimizers.momentum, {"learning_rate": ra, "beta": rb}, LAMBDA
        )
    poles = np.linalg.eigvals(np.asarray(system.A))
    regions = np.array([[REGIONS.index(classify(p)) for p in row] for row in poles])
    return {
        "a": a,
        "beta": beta,
        "rate": rate,
        "stable": stable.astype(bool),
        "region_a": ra,
        "region_beta": rb,
        "regions": regions,
        "poles": poles,
    }


def ripple_modulus_check(maps: dict) -> dict:
    """Complex-pole modulus at every ripple point of the region grid against sqrt(beta)."""
    ripple = maps["regions"] == REGIONS.index("ripples")
    modulus = np.max(np.abs(maps["poles"]), axis=-1)
    sqrt_beta = np.broadcast_to(np.sqrt(maps["region_beta"])[None, :], modulus.shape)
    ratio = (modulus / np.where(sqrt_beta > 0, sqrt_beta, np.nan))[ripple]
    return {
        "points": int(ripple.sum()),
        "ratio_to_sqrt_beta_min": float(np.nanmin(ratio)) if ratio.size else None,
        "ratio_to_sqrt_beta_max": float(np.nanmax(ratio)) if ratio.size else None,
    }


def optimal_table(cfg: dict) -> list[dict]:
    """The library's optimal tunings for several kappa beside Goh's closed forms."""
    import jax

    from gdyn_jax import optimizers

    rows = []
    with jax.enable_x64(True):
        for kappa in cfg["kappas"]:
            cf = closed_form(kappa)
            hb = _optimum(
                optimizers.momentum, 1.0, kappa, ("learning_rate", "beta"), **cfg["search"]
            )
            gd = _optimum(optimizers.sgd, 1.0, kappa, ("learning_rate",), **cfg["search"])
            rows.append({"kappa": kappa, "closed_form": cf, "library": {"momentum": hb, "gd": gd}})
    return rows


def quadratic_run(cfg: dict, kappa: float = 100.0) -> dict:
    """Optimally tuned momentum and GD on a quadratic with eigenvalues spread in [1, kappa]."""
    from gdyn_jax import linearize, optimizers

    eig = np.geomspace(1.0, kappa, cfg["dim"])
    cf = closed_form(kappa)
    tuned = {
        "momentum": (
            optimizers.momentum,
            {k: cf["momentum"][k] for k in ("learning_rate", "beta")},
        ),
        "gd": (optimizers.sgd, {"learning_rate": cf["gd"]["learning_rate"]}),
    }
    out = {"kappa": kappa, "eigenvalues": eig, "errors": {}, "measured": {}, "predicted": {}}
    for name, (factory, hp) in tuned.items():
        errors = error_norms(factory(**hp), eig, cfg["steps"])
        grid = {k: np.asarray([v]) for k, v in hp.items()}
        out["errors"][name] = errors
        out["predicted"][name] = float(np.ravel(linearize.convergence_rate(factory, grid, eig))[0])
        out["measured"][name] = fitted_rate(errors, skip=10)
    return out


def _plot_maps(maps: dict, kappa_opt: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    ax = axes[0]
    rate = np.where(maps["stable"], maps["rate"], np.nan)
    im = ax.pcolormesh(
        maps["a"], maps["beta"], rate.T, cmap="viridis", vmin=0, vmax=1, shading="auto"
    )
    ax.contour(
        maps["a"],
        maps["beta"],
        maps["rate"].T,
        levels=[0.2, 0.4, 0.6, 0.8, 0.95],
        colors="w",
        linewidths=0.6,
    )
    ax.plot(
        maps["a"],
        np.clip(maps["a"] * LAMBDA / 2 - 1, 0, None),
        "r--",
        lw=1,
        label=r"stability limit $a\lambda = 2(1+\beta)$",
    )
    ax.set_ylim(maps["beta"][0], maps["beta"][-1])
    fig.colorbar(im, ax=ax, label="convergence rate (spectral radius per step)")
    ax.set_xlabel(r"learning rate $a$ (for $\lambda$ = 1)")
    ax.set_ylabel(r"momentum $\beta$")
    ax.set_title("Heavy-ball convergence rate, one eigenvalue (white: divergence)")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    cmap = ListedColormap(["#4c72b0", "#55a868", "#dd8452", "#c44e52"])
    ax.pcolormesh(
        maps["region_a"],
        maps["region_beta"],
        maps["regions"].T,
        cmap=cmap,
        vmin=-0.5,
        vmax=3.5,
        shading="auto",
    )
    for i, name in enumerate(REGIONS):
        ax.plot([], [], "s", color=cmap(i), label=name)
    ax.set_xlabel(r"learning rate $a$ (for $\lambda$ = 1)")
    ax.set_ylabel(r"momentum $\beta$")
    ax.set_title("Regions from the library's poles (Goh 2017)")
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def _plot_kappa(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.geomspace(2, max(r["kappa"] for r in rows) * 2, 100)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.loglog(
        ks,
        1 / (1 - (np.sqrt(ks) - 1) / (np.sqrt(ks) + 1)),
        "C0-",
        label=r"momentum, closed form $1/(1-\frac{\sqrt{\kappa}-1}{\sqrt{\kappa}+1})$",
    )
    ax.loglog(
        ks,
        1 / (1 - (ks - 1) / (ks + 1)),
        "C3-",
        label=r"GD, closed form $1/(1-\frac{\kappa-1}{\kappa+1})$",
    )
    kap = [r["kappa"] for r in rows]
    ax.loglog(
        kap,
        [1 / (1 - r["library"]["momentum"]["rate"]) for r in rows],
        "C0o",
        label="momentum, linearize.optimal_hyperparameters",
    )
    ax.loglog(
        kap,
        [1 / (1 - r["library"]["gd"]["rate"]) for r in rows],
        "C3s",
        label="GD, linearize.optimal_hyperparameters",
    )
    ax.set_xlabel(r"condition number $\kappa$")
    ax.set_ylabel(r"steps per e-fold of error, $1/(1-\rho)$")
    ax.set_title("Optimal rates against condition number")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Rate maps, regions, optimal tunings against kappa and a quadratic run."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = SETTINGS[mode]
    report = Report(TITLE, source="G. Goh, 'Why Momentum Really Works', Distill 2017")
    maps = rate_maps(cfg)
    ripples = ripple_modulus_check(maps)
    table = optimal_table(cfg)
    quad = quadratic_run(cfg)

    # The stability boundary of the map against a*lambda = 2(1 + beta).
    boundary_ok = maps["stable"] == (maps["a"][:, None] * LAMBDA < 2 * (1 + maps["beta"][None]))
    report.text(
        "Rate map: `linearize.convergence_rate(momentum, {learning_rate, beta}, [1.0])` on a "
        f"{maps['a'].size}x{maps['beta'].size} grid; stability from "
        "`linearize.stability_region`; regions from the poles of "
        "the batched closed loops of `linearize.linearize_grid` on a coarser grid."
    )
    report.compare(
        "stability map = {a lambda < 2(1+beta)} (fraction of grid points)",
        float(boundary_ok.mean()),
        1.0,
        atol=0.005,
    )
    counts = {name: int(np.sum(maps["regions"] == i)) for i, name in enumerate(REGIONS)}
    report.compare(
        "all four regions present (monotone, ripples, oscillation, divergence)",
        sum(v > 0 for v in counts.values()),
        4,
        atol=0,
    )
    report.text(
        "Goh's article prints the modulus of the complex poles as 2 sqrt(beta); the correct "
        "value is sqrt(beta) (their product is beta). The library's poles settle it:"
    )
    if ripples["points"]:
        for end in ("min", "max"):
            report.compare(
                f"ripple poles: {end} of modulus / sqrt(beta) over "
                f"{ripples['points']} ripple points",
                ripples[f"ratio_to_sqrt_beta_{end}"],
                1.0,
                atol=1e-9,
                expected_label="1 (Goh prints 2)",
            )
    for row in table:
        k, cf, lib = row["kappa"], row["closed_form"], row["library"]
        report.compare(
            f"kappa={k:g}: momentum a*",
            lib["momentum"]["learning_rate"],
            cf["momentum"]["learning_rate"],
            rtol=0.02,
        )
        report.compare(
            f"kappa={k:g}: momentum beta*",
            lib["momentum"]["beta"],
            cf["momentum"]["beta"],
            rtol=0.02,
        )
        report.compare(
            f"kappa={k:g}: momentum optimal rate",
            lib["momentum"]["rate"],
            cf["momentum"]["rate"],
            rtol=0.005,
        )
        report.compare(
            f"kappa={k:g}: GD a*", lib["gd"]["learning_rate"], cf["gd"]["learning_rate"], rtol=0.02
        )
        report.compare(
            f"kappa={k:g}: GD optimal rate", lib["gd"]["rate"], cf["gd"]["rate"], rtol=0.005
        )
    for name in ("momentum", "gd"):
        report.compare(
            f"quadratic kappa={quad['kappa']:g}: {name} measured rate vs predicted",
            quad["measured"][name],
            quad["predicted"][name],
            rtol=0.03,
        )
    _plot_maps(maps, table[-1], out_dir / "rate_map.png")
    report.figure("rate_map.png", "Convergence rate over (a, beta) and Goh's four regions")
    _plot_kappa(table, out_dir / "rates_vs_kappa.png")
    report.figure("rates_vs_kappa.png", "Optimal momentum vs GD rates against kappa")
    plot_error_decay(
        quad,
        out_dir / "quadratic_run.png",
        f"Quadratic, {quad['eigenvalues'].size} eigenvalues in [1, {quad['kappa']:g}]",
    )
    report.figure("quadratic_run.png", "Measured error decay on a quadratic vs predicted rate")
    summary = {
        "eigenvalue": LAMBDA,
        "region_counts": counts,
        "stability_map_agreement": float(boundary_ok.mean()),
        "ripple_modulus": ripples,
        "optimal": table,
        "quadratic_run": {
            "kappa": quad["kappa"],
            "dim": int(quad["eigenvalues"].size),
            "measured_rate": quad["measured"],
            "predicted_rate": quad["predicted"],
        },
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

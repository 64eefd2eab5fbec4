r"""Worst-case rates on quadratics (Lessard, Recht, Packard 2016, Proposition 1).

For quadratics with :math:`mI \preceq Q \preceq LI` and :math:`\kappa = L/m`, the tuned
methods converge at the worst-case rates

- gradient descent, :math:`a = 2/(L+m)`: :math:`(\kappa-1)/(\kappa+1)`;
- heavy ball, :math:`a = 4/(\sqrt L+\sqrt m)^2`,
  :math:`\beta = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2`: :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`;
- Nesterov (standard), :math:`a = 1/L`, :math:`\beta=(\sqrt\kappa-1)/(\sqrt\kappa+1)`:
  :math:`1-1/\sqrt\kappa`;
- Nesterov (optimal for quadratics), :math:`a = 4/(3L+m)`,
  :math:`\beta=(\sqrt{3\kappa+1}-2)/(\sqrt{3\kappa+1}+2)`: :math:`1-2/\sqrt{3\kappa+1}`.

The experiment computes each worst case with ``linearize.convergence_rate`` (the largest
spectral radius of the closed loop over a fine grid of curvatures in :math:`[m, L]`,
including the ends) and sets it beside the closed forms, for several :math:`\kappa`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._quadratic import error_norms, fitted_rate, plot_error_decay
from experiments._report import Report, save_figure, write_summary

TITLE = "Worst-case rates of GD, heavy ball and Nesterov on quadratics (Lessard et al. 2016)"

SETTINGS = {
    "tiny": {"kappas": (10.0, 100.0), "curvatures": 200, "dim": 8, "steps": 200},
    "quick": {"kappas": (2.0, 10.0, 100.0, 1e3, 1e4), "curvatures": 2000, "dim": 40, "steps": 400},
    "full": {
        "kappas": (2.0, 10.0, 100.0, 1e3, 1e4, 1e5),
        "curvatures": 10000,
        "dim": 100,
        "steps": 1000,
    },
}
METHODS = ("gd", "heavy_ball", "nesterov", "nesterov_optimal")


def tunings(kappa: float, m: float = 1.0) -> dict:
    """The tuned (factory name, hyperparameters, closed-form rate) of each method."""
    L = kappa * m
    sk = np.sqrt(kappa)
    s3 = np.sqrt(3 * kappa + 1)
    return {
        "gd": ("sgd", {"learning_rate": 2 / (L + m)}, (kappa - 1) / (kappa + 1)),
        "heavy_ball": (
            "momentum",
            {
                "learning_rate": 4 / (np.sqrt(L) + np.sqrt(m)) ** 2,
                "beta": ((sk - 1) / (sk + 1)) ** 2,
            },
            (sk - 1) / (sk + 1),
        ),
        "nesterov": ("nesterov", {"learning_rate": 1 / L, "beta": (sk - 1) / (sk + 1)}, 1 - 1 / sk),
        "nesterov_optimal": (
            "nesterov",
            {"learning_rate": 4 / (3 * L + m), "beta": (s3 - 2) / (s3 + 2)},
            1 - 2 / s3,
        ),
    }


def worst_case_rate(factory_name: str, hparams: dict, curvatures: np.ndarray) -> float:
    """Largest closed-loop spectral radius over ``curvatures`` (linearize.convergence_rate)."""
    import jax

    from gdyn_jax import linearize, optimizers

    grid = {k: np.asarray([v], dtype=np.float64) for k, v in hparams.items()}
    with jax.enable_x64(True):
        rate = linearize.convergence_rate(optimizers.get(factory_name), grid, curvatures)
    return float(np.max(np.asarray(rate)))


def rate_table(cfg: dict) -> list[dict]:
    rows = []
    for kappa in cfg["kappas"]:
        curv = np.linspace(1.0, kappa, cfg["curvatures"])
        for method, (factory, hp, closed) in tunings(kappa).items():
            rows.append(
                {
                    "kappa": kappa,
                    "method": method,
                    "optimizer": factory,
                    "hyperparameters": hp,
                    "worst_case_rate": worst_case_rate(factory, hp, curv),
                    "closed_form_rate": closed,
                }
            )
    return rows


def quadratic_run(cfg: dict, kappa: float = 100.0) -> dict:
    """Each tuned method on a quadratic with eigenvalues in [1, kappa]: error per step."""
    from gdyn_jax import optimizers

    eig = np.linspace(1.0, kappa, cfg["dim"])
    errors, measured, predicted = {}, {}, {}
    for method, (factory, hp, _) in tunings(kappa).items():
        errors[method] = error_norms(optimizers.get(factory)(**hp), eig, cfg["steps"])
        measured[method] = fitted_rate(errors[method], skip=30)
        predicted[method] = worst_case_rate(factory, hp, eig)
    return {"kappa": kappa, "errors": errors, "measured": measured, "predicted": predicted}


def _plot_table(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "gd": "GD",
        "heavy_ball": "heavy ball",
        "nesterov": "Nesterov a=1/L",
        "nesterov_optimal": "Nesterov a=4/(3L+m)",
    }
    fig, ax = plt.subplots(figsize=(6.8, 4.8))
    for i, method in enumerate(METHODS):
        sel = [r for r in rows if r["method"] == method]
        k = np.array([r["kappa"] for r in sel])
        ax.loglog(
            k,
            [1 / (1 - r["closed_form_rate"]) for r in sel],
            f"C{i}-",
            lw=1,
            label=f"{labels[method]}: closed form",
        )
        ax.loglog(
            k,
            [1 / (1 - r["worst_case_rate"]) for r in sel],
            f"C{i}o",
            label=f"{labels[method]}: linearize worst case",
        )
    ax.set_xlabel(r"condition number $\kappa = L/m$")
    ax.set_ylabel(r"steps per e-fold of error, $1/(1-\rho)$")
    ax.set_title("Worst-case rates on quadratics (Lessard et al. 2016, Prop. 1)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """The table of worst-case rates against kappa, its figure and a quadratic run."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = SETTINGS[mode]
    report = Report(TITLE, source="Lessard, Recht, Packard, SIAM J. Optim. 26(1), 2016, Prop. 1")
    rows = rate_table(cfg)
    report.text(
        "Worst case = max over a grid of "
        f"{cfg['curvatures']} curvatures in [m, L] (m = 1, ends included) of the closed loop's "
        "spectral radius from `linearize.convergence_rate`. Agreement within 0.1% of 1 - rate "
        "(the distance to 1 is what sets the iteration count)."
    )
    for r in rows:
        gap = 1 - r["closed_form_rate"]
        report.compare(
            f"kappa={r['kappa']:g}: {r['method']} worst-case rate",
            r["worst_case_rate"],
            r["closed_form_rate"],
            atol=1e-3 * gap,
        )
    table = ["| kappa | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for kappa in cfg["kappas"]:
        cells = [f"{r['worst_case_rate']:.6f}" for r in rows if r["kappa"] == kappa]
        table.append(f"| {kappa:g} | " + " | ".join(cells) + " |")
    report.text("Worst-case rates from linearize (rows: kappa):\n\n" + "\n".join(table))
    quad = quadratic_run(cfg)
    report.text(
        f"Quadratic run: {cfg['dim']} curvatures evenly spaced in [1, {quad['kappa']:g}], "
        "theta_0 = 1; measured rate = slope of log ||theta_k|| from step 30, where the "
        "relative error is between 1e-11 and 0.1 (methods with a "
        "double pole at the worst curvature decay like k rho^k, which biases the slope up by "
        "about 1%)."
    )
    for method in METHODS:
        report.compare(
            f"quadratic kappa={quad['kappa']:g}: {method} measured rate",
            quad["measured"][method],
            quad["predicted"][method],
            rtol=0.03,
        )
    _plot_table(rows, out_dir / "rates_vs_kappa.png")
    report.figure("rates_vs_kappa.png", "Worst-case rates against kappa: linearize vs closed form")
    plot_error_decay(
        quad,
        out_dir / "quadratic_run.png",
        f"Tuned methods on a quadratic, curvatures in [1, {quad['kappa']:g}]",
    )
    report.figure("quadratic_run.png", "The tuned methods on a quadratic")
    summary = {
        "rates": rows,
        "quadratic_run": {
            "kappa": quad["kappa"],
            "measured_rate": quad["measured"],
            "predicted_rate": quad["predicted"],
            "final_relative_error": {k: float(e[-1] / e[0]) for k, e in quad["errors"].items()},
        },
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

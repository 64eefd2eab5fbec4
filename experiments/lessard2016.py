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

Beyond quadratics (the paper's §4), ``linearize.robust_rate`` certifies a rate over every
:math:`f \in S(m, L)` with the sector IQC (Lemma 6) and the weighted off-by-one IQC (Lemma 10):
gradient descent keeps :math:`(\kappa-1)/(\kappa+1)`; Nesterov's certified curve lies within a
factor 1.4 of its quadratic rate (in iterations), and the sector IQC alone certifies it only for
:math:`\kappa \lesssim 11.7` (standard tuning) and :math:`\approx 10` (quadratic-optimal tuning);
heavy ball with Polyak's tuning is certified only up to :math:`\kappa \approx 6` (sector) and
:math:`\approx 18` (off-by-one), and indeed fails on the one-dimensional piecewise quadratic of
§4.6 (:math:`m = 1`, :math:`L = 25`), where from :math:`3.07 \le x_0 \le 3.46` it settles into a
limit cycle; the Triple Momentum method (Van Scoy, Freeman, Lynch 2018) is certified at
:math:`1 - 1/\sqrt\kappa`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._quadratic import error_norms, fitted_rate, plot_error_decay
from experiments._report import Report, save_figure, write_summary

TITLE = (
    "Worst-case rates of GD, heavy ball, Nesterov and Triple Momentum on quadratics and "
    "certified over smooth strongly convex losses (Lessard et al. 2016)"
)

SETTINGS = {
    "tiny": {
        "kappas": (10.0, 100.0),
        "curvatures": 200,
        "dim": 8,
        "steps": 200,
        "robust_kappas": (4.0, 25.0, 100.0),
        "starts": 131,
    },
    "quick": {
        "kappas": (2.0, 10.0, 100.0, 1e3, 1e4),
        "curvatures": 2000,
        "dim": 40,
        "steps": 400,
        "robust_kappas": (2.0, 4.0, 10.0, 25.0, 50.0, 100.0, 300.0, 1e3),
        "starts": 1301,
    },
    "full": {
        "kappas": (2.0, 10.0, 100.0, 1e3, 1e4, 1e5),
        "curvatures": 10000,
        "dim": 100,
        "steps": 1000,
        "robust_kappas": tuple(np.geomspace(1.5, 1e3, 25)),
        "starts": 6501,
    },
}
METHODS = ("gd", "heavy_ball", "nesterov", "nesterov_optimal")
LABELS = {
    "gd": "GD a=2/(L+m)",
    "heavy_ball": "heavy ball (Polyak)",
    "nesterov": "Nesterov a=1/L",
    "nesterov_optimal": "Nesterov a=4/(3L+m)",
    "triple_momentum": "Triple Momentum",
}


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

    labels = LABELS
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


# --------------------------------------------------------------------------- beyond quadratics

ROBUST_METHODS = ("gd", "nesterov", "nesterov_optimal", "heavy_ball", "triple_momentum")
# Published thresholds (§4.5-4.6): the largest kappa at which the IQC still certifies rho < 1,
# read off the paper's figures ("approximately", "around"), with the tolerance we allow.
THRESHOLDS = (
    ("nesterov", "sector", 11.7, 0.02),
    ("nesterov_optimal", "sector", 10.0, 0.05),
    ("heavy_ball", "sector", 6.0, 0.05),
    ("heavy_ball", "off_by_one", 18.0, 0.03),
)
COUNTEREXAMPLE = {"m": 1.0, "L": 25.0, "x0": 3.3, "interval": (3.07, 3.46), "shown": 50}


def robust_tuning(method: str, kappa: float, m: float = 1.0) -> tuple[str, dict]:
    """The (factory, hyperparameters) of a method tuned for [m, kappa m]."""
    if method == "triple_momentum":
        return "triple_momentum", {"mu": m, "L": kappa * m}
    factory, hp, _ = tunings(kappa, m)[method]
    return factory, hp


def certified(method: str, kappa: float, iqc: str, tol: float = 1e-6):
    """``linearize.robust_rate`` of the tuned method over S(1, kappa)."""
    from gdyn_jax import linearize, optimizers

    factory, hp = robust_tuning(method, kappa)
    return linearize.robust_rate(optimizers.get(factory)(**hp), 1.0, kappa, iqc=iqc, tol=tol)


def robust_table(cfg: dict) -> list[dict]:
    rows = []
    for kappa in cfg["robust_kappas"]:
        for method in ROBUST_METHODS:
            for iqc in ("sector", "off_by_one"):
                r = certified(method, float(kappa), iqc)
                rows.append(
                    {
                        "kappa": float(kappa),
                        "method": method,
                        "iqc": iqc,
                        "certified_rate": r.rate,
                        "quadratic_rate": r.quadratic_rate,
                        "bracket": r.bracket,
                        "status": r.status,
                    }
                )
    return rows


def certification_threshold(method: str, iqc: str, rtol: float = 1e-3) -> float:
    """The largest kappa with a certificate (rho < 1), by bisection on log kappa."""
    lo, hi = 1.5, 200.0
    while hi / lo > 1 + rtol:
        mid = float(np.sqrt(lo * hi))
        if certified(method, mid, iqc, tol=1e-4).rate is not None:
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


def _piecewise_gradient(x):
    """The gradient of LRP's §4.6 counterexample: 25x (x < 1), x + 24 (1 <= x < 2), 25x - 24."""
    import jax.numpy as jnp

    return jnp.where(x < 1, 25.0 * x, jnp.where(x < 2, x + 24.0, 25.0 * x - 24.0))


def _piecewise_function(x: np.ndarray) -> np.ndarray:
    return np.where(
        x < 1, 12.5 * x**2, np.where(x < 2, 0.5 * x**2 + 24 * x - 12, 12.5 * x**2 - 24 * x + 36)
    )


def heavy_ball_runs(starts: np.ndarray, steps: int) -> np.ndarray:
    """The package's ``momentum`` transform with Polyak's tuning for [1, 25] (a = 1/9,
    beta = 4/9) on the counterexample, from each start (x_{-1} = x_0: zero velocity), in
    float64: iterates of shape (len(starts), steps + 1)."""
    import jax
    import jax.numpy as jnp
    import optax

    from gdyn_jax import optimizers

    factory, hp = robust_tuning("heavy_ball", COUNTEREXAMPLE["L"] / COUNTEREXAMPLE["m"])
    opt = optimizers.get(factory)(**hp)

    def run(x0):
        def step(carry, _):
            x, state = carry
            updates, state = opt.update(_piecewise_gradient(x), state, x)
            x = optax.apply_updates(x, updates)
            return (x, state), x

        _, xs = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        return jnp.concatenate([x0[None], xs])

    with jax.enable_x64(True):
        return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(starts, jnp.float64)))


def periodic_orbit(points: np.ndarray) -> np.ndarray:
    """The exact p-periodic heavy-ball orbit through the pieces visited by ``points`` (one
    period of a simulated cycle): z_{j+1} = z_j - a(s_j z_j + c_j) + beta(z_j - z_{j-1}),
    indices mod p, a linear system solved with numpy."""
    _, hp = robust_tuning("heavy_ball", COUNTEREXAMPLE["L"] / COUNTEREXAMPLE["m"])
    a, beta = hp["learning_rate"], hp["beta"]
    slope = np.where(points < 1, 25.0, np.where(points < 2, 1.0, 25.0))
    offset = np.where(points < 1, 0.0, np.where(points < 2, 24.0, -24.0))
    p = points.size
    system, rhs = np.zeros((p, p)), np.zeros(p)
    for j in range(p):  # z_{j+1} - (1 + beta - a s_j) z_j + beta z_{j-1} = -a c_j
        system[j, (j + 1) % p] += 1.0
        system[j, j] -= 1.0 + beta - a * slope[j]
        system[j, (j - 1) % p] += beta
        rhs[j] = -a * offset[j]
    return np.linalg.solve(system, rhs)


def counterexample(cfg: dict) -> dict:
    """The §4.6 limit cycle: the run from x0 = 3.3, its period and exact orbit, and the
    interval of starts around 3.3 that end on the cycle."""
    steps = 600
    lo, hi = COUNTEREXAMPLE["interval"]
    starts = np.linspace(lo - 0.1, hi + 0.1, cfg["starts"])
    runs = heavy_ball_runs(np.concatenate([[COUNTEREXAMPLE["x0"]], starts]), steps)
    tail = runs[:, -60:]
    cycles = np.max(np.abs(tail), axis=1) > 1e-3  # converged runs reach ~1e-300
    main = runs[0]
    period = next(p for p in range(1, 30) if np.allclose(main[-1], main[-1 - p], atol=1e-12))
    orbit = periodic_orbit(main[-period:])
    inside = cycles[1:]
    i = int(np.argmin(np.abs(starts - COUNTEREXAMPLE["x0"])))
    left, right = i, i
    while left > 0 and inside[left - 1]:
        left -= 1
    while right < starts.size - 1 and inside[right + 1]:
        right += 1
    spacing = float(starts[1] - starts[0])
    return {
        "iterates": main,
        "cycles": bool(cycles[0]),
        "period": period,
        "orbit": orbit,
        "orbit_error": float(np.max(np.abs(np.sort(orbit) - np.sort(main[-period:])))),
        "interval": (float(starts[left]), float(starts[right])),
        "interval_resolution": spacing,
        "paper_interval_cycles": bool(inside[(starts >= lo) & (starts <= hi)].all()),
    }


def _plot_robust(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = LABELS
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    for i, method in enumerate(ROBUST_METHODS):
        sel = [r for r in rows if r["method"] == method and r["iqc"] == "off_by_one"]
        k = np.array([r["kappa"] for r in sel])
        quad = np.array([r["quadratic_rate"] for r in sel])
        ax.loglog(k, 1 / (1 - quad), f"C{i}:", lw=1)
        cert = [(r["kappa"], r["certified_rate"]) for r in sel if r["certified_rate"] is not None]
        if cert:
            kc, rc = np.array(cert).T
            ax.loglog(kc, 1 / (1 - rc), f"C{i}o-", ms=4, label=f"{labels[method]}: certified")
        lost = [r["kappa"] for r in sel if r["certified_rate"] is None]
        if lost:
            ax.loglog(
                lost,
                1 / (1 - quad[np.isin(k, lost)]),
                f"C{i}x",
                ms=8,
                label=f"{labels[method]}: no certificate",
            )
    ax.set_xlabel(r"condition ratio $\kappa = L/m$")
    ax.set_ylabel(r"iterations per e-fold, $1/(1-\rho)$")
    ax.set_title("Certified over S(m, L) (solid, weighted off-by-one IQC) vs quadratics (dotted)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def _plot_counterexample(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = result["iterates"][: COUNTEREXAMPLE["shown"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.0))
    left.plot(xs, "o-", ms=3)
    left.axhline(0.0, color="k", lw=0.5)
    left.set_xlabel("iteration k")
    left.set_ylabel(r"$x_k$")
    left.set_title(f"Heavy ball (a = 1/9, beta = 4/9) from x0 = {COUNTEREXAMPLE['x0']}")
    grid = np.linspace(-2.5, 3.5, 400)
    right.plot(grid, _piecewise_function(grid), "k-", lw=1)
    orbit = np.sort(result["orbit"])
    right.plot(
        orbit,
        _piecewise_function(orbit),
        "ro",
        ms=7,
        label=f"limit cycle, period {result['period']}",
    )
    right.set_xlabel("x")
    right.set_ylabel("f(x)")
    right.set_title("LRP §4.6: m = 1, L = 25")
    right.legend()
    save_figure(fig, path)


def _fmt(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:.5f}"


def _report_robust(report: Report, cfg: dict, rows: list[dict], thresholds: dict, cycle: dict):
    report.text(
        "Beyond quadratics: `linearize.robust_rate` certifies a rate over every m-strongly convex, "
        "L-smooth f (m = 1), from the optimizer's own code (jacfwd open loop), with the sector IQC "
        "(Lemma 6) or the weighted off-by-one IQC (Lemma 10, rho_bar free, with the sector IQC); "
        "an SDP per rho (cvxpy + Clarabel), each certificate re-checked in numpy. None = no "
        "certificate."
    )
    for r in rows:
        kappa, method, iqc, rate = r["kappa"], r["method"], r["iqc"], r["certified_rate"]
        gap = 1.0 / np.sqrt(kappa)
        if method == "gd" and iqc == "sector":
            report.compare(
                f"kappa={kappa:g}: GD certified (sector)",
                rate if rate else np.nan,
                (kappa - 1) / (kappa + 1),
                atol=1e-4,
            )
        if method == "triple_momentum" and iqc == "off_by_one":
            excess = 1e-3 if kappa <= 100 else 5e-2  # certificates near-singular past 1e2
            report.compare(
                f"kappa={kappa:g}: Triple Momentum certified",
                rate if rate else np.nan,
                1 - gap,
                atol=excess * gap,
            )
        if method == "heavy_ball" and kappa >= 25:
            report.compare(
                f"kappa={kappa:g}: heavy ball (Polyak), {iqc}: certificate",
                np.nan,
                np.nan,
                agrees=rate is None and r["quadratic_rate"] < 1,
                expected_label=f"none (quadratic rate {r['quadratic_rate']:.4f} < 1)",
            )
        if method == "nesterov" and iqc == "off_by_one" and rate is not None and kappa == 100:
            ratio = np.log(r["quadratic_rate"]) / np.log(rate)
            report.compare(
                "kappa=100: Nesterov certified / quadratic, in iterations", ratio, 1.4, atol=0.05
            )
    for (method, iqc, published, rtol), value in zip(THRESHOLDS, thresholds.values(), strict=True):
        report.compare(f"largest kappa certified: {method}, {iqc}", value, published, rtol=rtol)
    lo, hi = COUNTEREXAMPLE["interval"]
    res = cycle["interval_resolution"]
    report.compare(
        "counterexample: heavy ball from x0 = 3.3 ends on a limit cycle",
        float(cycle["period"]),
        np.nan,
        agrees=cycle["cycles"],
        expected_label="a limit cycle",
    )
    report.compare(
        "counterexample: cycle vs its exact periodic orbit (max error)",
        cycle["orbit_error"],
        0.0,
        atol=1e-9,
    )
    inside = cycle["paper_interval_cycles"]
    report.compare(
        "counterexample: every start in [3.07, 3.46] ends on the cycle",
        np.nan,
        np.nan,
        agrees=inside,
        expected_label="all (paper)",
    )
    # The paper gives the interval to 0.01: our edges lie within one such step outside it.
    report.compare(
        "counterexample: lowest start on the cycle", cycle["interval"][0], lo, atol=0.01 + res
    )
    report.compare(
        "counterexample: highest start on the cycle", cycle["interval"][1], hi, atol=0.01 + res
    )
    table = ["| kappa | " + " | ".join(ROBUST_METHODS) + " |", "|---" * 6 + "|"]
    for kappa in cfg["robust_kappas"]:
        cells = []
        for method in ROBUST_METHODS:
            sel = {
                r["iqc"]: r for r in rows if r["kappa"] == float(kappa) and r["method"] == method
            }
            sector, off = (_fmt(sel[k]["certified_rate"]) for k in ("sector", "off_by_one"))
            cells.append(f"{sector} / {off} ({sel['off_by_one']['quadratic_rate']:.5f})")
        table.append(f"| {float(kappa):g} | " + " | ".join(cells) + " |")
    report.text(
        "Certified rates, sector / off-by-one (quadratic rate), rows: kappa:\n\n" + "\n".join(table)
    )
    report.text(
        f"Counterexample (§4.6): f = 25x²/2 (x < 1), x²/2 + 24x − 12 (1 ≤ x < 2), "
        f"25x²/2 − 24x + 36 (x ≥ 2), heavy ball with a = 1/9, beta = 4/9 (the package's "
        f"`momentum`, zero initial velocity, i.e. x_-1 = x_0), float64. From x0 = 3.3 the "
        f"iterates settle on a {cycle['period']}-cycle {np.round(np.sort(cycle['orbit']), 6)}"
        f"; starts on a grid of spacing {res:.2g} end on it from {cycle['interval'][0]:.4f} to "
        f"{cycle['interval'][1]:.4f} (paper: 3.07 ≤ x0 ≤ 3.46)."
    )


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
    robust_rows = robust_table(cfg)
    thresholds = {f"{m}/{iqc}": certification_threshold(m, iqc) for m, iqc, _, _ in THRESHOLDS}
    cycle = counterexample(cfg)
    _report_robust(report, cfg, robust_rows, thresholds, cycle)
    _plot_robust(robust_rows, out_dir / "certified_rates.png")
    report.figure("certified_rates.png", "Rates certified over S(m, L) against kappa")
    _plot_counterexample(cycle, out_dir / "counterexample.png")
    report.figure("counterexample.png", "Heavy ball's limit cycle on LRP's counterexample")
    summary = {
        "rates": rows,
        "quadratic_run": {
            "kappa": quad["kappa"],
            "measured_rate": quad["measured"],
            "predicted_rate": quad["predicted"],
            "final_relative_error": {k: float(e[-1] / e[0]) for k, e in quad["errors"].items()},
        },
        "certified_rates": robust_rows,
        "certification_thresholds": thresholds,
        "counterexample": {
            "iterates": cycle["iterates"][: COUNTEREXAMPLE["shown"]],
            "cycles": cycle["cycles"],
            "period": cycle["period"],
            "orbit": cycle["orbit"],
            "orbit_error": cycle["orbit_error"],
            "interval": cycle["interval"],
            "interval_resolution": cycle["interval_resolution"],
        },
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

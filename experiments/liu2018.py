r"""Momentum escapes saddles faster but settles noisier (Liu, Chen, Zhou, Zhao, NeurIPS 2018).

Streaming PCA: maximise :math:`w^\top \Sigma w` on the unit sphere from samples
:math:`x_k \sim \mathcal N(0, \Sigma)`, :math:`\Sigma = \mathrm{diag}(\lambda_1 > \lambda_2 >
\dots)`. The stochastic gradient of :math:`-\tfrac12 (x^\top w)^2` is :math:`-x x^\top w`; the
update is heavy-ball momentum from :mod:`gdyn_jax.optimizers` (:math:`v \leftarrow \mu v + g`,
:math:`w \leftarrow w - \eta v`) followed by a projection onto the sphere, as in Liu et al.'s
momentum SGD for PCA. Every run starts at the saddle :math:`w_0 = e_2`. Measured, over many
seeds in one ``jax.vmap``'d scan for every :math:`(\mu, \eta)`:

- escape time: the first step with :math:`(w^\top e_1)^2 \ge 1/2`;
- stationary error: the mean of :math:`1 - (w^\top e_1)^2` over the last part of the run.

The diffusion approximation of Liu et al. says both are governed by the effective step
:math:`\eta/(1-\mu)`: escape time shrinks like :math:`1-\mu` (up to a logarithm) and the
stationary error grows like :math:`1/(1-\mu)`. The exponents are fitted here.

Second part, the noise floor on a quadratic: with gradient noise :math:`w \sim \mathcal
N(0, \sigma^2 I)`, ``linearize.stationary_covariance`` gives the stationary covariance of
:math:`\theta` for momentum SGD, set beside a Monte-Carlo simulation of the same loop.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._report import Report, save_figure, write_summary

TITLE = "Momentum SGD on streaming PCA: saddle escape vs stationary error (Liu et al. 2018)"

SETTINGS = {
    "tiny": {
        "eigenvalues": (1.0, 0.5, 0.3, 0.2),
        "momenta": (0.0, 0.5, 0.9),
        "learning_rates": (0.01, 0.02),
        "seeds": 24,
        "steps": 2500,
        "mc_seeds": 256,
        "mc_steps": 300,
    },
    "quick": {
        "eigenvalues": (1.0, 0.5, 0.3, 0.2),
        "momenta": (0.0, 0.5, 0.9),
        "learning_rates": (0.001, 0.0025, 0.005),
        "seeds": 128,
        "steps": 30000,
        "mc_seeds": 2000,
        "mc_steps": 1000,
    },
    "full": {
        "eigenvalues": (1.0, 0.5, 0.3, 0.2, 0.1, 0.05),
        "momenta": (0.0, 0.3, 0.6, 0.9),
        "learning_rates": (0.001, 0.0025, 0.005),
        "seeds": 512,
        "steps": 30000,
        "mc_seeds": 8000,
        "mc_steps": 2000,
    },
}
ESCAPE_OVERLAP = 0.5  # escaped once (w . e1)^2 >= 1/2
STATIONARY_FRACTION = 0.3  # stationary error averaged over the last 30% of the steps
QUAD_CURVATURES = (1.0, 0.2)
QUAD_NOISE = 0.1  # gradient-noise standard deviation sigma
QUAD_LEARNING_RATE = 0.05


def simulate_pca(cfg: dict, key) -> np.ndarray:
    """(w . e1)^2 over steps for every (momentum, learning rate, seed): shape (M, E, S, T)."""
    import jax
    import jax.numpy as jnp
    import optax

    from gdyn_jax import optimizers

    scale = jnp.sqrt(jnp.asarray(cfg["eigenvalues"]))
    d = scale.size
    w0 = jnp.zeros(d).at[1].set(1.0)  # the saddle e2

    def one(mu, eta, k):
        opt = optimizers.momentum(eta, mu)

        def step(carry, k_step):
            w, state = carry
            x = scale * jax.random.normal(k_step, (d,))
            grad = -x * jnp.dot(x, w)
            updates, state = opt.update(grad, state, w)
            w = optax.apply_updates(w, updates)
            w = w / jnp.linalg.norm(w)
            return (w, state), w[0] ** 2

        _, overlap = jax.lax.scan(step, (w0, opt.init(w0)), jax.random.split(k, cfg["steps"]))
        return overlap

    mus = jnp.asarray(cfg["momenta"])
    etas = jnp.asarray(cfg["learning_rates"])
    keys = jax.random.split(key, cfg["seeds"])
    run = jax.vmap(jax.vmap(jax.vmap(one, (None, None, 0)), (None, 0, None)), (0, None, None))
    return np.asarray(jax.jit(run)(mus, etas, keys))


def escape_steps(overlap: np.ndarray) -> np.ndarray:
    """First step with overlap >= 1/2 (steps axis last); NaN where never reached."""
    hit = overlap >= ESCAPE_OVERLAP
    first = np.argmax(hit, axis=-1).astype(float) + 1
    return np.where(hit.any(axis=-1), first, np.nan)


def fit_exponent(mu: np.ndarray, values: np.ndarray) -> float:
    """p in values ~ (1/(1-mu))^p, least squares on logs."""
    return float(np.polyfit(np.log(1 / (1 - np.asarray(mu))), np.log(values), 1)[0])


def pca_part(cfg: dict, report: Report) -> dict:
    import jax

    overlap = simulate_pca(cfg, jax.random.key(0))
    esc = escape_steps(overlap)
    start = int((1 - STATIONARY_FRACTION) * cfg["steps"])
    err = 1.0 - overlap[..., start:].mean(axis=-1)  # (M, E, S)
    escaped_by_start = np.all(esc < start, axis=-1)
    mus, etas = cfg["momenta"], cfg["learning_rates"]
    escape, stationary, fits = [], [], []
    for i, mu in enumerate(mus):
        for j, eta in enumerate(etas):
            escape.append(
                {
                    "momentum": mu,
                    "learning_rate": eta,
                    "median_escape_steps": float(np.nanmedian(esc[i, j])),
                    "escaped_fraction": float(np.mean(np.isfinite(esc[i, j]))),
                }
            )
            stationary.append(
                {
                    "momentum": mu,
                    "learning_rate": eta,
                    "error": float(err[i, j].mean()),
                    "error_sd": float(err[i, j].std()),
                    "all_escaped_before_window": bool(escaped_by_start[i, j]),
                }
            )
    report.text(
        f"Streaming PCA, Sigma = diag{tuple(cfg['eigenvalues'])}, start at the saddle e2, "
        f"{cfg['seeds']} seeds x {len(mus)} momenta x {len(etas)} step sizes in one vmapped "
        f"scan of {cfg['steps']} steps. Escape: first step with (w.e1)^2 >= 1/2 (median over "
        f"seeds). Stationary error: mean of 1 - (w.e1)^2 over the last "
        f"{int(STATIONARY_FRACTION * 100)}% of the steps. Exponents fitted as "
        "value ~ (1/(1-mu))^p for each step size; Liu et al.: p = -1 for the escape time (up "
        "to its logarithmic factor) and p = +1 for the stationary error."
    )
    for eta in etas:
        med = [r["median_escape_steps"] for r in escape if r["learning_rate"] == eta]
        sta = [r["error"] for r in stationary if r["learning_rate"] == eta]
        p_esc, p_sta = fit_exponent(mus, med), fit_exponent(mus, sta)
        fits.append({"learning_rate": eta, "escape_exponent": p_esc, "stationary_exponent": p_sta})
        report.compare(f"eta={eta:g}: escape-time exponent in 1/(1-mu)", p_esc, -1.0, atol=0.3)
        report.compare(f"eta={eta:g}: stationary-error exponent in 1/(1-mu)", p_sta, 1.0, atol=0.25)
        report.compare(
            f"eta={eta:g}: escape time shrinks monotonically with mu",
            med[-1] / med[0],
            1.0,
            agrees=bool(np.all(np.diff(med) < 0)),
            expected_label="decreasing",
        )
        report.compare(
            f"eta={eta:g}: stationary error grows monotonically with mu",
            sta[-1] / sta[0],
            1.0,
            agrees=bool(np.all(np.diff(sta) > 0)),
            expected_label="increasing",
        )
    # Liu et al.'s diffusion limit depends on (eta, mu) only through eta / (1 - mu).
    pairs = []
    for i, r in enumerate(escape):
        for q in escape[i + 1 :]:
            eff_r = r["learning_rate"] / (1 - r["momentum"])
            eff_q = q["learning_rate"] / (1 - q["momentum"])
            if np.isclose(eff_r, eff_q, rtol=1e-9):
                pairs.append((eff_r, r, q))
    errors = {(r["momentum"], r["learning_rate"]): r["error"] for r in stationary}
    for eff, r, q in pairs:
        tag = (
            f"(mu={r['momentum']:g}, eta={r['learning_rate']:g}) vs "
            f"(mu={q['momentum']:g}, eta={q['learning_rate']:g}), eta/(1-mu)={eff:g}"
        )
        report.compare(
            f"same effective step, escape time: {tag}",
            r["median_escape_steps"],
            q["median_escape_steps"],
            rtol=0.1,
        )
        report.compare(
            f"same effective step, stationary error: {tag}",
            errors[(r["momentum"], r["learning_rate"])],
            errors[(q["momentum"], q["learning_rate"])],
            rtol=0.1,
        )
    if len(etas) > 1:
        report.text(
            "The fitted stationary-error exponent approaches 1 as the step shrinks ("
            + ", ".join(f"eta={f['learning_rate']:g}: {f['stationary_exponent']:.3f}" for f in fits)
            + "): the 1/(1-mu) law is the small-step (diffusion) limit, and at the largest "
            "effective steps eta/(1-mu) the error saturates below it."
        )
    return {
        "escape": escape,
        "stationary": stationary,
        "fits": fits,
        "overlap": overlap,
        "escape_steps": esc,
    }


def noise_floor_part(cfg: dict, report: Report) -> list[dict]:
    """linearize.stationary_covariance against Monte-Carlo on a 2-D quadratic."""
    import jax
    import jax.numpy as jnp
    import optax

    from gdyn_jax import linearize, optimizers

    h = np.asarray(QUAD_CURVATURES)
    hessian = np.diag(h)
    noise_cov = QUAD_NOISE**2 * np.eye(h.size)

    def one(mu, k):
        opt = optimizers.momentum(QUAD_LEARNING_RATE, mu)  # mu traced: one program for all

        def step(carry, k_step):
            theta, state = carry
            g = jnp.asarray(h) * theta + QUAD_NOISE * jax.random.normal(k_step, h.shape)
            updates, state = opt.update(g, state, theta)
            return (optax.apply_updates(theta, updates), state), None

        theta0 = jnp.zeros(h.size)
        (theta, _), _ = jax.lax.scan(
            step, (theta0, opt.init(theta0)), jax.random.split(k, cfg["mc_steps"])
        )
        return theta

    keys = jax.random.split(jax.random.key(1), cfg["mc_seeds"])
    with jax.enable_x64(True):
        thetas = np.asarray(
            jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))(
                jnp.asarray(cfg["momenta"]), keys
            )
        )
    rows = []
    for mu, theta in zip(cfg["momenta"], thetas, strict=True):
        with jax.enable_x64(True):
            system = linearize.linearize(optimizers.momentum(QUAD_LEARNING_RATE, mu), hessian)
        cov_theta = np.asarray(linearize.stationary_covariance(system, noise_cov))[
            : h.size, : h.size
        ]
        excess = float(linearize.stationary_excess_loss(system, noise_cov, hessian))
        mc_var = theta.var(axis=0)
        per_run = 0.5 * np.sum(h * theta**2, axis=1)
        mc_excess = float(per_run.mean())
        mc_se = float(per_run.std() / np.sqrt(per_run.size))
        rows.append(
            {
                "momentum": mu,
                "learning_rate": QUAD_LEARNING_RATE,
                "predicted_variance": np.diag(cov_theta),
                "monte_carlo_variance": mc_var,
                "predicted_excess_loss": excess,
                "monte_carlo_excess_loss": mc_excess,
                "monte_carlo_excess_loss_se": mc_se,
            }
        )
    n = cfg["mc_seeds"]
    report.text(
        f"Noise floor: momentum SGD, a = {QUAD_LEARNING_RATE}, on f = 1/2 sum h_i theta_i^2 with "
        f"h = {QUAD_CURVATURES} and gradient noise sd {QUAD_NOISE}; prediction from "
        "`linearize.stationary_covariance` / `stationary_excess_loss`; Monte-Carlo over "
        f"{n} vmapped runs of {cfg['mc_steps']} steps (tolerance 4 standard errors of a "
        f"variance estimate, sqrt(2/{n}))."
    )
    tol = 4 * np.sqrt(2 / n)
    for r in rows:
        for i, hi in enumerate(QUAD_CURVATURES):
            report.compare(
                f"mu={r['momentum']:g}: Var(theta) along h={hi:g}, Monte-Carlo",
                r["monte_carlo_variance"][i],
                r["predicted_variance"][i],
                rtol=tol,
            )
        report.compare(
            f"mu={r['momentum']:g}: excess loss, Monte-Carlo",
            r["monte_carlo_excess_loss"],
            r["predicted_excess_loss"],
            rtol=tol,
        )
    base = [r for r in rows if r["momentum"] == 0.0]
    if base:
        for r in rows:
            if r["momentum"] > 0:
                report.compare(
                    f"mu={r['momentum']:g}: predicted noise floor / floor at mu=0",
                    r["predicted_excess_loss"] / base[0]["predicted_excess_loss"],
                    1 / (1 - r["momentum"]),
                    rtol=0.05,
                    expected_label=f"1/(1-mu) = {1 / (1 - r['momentum']):.3g}",
                )
    return rows


def _plot_pca(cfg: dict, part: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mus, etas = cfg["momenta"], cfg["learning_rates"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    j = len(etas) - 1
    for i, mu in enumerate(mus):
        mean = part["overlap"][i, j].mean(axis=0)
        ax.plot(mean, color=f"C{i}", label=rf"$\mu$={mu:g}")
    ax.axhline(ESCAPE_OVERLAP, color="k", ls=":", lw=0.8, label="escape threshold")
    ax.set_xlabel("step")
    ax.set_ylabel(r"overlap $(w^\top e_1)^2$ (mean over seeds)")
    ax.set_title(rf"Escape from the saddle $e_2$, $\eta$={etas[j]:g}")
    ax.legend(fontsize=8)
    one_minus = 1 - np.asarray(mus)
    for ax, key, value, ylabel, title in (
        (
            axes[1],
            "escape",
            "median_escape_steps",
            "median escape time (steps)",
            "Escape time against momentum",
        ),
        (
            axes[2],
            "stationary",
            "error",
            r"stationary error $1-(w^\top e_1)^2$",
            "Stationary error against momentum",
        ),
    ):
        for j, eta in enumerate(etas):
            vals = np.array([r[value] for r in part[key] if r["learning_rate"] == eta])
            ax.loglog(1 / one_minus, vals, f"C{j}o-", label=rf"measured, $\eta$={eta:g}")
            power = -1 if key == "escape" else 1
            ax.loglog(
                1 / one_minus,
                vals[0] * (1 / one_minus) ** power,
                f"C{j}:",
                label=rf"$\propto (1-\mu)^{{{-power}}}$",
            )
        ax.set_xlabel(r"$1/(1-\mu)$")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _plot_floor(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    x = np.arange(len(rows))
    ax.bar(
        x - 0.2,
        [r["predicted_excess_loss"] for r in rows],
        0.4,
        label="linearize.stationary_excess_loss",
    )
    ax.bar(
        x + 0.2,
        [r["monte_carlo_excess_loss"] for r in rows],
        0.4,
        yerr=[2 * r["monte_carlo_excess_loss_se"] for r in rows],
        capsize=4,
        label="Monte-Carlo (± 2 standard errors)",
    )
    ax.set_xticks(x, [rf"$\mu$={r['momentum']:g}" for r in rows])
    ax.set_yscale("log")
    ax.set_xlabel("momentum")
    ax.set_ylabel("stationary excess loss (loss units)")
    ax.set_title("Noise floor of momentum SGD on a quadratic")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Streaming-PCA escape/stationary measurements and the quadratic noise floor."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = SETTINGS[mode]
    report = Report(TITLE, source="Liu, Chen, Zhou, Zhao, NeurIPS 2018")
    pca = pca_part(cfg, report)
    floor = noise_floor_part(cfg, report)
    _plot_pca(cfg, pca, out_dir / "pca_escape_stationary.png")
    report.figure(
        "pca_escape_stationary.png",
        "Streaming PCA from a saddle: escape and stationary error against momentum",
    )
    _plot_floor(floor, out_dir / "noise_floor.png")
    report.figure("noise_floor.png", "Quadratic noise floor: linearize vs Monte-Carlo")
    summary = {
        "eigenvalues": list(cfg["eigenvalues"]),
        "seeds": cfg["seeds"],
        "steps": cfg["steps"],
        "escape": pca["escape"],
        "stationary": pca["stationary"],
        "scaling_fits": pca["fits"],
        "noise_floor": floor,
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

r"""Batch, stochastic and mini-batch gradient descent; momentum in a ravine (Mopuri's lecture).

Part 1. Logistic regression with one feature, parameters :math:`(w, b)`, on the mean
logistic loss

.. math:: L(w, b) = -\frac{1}{N}\sum_i \log \sigma\big(y_i (w x_i + b)\big),
   \quad y_i \in \{-1, +1\},

so every trajectory lives in the 2-D parameter plane and is drawn on the loss contours.
Batch GD uses all :math:`N` examples per step, stochastic GD one, mini-batch GD a few; all
use ``gdyn_jax.optimizers.sgd`` with the same learning rate and the same number of epochs.
The lecture's claims, measured: the batch path is smooth, the stochastic one jitters most
(path length over net displacement), mini-batch in between, and all three reach the
minimum's neighbourhood (the minimum itself from ``scipy.optimize.minimize``).

Part 2. A ravine :math:`f(\theta) = \tfrac12(h_1\theta_1^2 + h_2\theta_2^2)` with
:math:`\kappa = h_1/h_2` large, GD and heavy ball at the same step :math:`a = 1.9/h_1`: GD
zig-zags across the steep direction (pole :math:`-0.9`) and crawls along the flat one
(:math:`1 - a h_2`); heavy ball, with the :math:`\beta` that
``linearize.optimal_hyperparameters`` picks at that step (:math:`(1-\sqrt{a h_2})^2`), damps
the zig-zag and runs down the ravine at :math:`1-\sqrt{a h_2}`. The measured rates are set
beside ``linearize.convergence_rate``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from experiments._report import Report, save_figure, write_summary

TITLE = "Batch / stochastic / mini-batch GD on logistic loss; momentum in a ravine (Mopuri)"

SETTINGS = {
    "tiny": {"n": 32, "epochs": 5, "minibatch": 8, "ravine_steps": 150},
    "quick": {"n": 64, "epochs": 20, "minibatch": 8, "ravine_steps": 300},
    "full": {"n": 128, "epochs": 50, "minibatch": 16, "ravine_steps": 400},
}
LEARNING_RATE = 0.5
START = (-2.0, 2.5)
RAVINE = (1.0, 0.02)  # curvatures h1 (steep), h2 (flat): kappa = 50
RAVINE_START = (1.0, 1.0)
RAVINE_STEP = 1.9  # step size times the steep curvature


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping 1-D classes: x ~ N(y, 1) with y = +-1 (then shifted by 0.5)."""
    rng = np.random.default_rng(seed)
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    x = y + rng.normal(size=n) + 0.5
    return x.astype(np.float64), y.astype(np.float64)


def logistic_loss(params, x, y):
    r"""Mean logistic loss :math:`-\frac1N\sum\log\sigma(y(wx+b))`, params = (w, b)."""
    import jax

    w, b = params[0], params[1]
    return -jax.numpy.mean(jax.nn.log_sigmoid(y * (w * x + b)))


def _trajectory(x, y, batch_size: int, steps: int, key):
    """SGD (gdyn_jax.optimizers.sgd) on minibatches drawn without replacement per epoch."""
    import jax
    import jax.numpy as jnp
    import optax

    from gdyn_jax import optimizers

    n = x.shape[0]
    per_epoch = n // batch_size
    epochs = steps // per_epoch
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
    batches = perms[:, : per_epoch * batch_size].reshape(epochs * per_epoch, batch_size)
    opt = optimizers.sgd(LEARNING_RATE)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = jnp.asarray(START)
    grad = jax.grad(logistic_loss)

    def step(carry, idx):
        params, state = carry
        updates, state = opt.update(grad(params, x[idx], y[idx]), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (params, opt.init(params)), batches)
    return np.concatenate([np.asarray(START)[None], np.asarray(path)])


def _ravine_run(opt, steps: int) -> np.ndarray:
    import jax
    import jax.numpy as jnp
    import optax

    h = jnp.asarray(RAVINE)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(h * params, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    params = jnp.asarray(RAVINE_START)
    _, path = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return np.concatenate([np.asarray(RAVINE_START)[None], np.asarray(path)])


def measured_rate(path: np.ndarray, start: int) -> float:
    """Slope of log ||theta_k|| over k >= start (least squares), as a per-step factor."""
    norms = np.linalg.norm(path, axis=1)
    k = np.arange(len(norms))
    keep = (k >= start) & (norms > 1e-13)
    slope = np.polyfit(k[keep], np.log(norms[keep]), 1)[0]
    return float(np.exp(slope))


def roughness(path: np.ndarray) -> float:
    """Path length divided by net displacement (1 for a straight path)."""
    length = np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))
    return float(length / np.linalg.norm(path[-1] - path[0]))


def _plot_logistic(paths, x, y, w_star, path: pathlib.Path) -> None:
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws, bs = np.meshgrid(np.linspace(-2.5, 4.0, 120), np.linspace(-2.5, 3.0, 120))
    grid = np.stack([ws.ravel(), bs.ravel()], axis=1)
    loss = np.asarray(jax.vmap(lambda p: logistic_loss(p, x, y))(grid)).reshape(ws.shape)
    fig, ax = plt.subplots(figsize=(6.5, 5.2))
    cs = ax.contour(
        ws,
        bs,
        loss,
        levels=np.geomspace(loss.min() + 1e-3, loss.max(), 18),
        cmap="viridis",
        linewidths=0.8,
    )
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    styles = (
        {"color": "C0", "lw": 2.5, "marker": "o", "ms": 4, "zorder": 4},
        {"color": "C2", "lw": 1.2, "zorder": 3},
        {"color": "C3", "lw": 0.8, "alpha": 0.7},
        {"color": "k", "lw": 1.0, "ls": "--", "zorder": 5},
    )
    for (label, p), style in zip(paths.items(), styles, strict=True):
        ax.plot(p[:, 0], p[:, 1], label=label, **style)
    ax.plot(*START, "ko", label="start")
    ax.plot(*w_star, "k*", ms=12, label="minimum (scipy)")
    ax.set_xlabel("weight w")
    ax.set_ylabel("bias b")
    ax.set_title("Logistic loss: batch vs stochastic vs mini-batch GD")
    ax.legend(fontsize=7, loc="lower left")
    save_figure(fig, path)


def _plot_ravine(paths, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u, v = np.meshgrid(np.linspace(-1.2, 1.2, 150), np.linspace(-0.3, 1.2, 150))
    f = 0.5 * (RAVINE[0] * u**2 + RAVINE[1] * v**2)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.contour(u, v, f, levels=np.geomspace(1e-4, f.max(), 15), cmap="Greys", linewidths=0.8)
    for (label, p), color in zip(paths.items(), ("C3", "C0"), strict=True):
        ax.plot(p[:60, 0], p[:60, 1], ".-", color=color, lw=1.0, ms=3, label=label)
    ax.plot(0, 0, "k*", ms=12, label="minimum")
    ax.set_xlabel(rf"steep coordinate $\theta_1$ ($h_1$={RAVINE[0]:g})")
    ax.set_ylabel(rf"flat coordinate $\theta_2$ ($h_2$={RAVINE[1]:g})")
    ax.set_title("Ravine: first 60 steps on the loss contours")
    ax.legend(fontsize=8)
    ax = axes[1]
    for (label, p), color in zip(paths.items(), ("C3", "C0"), strict=True):
        ax.semilogy(np.linalg.norm(p, axis=1), color=color, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(r"distance to minimum $\|\theta_k\|$")
    ax.set_title("Convergence in the ravine")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _logistic_part(cfg: dict, report: Report) -> dict:
    import jax
    import scipy.optimize

    x, y = make_data(cfg["n"])
    value_and_grad = jax.jit(jax.value_and_grad(logistic_loss))
    opt = scipy.optimize.minimize(
        lambda p: tuple(np.asarray(v, np.float64) for v in value_and_grad(p, x, y)),
        np.zeros(2),
        jac=True,
        method="BFGS",
        tol=1e-12,
    )
    w_star, loss_star = opt.x, float(opt.fun)
    sizes = {"batch": cfg["n"], "mini-batch": cfg["minibatch"], "stochastic": 1}
    paths, rows = {}, []
    key = jax.random.key(0)
    for label, size in sizes.items():
        steps = cfg["epochs"] * (cfg["n"] // size)
        p = _trajectory(x, y, size, steps, key)
        paths[f"{label} GD (batch {size}, {steps} steps)"] = p
        final_loss = float(logistic_loss(p[-1], x, y))
        first_epoch = float(logistic_loss(p[cfg["n"] // size], x, y)) - loss_star
        rows.append(
            {
                "variant": label,
                "batch_size": size,
                "steps": steps,
                "excess_loss_after_one_epoch": first_epoch,
                "final_loss": final_loss,
                "excess_loss": final_loss - loss_star,
                "roughness": roughness(p),
                "final_params": p[-1],
            }
        )
    # Batch GD given as many updates as stochastic GD made: smooth, and at the minimum.
    steps = cfg["epochs"] * cfg["n"]
    long_batch = _trajectory(x, y, cfg["n"], steps, key)
    long_loss = float(logistic_loss(long_batch[-1], x, y))
    paths[f"batch GD, {steps} steps (= stochastic updates)"] = long_batch
    excess = {r["variant"]: r["excess_loss_after_one_epoch"] for r in rows}
    rough = {r["variant"]: r["roughness"] for r in rows}
    report.text(
        f"Part 1: N = {cfg['n']} examples, learning rate {LEARNING_RATE}, {cfg['epochs']} "
        f"epochs for every variant (so batch GD makes {cfg['epochs']} updates, stochastic GD "
        f"{steps}); minimum loss {loss_star:.4f} at w = {w_star[0]:.3f}, b = {w_star[1]:.3f} "
        "(scipy BFGS). The lecture's claims: per epoch, batch GD makes the least progress at "
        "first (one update per pass); the batch path is smooth, the stochastic one noisy (with "
        "a constant "
        "step it ends in a noise ball around the minimum); mini-batch sits between. "
        "Roughness = path length / net displacement."
    )
    report.compare(
        "excess loss after one epoch: batch GD (one update) the largest",
        excess["batch"],
        max(excess["stochastic"], excess["mini-batch"]),
        agrees=excess["batch"] > max(excess["stochastic"], excess["mini-batch"]),
        expected_label=f"> stochastic {excess['stochastic']:.3g}, "
        f"mini-batch {excess['mini-batch']:.3g}",
    )
    report.compare(
        "roughness: stochastic > mini-batch > batch",
        rough["stochastic"],
        rough["mini-batch"],
        agrees=rough["stochastic"] > rough["mini-batch"] > rough["batch"],
        expected_label=f"> {rough['mini-batch']:.3g} > {rough['batch']:.3g}",
    )
    report.compare(
        f"batch GD after {steps} updates: loss vs the minimum (scipy)",
        long_loss,
        loss_star,
        rtol=1e-3,
    )
    report.compare(
        f"batch GD after {steps} updates: roughness (1 = straight)",
        roughness(long_batch),
        1.0,
        rtol=0.2,
    )
    rows.append(
        {
            "variant": "batch (as many updates as stochastic)",
            "batch_size": cfg["n"],
            "steps": steps,
            "final_loss": long_loss,
            "excess_loss": long_loss - loss_star,
            "roughness": roughness(long_batch),
            "final_params": long_batch[-1],
        }
    )
    return {"rows": rows, "paths": paths, "x": x, "y": y, "w_star": w_star, "loss_star": loss_star}


def _ravine_part(cfg: dict, report: Report) -> dict:
    import jax

    from gdyn_jax import linearize, optimizers

    h1, h2 = RAVINE
    kappa = h1 / h2
    a = RAVINE_STEP / h1  # one step size for both: GD's steep pole is 1 - a h1 = -0.9
    eig = np.asarray([h2, h1])
    with jax.enable_x64(True):
        tuned, _ = linearize.optimal_hyperparameters(  # best beta at this step size
            optimizers.momentum, h2, h1, names=("beta",), learning_rate=a
        )
        beta = float(tuned["beta"])
        paths = {
            f"GD a={a:.2f}": _ravine_run(optimizers.sgd(a), cfg["ravine_steps"]),
            f"heavy ball a={a:.2f}, beta={beta:.3f}": _ravine_run(
                optimizers.momentum(a, beta), cfg["ravine_steps"]
            ),
        }
        pred_gd = float(
            np.ravel(
                linearize.convergence_rate(optimizers.sgd, {"learning_rate": np.asarray([a])}, eig)
            )[0]
        )
        pred_hb = float(
            np.ravel(
                linearize.convergence_rate(
                    optimizers.momentum,
                    {"learning_rate": np.asarray([a]), "beta": np.asarray([beta])},
                    eig,
                )
            )[0]
        )
    gd_path, hb_path = paths.values()
    meas_gd = measured_rate(gd_path, 20)
    meas_hb = measured_rate(hb_path[:120], 30)
    flips = {k: int(np.sum(np.diff(np.sign(p[:40, 0])) != 0)) for k, p in paths.items()}
    amp = {k: float(np.max(np.abs(p[20:40, 0]))) for k, p in paths.items()}
    report.text(
        f"Part 2: ravine with curvatures h1 = {h1}, h2 = {h2} (kappa = {kappa:g}), start "
        f"{RAVINE_START}, the same step a = {RAVINE_STEP}/h1 for GD and heavy ball. GD's "
        "steep mode has the pole 1 - a h1 = -0.9: it zig-zags across the ravine, while its flat "
        "mode crawls at 1 - a h2. Momentum's beta is the one `linearize.optimal_hyperparameters` "
        "picks at this a (closed form: beta = (1 - sqrt(a h2))^2, both modes then have modulus "
        "1 - sqrt(a h2)). Predicted rates come from `linearize.convergence_rate`; measured ones "
        "from the slope of log ||theta_k||. Zig-zag amplitude = max |theta_1| over steps 20..39."
    )
    closed_beta = (1 - np.sqrt(a * h2)) ** 2
    report.compare(
        "momentum beta from optimal_hyperparameters vs (1 - sqrt(a h2))^2",
        beta,
        closed_beta,
        rtol=0.01,
    )
    report.compare("GD rate in ravine, measured vs linearize", meas_gd, pred_gd, rtol=0.01)
    report.compare(
        "GD rate, linearize vs max(abs(1 - a h))",
        pred_gd,
        max(abs(1 - a * h1), abs(1 - a * h2)),
        rtol=1e-6,
    )
    report.compare("heavy-ball rate in ravine, measured vs linearize", meas_hb, pred_hb, rtol=0.03)
    report.compare(
        "heavy-ball rate, linearize vs 1 - sqrt(a h2)", pred_hb, 1 - np.sqrt(a * h2), rtol=0.01
    )
    labels = list(paths)
    report.compare(
        "zig-zag amplitude, steps 20-39: momentum damps it (momentum / GD)",
        amp[labels[1]] / amp[labels[0]],
        1.0,
        agrees=amp[labels[1]] < amp[labels[0]],
        expected_label="< 1",
    )
    return {
        "paths": paths,
        "summary": {
            "curvatures": list(RAVINE),
            "kappa": kappa,
            "gd": {
                "learning_rate": a,
                "measured_rate": meas_gd,
                "predicted_rate": pred_gd,
                "sign_flips_40_steps": flips[labels[0]],
                "zigzag_amplitude": amp[labels[0]],
            },
            "momentum": {
                "learning_rate": a,
                "beta": beta,
                "measured_rate": meas_hb,
                "predicted_rate": pred_hb,
                "sign_flips_40_steps": flips[labels[1]],
                "zigzag_amplitude": amp[labels[1]],
            },
        },
    }


def run(out_dir: pathlib.Path, mode: str = "quick") -> dict:
    """Run both parts, write the figures, summary.json and report.md."""
    import jax

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = SETTINGS[mode]
    report = Report(TITLE, source="K. R. Mopuri, 'More on Gradient Descent' (IIT Tirupati)")
    with jax.enable_x64(True):
        logistic = _logistic_part(cfg, report)
    ravine = _ravine_part(cfg, report)
    _plot_logistic(
        logistic["paths"],
        logistic["x"],
        logistic["y"],
        logistic["w_star"],
        out_dir / "logistic_trajectories.png",
    )
    report.figure(
        "logistic_trajectories.png",
        "Batch, mini-batch and stochastic GD on the logistic-loss contours",
    )
    _plot_ravine(ravine["paths"], out_dir / "ravine.png")
    report.figure("ravine.png", "GD zig-zags across a ravine; momentum damps the oscillation")
    summary = {
        "logistic": {
            "minimum_loss": logistic["loss_star"],
            "minimum": logistic["w_star"],
            "learning_rate": LEARNING_RATE,
            "variants": logistic["rows"],
        },
        "ravine": ravine["summary"],
    }
    write_summary(out_dir, summary)
    report.write(out_dir)
    return summary

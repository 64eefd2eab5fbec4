r"""Batch, stochastic and mini-batch gradient descent; momentum in a ravine (Mopuri's lecture).

Part 1. Logistic regression with one feature, parameters :math:`(w, b)`, on the mean logistic
loss :math:`L(w, b) = -\frac1N\sum_i \log\sigma(y_i(w x_i + b))`, :math:`y_i \in \{-1, 1\}`,
so every trajectory lives in the plane and is drawn on the loss contours. Batch GD uses all
:math:`N` examples per step, stochastic GD one, mini-batch GD a few, all with
``gdyn_jax.optimizers.sgd`` at one learning rate for the same number of epochs. The lecture's
claims, measured: the batch path is smooth, the stochastic one jitters most (path length over
net displacement), mini-batch in between; the minimum comes from ``scipy.optimize.minimize``.

Part 2. A ravine :math:`f(\theta) = \tfrac12(h_1\theta_1^2 + h_2\theta_2^2)`, :math:`h_1 \gg
h_2`, GD and heavy ball at one step :math:`a = 1.9/h_1`: GD zig-zags across the steep direction
(pole :math:`1 - a h_1 = -0.9`) and crawls along the flat one (:math:`1 - a h_2`); heavy ball,
with the :math:`\beta` that ``linearize.optimal_hyperparameters`` picks at that step
(:math:`(1-\sqrt{a h_2})^2`), damps the zig-zag and runs down the ravine at
:math:`1-\sqrt{a h_2}`. Measured rates are set beside ``linearize.convergence_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from experiments._harness import Modes, Report
from experiments._quadratic import iterates, worst_rate
from gdyn_jax import linearize, optimizers
from gdyn_jax.measurements import tail_rate

TITLE = "Batch / stochastic / mini-batch GD on logistic loss; momentum in a ravine (Mopuri)"
SOURCE = "K. R. Mopuri, 'More on Gradient Descent' (lecture, IIT Tirupati)"
LEARNING_RATE, START = 0.5, (-2.0, 2.5)
RAVINE, RAVINE_START, RAVINE_STEP = (1.0, 0.02), (1.0, 1.0), 1.9  # h1, h2; a h1


@dataclass(frozen=True)
class Settings(Modes):
    n: int = 64
    epochs: int = 20
    minibatch: int = 8
    ravine_steps: int = 300

    TINY = dict(n=32, epochs=5, ravine_steps=150)
    FULL = dict(n=128, epochs=50, minibatch=16, ravine_steps=400)


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping 1-D classes: x ~ N(y, 1) + 0.5 with y = ±1 alternating."""
    y = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return y + np.random.default_rng(seed).normal(size=n) + 0.5, y


def logistic_loss(params, x, y):
    r"""Mean logistic loss :math:`-\frac1N\sum\log\sigma(y(wx+b))`, ``params = (w, b)``."""
    return -jnp.mean(jax.nn.log_sigmoid(y * (params[0] * x + params[1])))


def sgd_path(x, y, batch_size: int, steps: int) -> np.ndarray:
    """SGD on mini-batches drawn without replacement in each epoch."""
    n = x.size
    x, y = jnp.asarray(x), jnp.asarray(y)
    per_epoch = n // batch_size
    keys = jax.random.split(jax.random.key(0), steps // per_epoch)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)[:, : per_epoch * batch_size]
    grad = jax.grad(logistic_loss)
    batches = perms.reshape(-1, batch_size)
    return np.asarray(
        iterates(optimizers.sgd(LEARNING_RATE), lambda p, i: grad(p, x[i], y[i]), START, batches)
    )


def roughness(path: np.ndarray) -> float:
    """Path length divided by net displacement (1 for a straight path)."""
    length = np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1))
    return float(length / np.linalg.norm(path[-1] - path[0]))


def run(s: Settings, report: Report) -> None:
    with jax.enable_x64(True):
        logistic = logistic_part(s, report)
        ravine = ravine_part(s, report)
    report.record(logistic=logistic, ravine=ravine)


def logistic_part(s: Settings, report: Report) -> dict:
    x, y = make_data(s.n)
    fun = jax.jit(jax.value_and_grad(logistic_loss))
    best = scipy.optimize.minimize(lambda p: fun(p, x, y), np.zeros(2), jac=True, tol=1e-12)
    sizes = {"batch": s.n, "mini-batch": s.minibatch, "stochastic": 1}
    paths = {k: sgd_path(x, y, b, s.epochs * (s.n // b)) for k, b in sizes.items()}
    paths["batch, as many updates"] = long = sgd_path(x, y, s.n, s.epochs * s.n)
    excess = {
        k: float(logistic_loss(paths[k][s.n // b], x, y)) - best.fun for k, b in sizes.items()
    }
    rough = {k: roughness(p) for k, p in paths.items()}
    report.text(
        f"Part 1: N = {s.n}, learning rate {LEARNING_RATE}, {s.epochs} epochs per variant; the "
        f"minimum {best.fun:.4f} at (w, b) = {np.round(best.x, 3)} (scipy BFGS). Roughness = "
        "path length / net displacement. Batch GD makes one update per epoch, so it is the "
        "furthest from the minimum after one epoch; given as many updates as stochastic GD, it "
        "reaches the minimum on a straight path."
    )
    first = excess["batch"] / max(excess["stochastic"], excess["mini-batch"])
    report.bound("excess loss after one epoch: batch / the larger other", first, lower=1.0)
    ratio = rough["stochastic"] / rough["mini-batch"]
    report.bound("roughness: stochastic / mini-batch", ratio, lower=1.0)
    report.bound("roughness: mini-batch / batch", rough["mini-batch"] / rough["batch"], lower=1.0)
    final = float(logistic_loss(long[-1], x, y))
    report.compare("batch, as many updates: final loss", final, best.fun, rtol=1e-3, label="scipy")
    report.compare("batch, as many updates: roughness", roughness(long), 1.0, rtol=0.2)
    w, b = np.meshgrid(np.linspace(-2.5, 4.0, 120), np.linspace(-2.5, 3.0, 120))
    loss = jax.vmap(lambda p: logistic_loss(p, x, y))(np.stack([w.ravel(), b.ravel()], 1))
    loss = np.asarray(loss).reshape(w.shape)
    caption = "GD variants on the loss contours"
    with report.figure("logistic_trajectories.png", caption, (6.5, 5.2)) as fig:
        ax = fig.subplots()
        ax.contour(w, b, loss, levels=np.geomspace(loss.min() + 1e-3, loss.max(), 18))
        for (label, p), lw in zip(paths.items(), (2.5, 1.2, 0.8, 1.0), strict=True):
            ax.plot(p[:, 0], p[:, 1], lw=lw, label=f"{label} ({len(p) - 1} steps)")
        ax.plot(*START, "ko", label="start")
        ax.plot(*best.x, "k*", ms=12, label="minimum (scipy)")
        ax.set(xlabel="weight w", ylabel="bias b", title="Batch, mini-batch and stochastic GD")
        ax.legend(fontsize=7, loc="lower left")
    return {
        "minimum_loss": best.fun,
        "minimum": best.x,
        "excess_after_one_epoch": excess,
        "roughness": rough,
        "final_loss_batch_as_many_updates": final,
    }


def ravine_part(s: Settings, report: Report) -> dict:
    h1, h2 = RAVINE
    a = RAVINE_STEP / h1
    tuned, _ = linearize.optimal_hyperparameters(
        optimizers.momentum, h2, h1, names=("beta",), learning_rate=a
    )
    beta = float(tuned["beta"])
    rules = {
        "GD": (optimizers.sgd, {"learning_rate": a}),
        "heavy ball": (optimizers.momentum, {"learning_rate": a, "beta": beta}),
    }
    predicted, walks = {}, {}
    for k, (factory, hp) in rules.items():
        predicted[k] = worst_rate(factory, hp, [h2, h1])
        grad = lambda p, _: np.asarray(RAVINE) * p  # noqa: E731
        walks[k] = np.asarray(iterates(factory(**hp), grad, RAVINE_START, length=s.ravine_steps))
    norms = {k: np.linalg.norm(p, axis=1) for k, p in walks.items()}
    measured = {
        "GD": tail_rate(norms["GD"], skip=20, window=(1e-13, np.inf)),
        "heavy ball": tail_rate(norms["heavy ball"][:120], skip=30, window=(1e-13, np.inf)),
    }
    zigzag = {k: float(np.max(np.abs(p[20:40, 0]))) for k, p in walks.items()}
    report.text(
        f"Part 2: ravine h1 = {h1}, h2 = {h2}, start {RAVINE_START}, one step a = {RAVINE_STEP}/h1 "
        f"for both; heavy ball's beta = {beta:.4f} from `linearize.optimal_hyperparameters` at "
        "this a. Predicted rates: `linearize.convergence_rate`; measured: the slope of "
        "log ||theta_k||. Zig-zag amplitude: max |theta_1| over steps 20-39."
    )
    root = np.sqrt(a * h2)
    report.compare(
        "heavy ball: tuned beta", beta, (1 - root) ** 2, rtol=0.01, label="(1 - sqrt(a h2))^2"
    )
    for k, tol in (("GD", 0.01), ("heavy ball", 0.03)):
        report.compare(
            f"{k}: measured rate", measured[k], predicted[k], rtol=tol, label="linearize"
        )
    gd = max(abs(1 - a * h1), abs(1 - a * h2))
    report.compare("GD: linearize rate", predicted["GD"], gd, rtol=1e-6, label="max |1 - a h|")
    hb = predicted["heavy ball"]
    report.compare("heavy ball: linearize rate", hb, 1 - root, rtol=0.01, label="1 - sqrt(a h2)")
    ratio = zigzag["heavy ball"] / zigzag["GD"]
    report.bound("zig-zag amplitude: heavy ball / GD", ratio, upper=1.0)
    _ravine_figure(report, walks, norms)
    return {
        "curvatures": RAVINE,
        "learning_rate": a,
        "beta": beta,
        "measured_rate": measured,
        "predicted_rate": predicted,
        "zigzag_amplitude": zigzag,
    }


def _ravine_figure(report: Report, walks: dict, norms: dict) -> None:
    h1, h2 = RAVINE
    caption = "GD zig-zags across a ravine; momentum damps it"
    with report.figure("ravine.png", caption, (11, 4.2)) as fig:
        left, right = fig.subplots(1, 2)
        u, v = np.meshgrid(np.linspace(-1.2, 1.2, 150), np.linspace(-0.3, 1.2, 150))
        left.contour(u, v, h1 * u**2 + h2 * v**2, levels=np.geomspace(2e-4, 2.0, 15), cmap="Greys")
        for label, p in walks.items():
            left.plot(p[:60, 0], p[:60, 1], ".-", lw=1.0, ms=3, label=label)
            right.semilogy(norms[label], label=label)
        left.set(xlabel="steep θ1", ylabel="flat θ2", title="the first 60 steps")
        right.set(xlabel="step", ylabel="‖θ_k‖", title="distance to the minimum")
        left.legend(fontsize=8)

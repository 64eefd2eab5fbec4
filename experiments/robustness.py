r"""Robustness to noisy labels and adversarial inputs: SGD, momentum and NAG on MNIST-1D.

The last objective of the project report on Wu et al. (2021): how SGD and NAG behave with noisy
or adversarial data. Each optimizer trains the MNIST-1D MLP (batch 100) on labels with 0%, 20%
and 40% symmetric noise (``data.symmetric_label_noise``: that fraction moved to another class),
learning rate × seeds in one vmapped program per optimizer (``make_train(return_state=True)``,
the noisy labels passed as data), and every trained member is evaluated on the clean test set
and under FGSM (``measurements.fgsm_evaluate``, input gradients through the same model) at a few
:math:`\epsilon` (the inputs have unit standard deviation). Momentum and NAG use
:math:`\beta = 0.9` and the same effective step :math:`a/(1-\beta)` as SGD.

The gradient noise at the end of training is set beside the noise floor: along the top Hessian
eigenvector :math:`q` of the (noisy) training loss, the minibatch gradient variance
:math:`\sigma_q^2` (``measurements.projected_gradient_noise``) and the loop of the same optimizer
at :math:`h = \lambda_{\max}` give ``linearize.stationary_covariance``; it is compared with the
variance of :math:`q^\top\theta_k` across independent continuations with i.i.d. minibatches
(``measurements.noise_ensemble``), after the loop has settled (:math:`\rho^{2k} < 0.01`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from experiments._harness import Modes, Report
from gdyn_jax import data, extras, measurements, models, optimizers, predictions
from gdyn_jax.sweep import SweepConfig, losses, make_train, setup, train
from gdyn_jax.sweep.data import resolve

TITLE = "Robustness: SGD, momentum and NAG on MNIST-1D with label noise and FGSM inputs"
SOURCE = "Project report on Wu et al. 2021 (robustness objective); FGSM: Goodfellow et al. 2015"
#: name -> (gdyn_jax.optimizers name, beta or None)
OPTIMIZERS = {"sgd": ("sgd", None), "momentum": ("momentum", 0.9), "nag": ("nesterov", 0.9)}
FLOOR_RTOL = 0.3  # declared band on measured / predicted stationary variance
BATCH = 100


@dataclass(frozen=True)
class Settings(Modes):
    noise: tuple[float, ...] = (0.0, 0.2, 0.4)
    effective_lrs: tuple[float, ...] = (0.1, 0.3)  # a / (1 - beta)
    seeds: int = 3
    steps: int = 1500
    examples: int = 4000  # the first training examples
    epsilons: tuple[float, ...] = (0.05, 0.1, 0.2)
    runs: int = 16
    horizon: int = 200
    model: str = "mlp"

    TINY = dict(
        noise=(0.0, 0.4),
        effective_lrs=(0.1,),
        seeds=2,
        steps=20,
        examples=500,
        runs=4,
        horizon=60,
        model="logistic",
    )
    FULL = dict(effective_lrs=(0.03, 0.1, 0.3), seeds=5, steps=6000, runs=32, horizon=400)


def train_all(name: str, datasets: dict, s: Settings, evaluate) -> dict:
    """Per noise level: the best learning rate's FGSM scores (seed × ε) and noise floor."""
    opt, beta = OPTIMIZERS[name]
    fixed = {} if beta is None else {"beta": beta}
    lrs = np.array(s.effective_lrs) * (1 - (beta or 0.0))
    config = SweepConfig(datasets[s.noise[0]], s.model, opt, hparams=fixed, steps=s.steps)
    config = dataclasses.replace(config, eval_every=s.steps, batch_size=BATCH)
    task = setup.prepare(config)[0]
    members = jax.jit(jax.vmap(make_train(config, return_state=True), (0, 0, None)))
    hp = {"learning_rate": jnp.asarray(np.repeat(lrs, s.seeds), jnp.float32)}
    keys = jnp.stack([jax.random.key(i) for i in np.tile(np.arange(s.seeds), len(lrs))])

    def examples(p, data):
        return task.loss(train.apply(task, p, {}, data.x_train), data.y_train)

    def batch(p, data, idx):
        return train.mean_loss(task, p, {}, data.x_train[idx], data.y_train[idx])

    out = {}
    for p, arrays in datasets.items():
        noisy = setup.prepare(dataclasses.replace(config, dataset=arrays))[1]
        metrics, state = members(hp, keys, noisy)
        accuracy = np.asarray(evaluate(state.params)[0]).reshape(len(lrs), s.seeds, -1)
        clean = extras.xarray.DataArray(accuracy[..., 0], dims=("learning_rate", "seed"))
        best = measurements.best_setting(clean, diverged_score=0.0).index["learning_rate"]
        params = jax.tree.map(lambda x, m=best * s.seeds: x[m], state.params)  # its seed 0
        rule, kw = {"learning_rate": lrs[best], **fixed}, {"steps": s.horizon, "runs": s.runs}
        kw["key"] = jax.random.key(2)
        floor = predictions.floor_test(
            batch, examples, params, noisy, optimizers.get(opt), rule, batch_size=BATCH, **kw
        )
        engine = np.asarray(metrics["test_accuracy"][:, -1]).reshape(len(lrs), s.seeds)[best]
        out[p] = {"a": lrs[best], "accuracy": accuracy[best], "engine": engine, "floor": floor}
    return out


def run(s: Settings, report: Report) -> None:
    arrays = resolve("mnist1d", None).first(s.examples)
    datasets = {
        p: dataclasses.replace(arrays, y_train=data.symmetric_label_noise(arrays.y_train, p, 10)[0])
        for p in s.noise
    }
    model, ce = models.get(s.model), losses.resolve("cross_entropy")
    x, y, eps = jnp.asarray(arrays.x_test), jnp.asarray(arrays.y_test), (0.0,) + s.epsilons

    def fgsm(params):
        apply = lambda z: model.apply({"params": params}, z)  # noqa: E731
        return measurements.fgsm_evaluate(apply, ce, x, y, jnp.asarray(eps))

    results = {name: train_all(name, datasets, s, jax.jit(jax.vmap(fgsm))) for name in OPTIMIZERS}
    report.text(
        f"{s.steps} steps, effective learning rates {s.effective_lrs} (a/(1 − β)), {s.seeds} "
        "seeds; per optimizer and noise level, the learning rate with the best mean clean test "
        "accuracy. Test accuracy: mean ± sd over seeds; FGSM ε in units of the input sd. "
        f"Noise floor: {s.runs} continuations of {s.horizon} steps from seed 0's trained "
        f"parameters with i.i.d. batches of {BATCH}; measured: the variance across runs of q·θ "
        f"after the loop settles. Declared agreement ±{FLOOR_RTOL:.0%}: the sampling error of "
        f"{s.runs} runs and the change of λ and q over the horizon, which the linear model "
        "ignores. Each row gives a·λ (where the loop sits against its stability limit) and "
        "q·∇L/σ_q, the full-batch gradient along q at the start in units of the noise (0 at "
        "the bottom of the valley along q)."
    )
    rows = [
        [n, f"{p:.0%}", r["a"], *(f"{a.mean():.1%} ± {a.std(ddof=1):.1%}" for a in r["accuracy"].T)]
        for n, v in results.items()
        for p, r in v.items()
    ]
    report.table(["optimizer", "noise", "a", "clean", *(f"FGSM ε={e:g}" for e in s.epsilons)], rows)
    score(report, results, min(s.noise), max(s.noise))
    plot(report, results, eps)
    report.record(results=results)


def score(report: Report, results: dict, low: float, high: float) -> None:
    """The scored claims: label noise and FGSM cost accuracy; the noise floor's prediction."""
    for name, v in results.items():
        lost = 100 * (v[low]["accuracy"][:, 0].mean() - v[high]["accuracy"][:, 0].mean())
        quantity = f"{name}: clean accuracy lost to {high:.0%} label noise (points)"
        report.bound(quantity, lost, lower=5)
        rises = sum(int(np.sum(np.diff(r["accuracy"].mean(0)) > 0)) for r in v.values())
        report.bound(f"{name}: times the FGSM accuracy rises with ε", rises, upper=0)
        ratio = v[high]["floor"].sigma2 / v[low]["floor"].sigma2
        report.bound(f"{name}: σ_q² at {high:.0%} / at {low:.0%} label noise", ratio, lower=1)
        for p, r in v.items():
            f, a_h = r["floor"], r["a"] * r["floor"].curvature
            quantity = (
                f"{name}, {p:.0%} noise, a·λ = {a_h:.3g}, q·∇L/σ_q = {f.gradient:.2g}: measured"
                f" / predicted noise floor ({f.measured:.3g} / {f.predicted:.3g})"
            )
            ratio = f.measured / f.predicted
            report.compare(quantity, ratio, 1.0, rtol=FLOOR_RTOL, label="stationary_covariance")


def plot(report: Report, results: dict, eps: tuple[float, ...]) -> None:
    caption = "Test accuracy under FGSM (mean ± sd over seeds); the noise floor, measured/predicted"
    with report.figure("robustness.png", caption, (15, 4)) as fig:
        axes = fig.subplots(1, len(results) + 1)
        for ax, (name, v) in zip(axes, results.items(), strict=False):
            for p, r in v.items():
                a = 100 * r["accuracy"]
                ax.errorbar(eps, a.mean(0), a.std(0, ddof=1), capsize=3, label=f"{p:.0%} noise")
            ax.set(title=name, xlabel="FGSM ε", ylabel="test accuracy (%)")
        axes[0].legend(fontsize=8)
        floors = [r["floor"] for v in results.values() for r in v.values()]
        floors = np.array([(f.predicted, f.measured) for f in floors])
        axes[-1].loglog(*floors.T, "o")
        axes[-1].loglog(floors[:, 0], floors[:, 0], "k--", lw=1)
        axes[-1].set(xlabel="predicted (stationary_covariance)", ylabel="measured Var(q·θ)")

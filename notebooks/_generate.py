"""Regenerate the notebooks (stored without outputs): python notebooks/_generate.py."""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HEAD = """import os

MODE = os.environ.get("GDYN_NOTEBOOK_MODE", "quick")  # "tiny" in the test suite
TINY = MODE == "tiny"

import matplotlib.pyplot as plt
import numpy as np"""


def nb(cells):
    book = new_notebook()
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    book.metadata["language_info"] = {"name": "python"}
    book.cells = [new_markdown_cell(c[1]) if c[0] == "md" else new_code_cell(c[1]) for c in cells]
    for i, cell in enumerate(book.cells):  # stable ids: regenerating gives no spurious diff
        cell.id = f"cell-{i:02d}"
    return book


transfer = nb(
    [
        (
            "md",
            "# Optimizers as control systems: transfer functions and root loci\n\n"
            "On a quadratic with curvature *h*, one optimizer step is a linear system. "
            "`gdyn_jax.linearize` builds it from the update rule itself (`jax.jacfwd` of one "
            "step), so SGD, heavy ball and Nesterov become transfer functions in *z* whose "
            "poles set stability and convergence speed (Wu et al. 2021; Goh 2017).",
        ),
        (
            "code",
            HEAD
            + """

import jax

from gdyn_jax import linearize, optimizers""",
        ),
        ("md", "## Transfer functions from the reference (the optimum) to the parameter"),
        (
            "code",
            """a, beta, h = 0.1, 0.9, 1.0
opts = {
    "sgd": optimizers.sgd(a),
    "momentum": optimizers.momentum(a, beta),
    "nesterov": optimizers.nesterov(a, beta),
}
systems = {}
with jax.enable_x64(True):
    for name, opt in opts.items():
        systems[name] = linearize.linearize(opt, h)
        tf = linearize.transfer_function(systems[name])
        print(f"{name:9s} num={np.round(tf.num, 4)} den={np.round(tf.den, 4)}")
        print(f"{'':9s} poles={np.round(tf.poles(), 4)} zeros={np.round(tf.zeros(), 4)}")
        print(f"{'':9s} max stable curvature = {linearize.max_stable_curvature(opt):.4g}")""",
        ),
        (
            "md",
            "SGD is first order; heavy ball and Nesterov are second order. Heavy ball's zero "
            "sits at z = 0, Nesterov's moves to z = β/(1+β) (Wu et al. 2021: the extra zero of "
            "NAG). The open loop (`linearize.open_loop`, gradient → parameter change) shows "
            "the same zero:",
        ),
        (
            "code",
            """for name, opt in opts.items():
    ol = linearize.open_loop(opt)
    print(f"{name:9s} open loop num={np.round(ol.num, 4)} den={np.round(ol.den, 4)} "
          f"zeros={np.round(ol.zeros(), 4)}")""",
        ),
        ("md", "The step response is the distance covered from a unit distance to the optimum:"),
        (
            "code",
            """steps = 40 if TINY else 120
fig, ax = plt.subplots(figsize=(6.5, 4))
with jax.enable_x64(True):
    for name, system in systems.items():
        ax.plot(np.ravel(linearize.step_response(system, steps)), label=name)
ax.axhline(1.0, color="k", lw=0.6, ls=":")
ax.set_xlabel("step k")
ax.set_ylabel(r"$\\theta_k$ (optimum at 1)")
ax.set_title(f"Step responses, a={a}, beta={beta}, h={h}")
ax.legend()
plt.show()""",
        ),
        (
            "md",
            "## Root locus in the learning rate\n\nThe poles of heavy ball as *a* grows: "
            "real, then a complex pair of modulus √β (ripples), then real again, leaving the "
            "unit circle at *a h* = 2(1+β).",
        ),
        (
            "code",
            """values = np.linspace(0.01, 4.2, 30 if TINY else 300)
with jax.enable_x64(True):
    poles = np.asarray(linearize.root_locus(optimizers.momentum, "learning_rate", values, 1.0,
                                            beta=0.5))
poles = poles.reshape(len(values), -1)
fig, ax = plt.subplots(figsize=(5, 5))
t = np.linspace(0, 2 * np.pi, 200)
ax.plot(np.cos(t), np.sin(t), "k", lw=0.6, label="unit circle")
sc = None
for i in range(poles.shape[1]):
    sc = ax.scatter(poles[:, i].real, poles[:, i].imag, c=values, s=8, cmap="viridis")
plt.colorbar(sc, ax=ax, label="learning rate a")
ax.set_aspect("equal")
ax.set_xlabel("Re z")
ax.set_ylabel("Im z")
ax.set_title("Heavy-ball root locus in a (beta=0.5, h=1)")
ax.legend()
plt.show()""",
        ),
        ("md", "## Rate over the (a, β) plane (the goh2017 experiment)"),
        (
            "code",
            """from experiments import goh2017

cfg = dict(goh2017.SETTINGS["tiny" if TINY else "quick"])
maps = goh2017.rate_maps(cfg)
rate = np.where(maps["stable"], maps["rate"], np.nan)
fig, ax = plt.subplots(figsize=(6, 4.5))
im = ax.pcolormesh(maps["a"], maps["beta"], rate.T, vmin=0, vmax=1, shading="auto")
plt.colorbar(im, ax=ax, label="convergence rate per step")
ax.set_xlabel("learning rate a (h = 1)")
ax.set_ylabel("momentum beta")
ax.set_title("Heavy-ball rate; blank = divergence")
plt.show()
print("regions present:", sorted(set(goh2017.REGIONS[i] for i in np.unique(maps["regions"]))))""",
        ),
    ]
)

sweep = nb(
    [
        (
            "md",
            "# A sweep and its plots\n\n`gdyn_jax.sweep.run_sweep` trains one model per "
            "(hyperparameter setting, seed) in a single jit + vmap program and returns an "
            "`xarray.Dataset` with dims (grid axes..., seed, step).",
        ),
        (
            "code",
            HEAD
            + """

from gdyn_jax.sweep import SweepConfig, run_sweep""",
        ),
        (
            "code",
            """config = SweepConfig(
    dataset="mnist1d",
    model="logistic" if TINY else "mlp",
    optimizer="momentum",
    steps=20 if TINY else 1500,
    eval_every=10 if TINY else 100,
    batch_size=100,
    hparams={"beta": 0.9},
)
grid = {"learning_rate": [0.01, 0.05] if TINY else [0.003, 0.01, 0.03, 0.1]}
results = run_sweep(config, grid, seeds=2 if TINY else 3, progress=not TINY)
results""",
        ),
        ("md", "Training loss against steps, mean ± sd over seeds, one line per learning rate:"),
        (
            "code",
            """fig, axes = plt.subplots(1, 2, figsize=(11, 4))
steps = results["step"].values
for i, lr in enumerate(results["learning_rate"].values):
    loss = results["train_loss"].sel(learning_rate=lr)
    mean, sd = loss.mean("seed").values, loss.std("seed").values
    axes[0].plot(steps, mean, color=f"C{i}", label=f"a = {lr:g}")
    axes[0].fill_between(steps, mean - sd, mean + sd, color=f"C{i}", alpha=0.2)
axes[0].set_xlabel("step")
axes[0].set_ylabel("training loss (cross-entropy)")
axes[0].set_title("Training curves, mean ± sd over seeds")
axes[0].legend()
acc = results["test_accuracy"].isel(step=-1)
axes[1].errorbar(acc["learning_rate"].values, acc.mean("seed").values, acc.std("seed").values,
                 fmt="o-", capsize=3)
axes[1].set_xscale("log")
axes[1].set_xlabel("learning rate a")
axes[1].set_ylabel("final test accuracy (fraction)")
axes[1].set_title("Final test accuracy against learning rate")
plt.tight_layout()
plt.show()""",
        ),
    ]
)

eos = nb(
    [
        (
            "md",
            "# The edge of stability\n\nOn a quadratic, gradient descent with step *a* is stable "
            "only for curvatures below `linearize.max_stable_curvature` (2/a for GD, (2+2β)/a "
            "for heavy ball). Cohen et al. (ICLR 2021) found that full-batch training of a "
            "network drives its sharpness (top Hessian eigenvalue) up to that limit and keeps "
            "it there.",
        ),
        (
            "code",
            HEAD
            + """

import jax

from gdyn_jax import linearize, optimizers
from gdyn_jax.sweep import SweepConfig, run_sweep""",
        ),
        ("md", "## The limit on a quadratic"),
        (
            "code",
            """a = 0.05
limit = linearize.max_stable_curvature(optimizers.sgd(a))
fig, ax = plt.subplots(figsize=(6.5, 4))
with jax.enable_x64(True):
    for h in (0.9 * limit, 0.99 * limit, 1.01 * limit):
        system = linearize.linearize(optimizers.sgd(a), h)
        error = 1.0 - np.ravel(linearize.step_response(system, 60))
        ax.semilogy(np.abs(error) + 1e-16, label=f"h = {h / limit:.2f} x limit, "
                    f"stable={linearize.is_stable(system)}")
ax.set_xlabel("step k")
ax.set_ylabel("|distance to optimum|")
ax.set_title(f"GD, a={a}: stability limit 2/a = {limit:.1f}")
ax.legend()
plt.show()""",
        ),
        ("md", "## Sharpness during full-batch training"),
        (
            "code",
            """learning_rates = [0.05, 0.1] if TINY else [0.02, 0.05]
config = SweepConfig(
    dataset="mnist1d",
    model="mlp",
    optimizer="sgd",
    loss="mse",
    batch_size=None,
    train_subset=200 if TINY else 1000,
    steps=10 if TINY else 1500,
    eval_every=5 if TINY else 50,
    track_sharpness=True,
    sharpness_subset=200 if TINY else 1000,
    sharpness_iters=5 if TINY else 20,
)
results = run_sweep(config, {"learning_rate": learning_rates}, seeds=1, progress=not TINY)
fig, ax = plt.subplots(figsize=(6.5, 4))
for i, lr in enumerate(learning_rates):
    sharp = results["sharpness"].sel(learning_rate=lr).isel(seed=0)
    ax.plot(results["step"].values, sharp.values, color=f"C{i}", label=f"a = {lr:g}")
    limit = linearize.max_stable_curvature(optimizers.sgd(lr))
    ax.axhline(limit, color=f"C{i}", ls="--", lw=0.8, label=f"2/a = {limit:.0f}")
ax.set_xlabel("step")
ax.set_ylabel("sharpness (top Hessian eigenvalue)")
ax.set_title("Full-batch GD, square loss: sharpness rises to 2/a")
ax.legend()
plt.show()""",
        ),
    ]
)

for name, book in (
    ("01_transfer_functions_and_root_loci", transfer),
    ("02_sweep_and_plots", sweep),
    ("03_edge_of_stability", eos),
):
    nbformat.validate(book)
    nbformat.write(book, pathlib.Path(__file__).parent / f"{name}.ipynb")

"""Helpers of the training experiments: one sweep call, seed statistics, initial curvature.

Every training run goes through the sweep engine (``gdyn_jax.sweep.run_sweep``: one jit + vmap
program per model and optimizer over hyperparameters × seeds); the analyses of its results
live in :mod:`gdyn_jax.measurements`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gdyn_jax.measurements import best_setting, hessian
from gdyn_jax.sweep import SweepConfig, run_sweep, setup, train

MNIST1D_MLP = {"dataset": "mnist1d", "model": "mlp", "loss": "cross_entropy", "batch_size": 100}


def full_batch_fc(widths, examples: int, iters: int, dataset: str = "mnist1d") -> dict[str, Any]:
    """The sweep configuration of the edge-of-stability runs (Cohen et al.): a fully connected
    tanh network of ``widths``, square loss, full batch on the first ``examples`` training
    examples, the sharpness by ``iters`` Lanczos steps on the same examples."""
    return {
        "dataset": dataset,
        "model": "fc",
        "model_kwargs": {"widths": widths, "activation": "tanh"},
        "loss": "mse",
        "batch_size": None,
        "train_subset": examples,
        "sharpness_subset": examples,
        "sharpness_iters": iters,
    }


def sweep(grid: Mapping[str, Sequence[float]], seeds: int, **config: Any):
    """``run_sweep(SweepConfig(**config), grid, seeds)`` without a progress bar."""
    return run_sweep(SweepConfig(**config), dict(grid), seeds=seeds, progress=False)


def mean_sd(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """``{mean, sd, seeds}`` of per-seed values (sd with ddof=1, 0 for one seed; NaN-aware)."""
    arr = np.asarray(values, dtype=float).ravel()
    finite = arr[np.isfinite(arr)]
    mean = float(finite.mean()) if finite.size else float("nan")
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return {"mean": mean, "sd": sd, "seeds": [float(v) for v in arr]}


def pm(stats: Mapping[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    """``'mean ± sd'`` of a :func:`mean_sd` dict, multiplied by ``scale``."""
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['sd'] * scale:.{digits}f}"


def best_accuracy(ds):
    """``analysis.best_setting`` of a sweep by mean final test accuracy, a diverged seed counted
    as 0 (so that a setting is not chosen on its surviving seeds alone)."""
    final = ds["test_accuracy"].isel(step=-1)
    return best_setting(final, diverged=ds["diverged_at"] >= 0, diverged_score=0.0)


def initial_curvature(
    seeds: int, nodes: int = 0, subset: int | None = None, iters: int = 20, **config: Any
) -> list[dict[str, np.ndarray]]:
    """Per seed, at the sweep's initialisation of that seed, on the first ``subset`` training
    examples (all by default): the training ``loss``, the ``sharpness``
    (``hessian.top_eigenvalue``, ``iters`` Lanczos steps) and, if ``nodes`` > 0, the spectral
    measure of the gradient (``hessian.spectral_measure``: ``nodes``, ``weights``). Seed ``s``
    starts from the parameters of member seed ``s`` of any sweep with this ``config``.
    """
    full = {"optimizer": "sgd", "steps": 1, "eval_every": 1, **config}
    task, data = setup.prepare(SweepConfig(**full))
    x, y = data.x_train[:subset], data.y_train[:subset]
    zero = train.as_hparams({"learning_rate": 0.0})

    @jax.jit
    def measure(params, model_state, key):
        def loss(p):
            return train.mean_loss(task, p, model_state, x, y)

        out = {"loss": loss(params), "sharpness": hessian.top_eigenvalue(loss, params, key, iters)}
        if nodes:
            grad = jax.grad(loss)(params)
            out["nodes"], out["weights"] = hessian.spectral_measure(loss, params, grad, nodes)
        return out

    results = []
    for seed in range(seeds):
        state = train.init(task, data, zero, jax.random.key(seed))
        values = measure(state.params, state.model_state, jax.random.key(seed))
        results.append({k: np.asarray(v, np.float64) for k, v in values.items()})
    return results

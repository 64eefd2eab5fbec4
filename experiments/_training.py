r"""Shared helpers of the training experiments (mnist1d, cohen2021, wu2021, an2018, wilson2017).

Every training run goes through the sweep engine (``gdyn_jax.sweep.run_sweep``): one
jit + vmap program per (model, optimizer) over a grid of hyperparameters × seeds. This module
only turns the resulting ``xarray.Dataset`` into the numbers the reports quote (mean ± sd over
seeds, steps to a target, the overshoot of a training curve) and draws the common figure types.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments._report import save_figure


def sweep(grid: Mapping[str, Sequence[float]], seeds: int, **config: Any):
    """Runs ``run_sweep(SweepConfig(**config), grid, seeds)`` quietly; returns (dataset, seconds).

    The wall time includes compilation, which is what a user of ``gdyn reproduce`` waits for.
    """
    from gdyn_jax.sweep import SweepConfig, run_sweep

    start = time.perf_counter()
    ds = run_sweep(SweepConfig(**config), dict(grid), seeds=seeds, progress=False)
    return ds, time.perf_counter() - start


def mean_sd(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """``{mean, sd, seeds}`` of per-seed values (sd with ddof=1; 0 for one seed; NaN-aware)."""
    arr = np.asarray(values, dtype=float).ravel()
    finite = arr[np.isfinite(arr)]
    mean = float(finite.mean()) if finite.size else float("nan")
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return {"mean": mean, "sd": sd, "seeds": [float(v) for v in arr]}


def pm(stats: Mapping[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    """``'mean ± sd'`` of a :func:`mean_sd` dict, multiplied by ``scale``."""
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['sd'] * scale:.{digits}f}"


def first_step(steps: np.ndarray, reached: np.ndarray) -> float:
    """The first eval step where ``reached`` is true (``inf`` if never)."""
    idx = np.flatnonzero(np.asarray(reached))
    return float(np.asarray(steps)[idx[0]]) if idx.size else math.inf


def steps_to_below(steps: np.ndarray, curve: np.ndarray, target: float) -> float:
    """First eval step with ``curve <= target`` (``inf`` if never; NaN values never count)."""
    curve = np.asarray(curve, dtype=float)
    return first_step(steps, np.isfinite(curve) & (curve <= target))


def steps_to_above(steps: np.ndarray, curve: np.ndarray, target: float) -> float:
    """First eval step with ``curve >= target`` (``inf`` if never)."""
    curve = np.asarray(curve, dtype=float)
    return first_step(steps, np.isfinite(curve) & (curve >= target))


def curve_overshoot(curve: np.ndarray) -> float:
    r"""Overshoot of a decreasing training curve, in percent of the total decrease.

    A loss curve :math:`L_0, L_1, \dots` that descends to its minimum and rebounds
    "overshoots" the way a step response passes its set point:

    .. math::
        \mathrm{OS} = 100\,\max_t \frac{L_t - \min_{s \le t} L_s}{L_0 - \min_s L_s},

    the largest rebound above the running minimum relative to the whole descent (0 for a
    monotone curve). Non-finite values (diverged runs) give ``inf``.
    """
    curve = np.asarray(curve, dtype=float)
    if not np.all(np.isfinite(curve)):
        return math.inf
    drop = curve[0] - curve.min()
    if drop <= 0:
        return 0.0
    rebound = curve - np.minimum.accumulate(curve)
    return float(100.0 * rebound.max() / drop)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation over the pairs where both are finite (NaN if < 3 pairs)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    return float(spearmanr(x[keep], y[keep]).statistic)


def figure(*args: Any, **kwargs: Any):
    """``matplotlib.pyplot.subplots`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, out_dir, filename: str) -> str:
    """Saves ``fig`` as ``out_dir/filename`` (PNG, 110 dpi), closes it, returns ``filename``."""
    save_figure(fig, f"{out_dir}/{filename}")
    return filename


def band(ax, steps, runs: np.ndarray, label: str, color=None, **kwargs: Any) -> None:
    """Mean over the first axis of ``runs`` (seeds × steps) with a ± sd band."""
    runs = np.asarray(runs, dtype=float)
    mean = np.nanmean(runs, axis=0)
    sd = np.nanstd(runs, axis=0, ddof=1) if runs.shape[0] > 1 else np.zeros_like(mean)
    (line,) = ax.plot(steps, mean, label=label, color=color, **kwargs)
    ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)


def initial_sharpness(seeds: int, **config: Any) -> np.ndarray:
    """Per-seed top Hessian eigenvalue at initialisation, through the sweep engine.

    A one-step sweep with a zero learning rate and ``track_sharpness``: member seed ``s`` gets
    the same initialisation as seed ``s`` of any other sweep of the same model, so this is the
    curvature the training sweeps start from. ``config`` gives the dataset, model, loss,
    subsets and ``sharpness_iters``.
    """
    config = {
        **config,
        "optimizer": "sgd",
        "steps": 1,
        "eval_every": 1,
        "hparams": {},
        "track_sharpness": True,
    }
    ds, _ = sweep({"learning_rate": [0.0]}, seeds, **config)
    return np.asarray(ds["sharpness"].isel(learning_rate=0, step=0).values, dtype=float)

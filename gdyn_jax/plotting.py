"""Matplotlib figures shared by the command line, experiments and notebooks.

Control views of a linearised optimizer (owner: linearize): step response, pole-zero map with
the unit circle, root locus, and the three together. Views of a sweep (``gdyn plot``, ``gdyn
sweep --plot``): training curves coloured by the swept value with seed bands, the final metric
over the grid with diverged points and the stability limit, and the two in one figure.
Functions draw on a given ``Axes`` and return it; figures are built with
``matplotlib.figure.Figure`` (no pyplot, no GUI backend). Experiments may append their own
functions at the end of this file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gdyn_jax import extras

__all__ = [
    "plot_step_response",
    "plot_pole_zero",
    "plot_root_locus",
    "analysis_figure",
    "plot_mean_band",
    "plot_bar_pairs",
    "plot_sweep_curves",
    "plot_sweep_final",
    "sweep_figure",
]


def _unit_circle(ax) -> None:
    t = np.linspace(0.0, 2.0 * np.pi, 361)
    ax.plot(np.cos(t), np.sin(t), "k--", lw=0.8, label="unit circle")
    ax.axhline(0.0, color="0.7", lw=0.5)
    ax.axvline(0.0, color="0.7", lw=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Re z")
    ax.set_ylabel("Im z")


def plot_step_response(
    ax, response, *, label: str | None = None, target: float = 1.0, band: float = 0.02
):
    r"""Plot :math:`\theta_k` against the step k, with the target and its ±``band`` band."""
    y = np.asarray(response)
    k = np.arange(y.shape[0])
    ax.plot(k, y, label=label)
    ax.axhline(target, color="k", lw=0.8)
    ax.axhspan(target * (1 - band), target * (1 + band), color="0.85", zorder=0)
    ax.set_xlabel("step k")
    ax.set_ylabel(r"$\theta_k$")
    return ax


def plot_pole_zero(
    ax,
    poles: Sequence[complex],
    zeros: Sequence[complex] = (),
    *,
    title: str | None = "pole-zero map",
):
    """Poles (x) and zeros (o) in the z-plane with the unit circle (the stability boundary)."""
    poles, zeros = np.asarray(poles, complex), np.asarray(zeros, complex)
    _unit_circle(ax)
    ax.plot(poles.real, poles.imag, "x", color="C3", ms=9, mew=2, label="poles")
    if zeros.size:
        ax.plot(zeros.real, zeros.imag, "o", mfc="none", mec="C0", ms=9, mew=1.5, label="zeros")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_root_locus(ax, values, poles, *, name: str = "learning_rate", title: str | None = None):
    """Closed-loop poles (rows of ``poles``, one per value of ``name``) coloured by the value."""
    values = np.asarray(values, float)
    poles = np.asarray(poles, complex)
    _unit_circle(ax)
    sc = None
    for j in range(poles.shape[1]):
        sc = ax.scatter(poles[:, j].real, poles[:, j].imag, c=values, s=8, cmap="viridis")
    if sc is not None:
        ax.figure.colorbar(sc, ax=ax, label=name, shrink=0.8)
    ax.set_title(title or f"root locus in {name}")
    return ax


def analysis_figure(
    step,
    poles,
    zeros,
    locus_values,
    locus_poles,
    *,
    name: str = "learning_rate",
    title: str | None = None,
):
    """One figure: step response, pole-zero map and root locus (as ``gdyn analyze --plot``)."""
    fig = extras.figure.Figure(figsize=(15, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    step = np.asarray(step)
    if step.ndim == 1:
        plot_step_response(axes[0], step)
    else:
        for i in range(step.shape[1]):
            plot_step_response(axes[0], step[:, i], label=f"θ[{i}]")
        axes[0].legend(fontsize=8)
    axes[0].set_title("step response (r = 1)")
    plot_pole_zero(axes[1], poles, zeros)
    plot_root_locus(axes[2], locus_values, locus_poles, name=name)
    if title:
        fig.suptitle(title)
    return fig


def plot_mean_band(ax, steps, runs, *, label: str | None = None, color=None, **kwargs):
    """The mean over the first axis of ``runs`` (seeds × steps) with a ± sd band (NaN-aware)."""
    runs = np.asarray(runs, dtype=float)
    with warnings.catch_warnings():  # a step where every seed diverged is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(runs, axis=0)
        sd = np.nanstd(runs, axis=0, ddof=1) if runs.shape[0] > 1 else np.zeros_like(mean)
    (line,) = ax.plot(steps, mean, label=label, color=color, **kwargs)
    ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    return ax


def plot_bar_pairs(
    ax, names, left, right, *, labels: tuple[str, str], left_err=None, right_err=None
):
    """Two bars per name, side by side (e.g. measured beside published or predicted), each pair
    of bars with optional symmetric error bars (``±err``); the names label the x axis."""
    x = np.arange(len(names))
    ax.bar(x - 0.2, left, 0.4, yerr=left_err, capsize=4, label=labels[0])
    ax.bar(x + 0.2, right, 0.4, yerr=right_err, capsize=4, label=labels[1])
    ax.set_xticks(x, [str(n) for n in names])
    return ax


# --------------------------------------------------------------------------- sweeps


def _value_scale(values) -> tuple[bool, Any]:
    """(log axis?, colour norm) for swept values: logarithmic when all are positive and
    they span a factor of 10 or more."""
    values = np.asarray(values, float)
    colors = extras.colors
    log = bool(np.all(values > 0) and values.max() >= 10 * values.min())
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = (lo / 2, lo * 2) if log or lo > 0 else (lo - 1, lo + 1)
    return log, (colors.LogNorm(lo, hi) if log else colors.Normalize(lo, hi))


def plot_sweep_curves(
    ax, steps, runs, values, *, name: str, metric: str, cmap: str = "viridis", colorbar=True
):
    """Training curves of one panel of a sweep: ``runs`` (values × seeds × steps), one curve per
    swept value (the mean over seeds, NaN-aware, with a ± sd band), coloured by the value on
    a colour scale (logarithmic for positive values spanning a decade or more)."""
    runs = np.asarray(runs, float)
    log, norm = _value_scale(values)
    mappable = extras.cm.ScalarMappable(norm=norm, cmap=cmap)
    for value, seeds in zip(values, runs, strict=True):
        plot_mean_band(ax, steps, seeds, color=mappable.to_rgba(value), lw=1.4)
    if colorbar:
        ax.figure.colorbar(mappable, ax=ax, label=name)
    finite = runs[np.isfinite(runs)]
    if metric.endswith("loss") and finite.size and finite.min() > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    return ax


def final_values(runs) -> np.ndarray:
    """Each run's last finite value along the last axis (NaN for a run with none)."""
    runs = np.asarray(runs, float)
    finite = np.isfinite(runs)
    last = runs.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    out = np.take_along_axis(runs, last[..., None], axis=-1)[..., 0]
    return np.where(finite.any(axis=-1), out, np.nan)


def crossing(values, ratio, log: bool) -> float | None:
    """The first swept value where ``ratio`` reaches 1 from below, interpolated between the
    grid points around it: linearly in (log value, log ratio) on a ``log`` axis (exact for a
    power law, such as gradient descent's ratio :math:`a S / 2`), else in (value, ratio).
    None if it never does."""
    x = np.log(np.asarray(values, float)) if log else np.asarray(values, float)
    r = np.asarray(ratio, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(r) if log else r - 1.0  # crosses 0 where the ratio crosses 1
    for i in range(len(x) - 1):
        a, b = y[i], y[i + 1]
        if np.isfinite(a) and np.isfinite(b) and a < 0.0 <= b:
            point = x[i] + (-a / (b - a)) * (x[i + 1] - x[i])
            return float(np.exp(point) if log else point)
    return None


def _mark_diverged(ax, values, diverged_at) -> None:
    """An ``x`` at the top of the panel above every swept value where some seed diverged,
    labelled with the first step of divergence (and k/n when not every seed diverged)."""
    transform = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    label = "diverged (step)"
    for value, steps in zip(values, np.asarray(diverged_at), strict=True):
        hit = steps[steps >= 0]
        if not hit.size:
            continue
        text = f"{int(hit.min())}" + (
            "" if hit.size == steps.size else f" ({hit.size}/{steps.size})"
        )
        ax.plot([value], [0.96], "x", color="C3", ms=9, mew=2, transform=transform, label=label)
        ax.annotate(
            text,
            (value, 0.96),
            xycoords=transform,
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=7,
            color="C3",
        )
        label = None


def plot_sweep_final(
    ax, values, runs, diverged_at, *, name: str, metric: str, limit: float | None = None
):
    """The final metric of one panel over the swept values: ``runs`` (values × seeds × steps)
    read at each run's last finite evaluation, diverged seeds left out (mean ± sd over the
    others, each seed a dot); diverged values marked with their step (``_mark_diverged``); the
    swept value where the rule's stability limit meets the measured sharpness (``limit``) as
    a dashed vertical line, values past it shaded."""
    values = np.asarray(values, float)
    diverged_at = np.asarray(diverged_at)
    finals = np.where(diverged_at >= 0, np.nan, final_values(runs))  # (values, seeds)
    log, _ = _value_scale(values)
    plot_mean_band(ax, values, finals.T, color="C0", marker="o", label=f"final {metric}")
    for seed in finals.T:
        ax.plot(values, seed, ".", color="C0", alpha=0.4, ms=4)
    _mark_diverged(ax, values, diverged_at)
    if log:
        ax.set_xscale("log")
    if limit is not None:
        xlim = ax.get_xlim()
        ax.axvline(limit, color="C3", ls="--", lw=1.2, label="stability limit at the sharpness")
        ax.axvspan(limit, max(xlim[1], limit), color="C3", alpha=0.07, lw=0)  # to the edge
        ax.set_xlim(xlim[0], max(xlim[1], limit))
    ax.set_xlabel(name)
    ax.set_ylabel(f"final {metric}")
    ax.legend(fontsize=7, loc="best")
    return ax


def sweep_panels(ds, x: str, max_panels: int = 8) -> list[dict[str, float]]:
    """The selections of a sweep's panels: one per value (combination) of the grid axes
    other than ``x`` (one panel, ``{}``, for a one-axis grid)."""
    others = [d for d in ds["diverged_at"].dims if d not in (x, "seed")]
    panels: list[dict[str, float]] = [{}]
    for dim in others:
        panels = [{**p, dim: float(v)} for p in panels for v in ds[dim].values]
    if len(panels) > max_panels:
        raise ValueError(
            f"select: {len(panels)} panels ({' × '.join(others)}), more than {max_panels}; "
            "fix some grid axes with --select NAME=VALUE"
        )
    return panels


def sweep_figure(ds, *, metric: str, x: str, ratio=None, title: str | None = None):
    """The figure of a sweep's results Dataset (``run_sweep``'s, or a checkpoint's).

    Top row: the training curves of ``metric`` coloured by the swept value ``x`` with seed bands
    (:func:`plot_sweep_curves`); bottom row: the final ``metric`` over ``x`` with diverged points
    and their steps (:func:`plot_sweep_final`). One column per value (combination) of the other
    grid axes (``sweep_panels``). ``ratio`` (optional, over the grid axes): the measured
    sharpness over the rule's stability limit; where it reaches 1 along ``x`` (see
    ``crossing``), the limit is drawn on the bottom panel.
    """
    panels = sweep_panels(ds, x)
    fig = extras.figure.Figure(figsize=(1.0 + 4.4 * len(panels), 7.4), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False)
    values = np.asarray(ds[x].values, float)
    steps = np.asarray(ds["step"].values)
    log, _ = _value_scale(values)
    for j, selection in enumerate(panels):
        sub = ds.sel(selection)
        runs = sub[metric].transpose(x, "seed", "step").values
        diverged = sub["diverged_at"].transpose(x, "seed").values
        plot_sweep_curves(
            axes[0, j], steps, runs, values, name=x, metric=metric, colorbar=j == len(panels) - 1
        )
        limit = None
        if ratio is not None:
            limit = crossing(values, ratio.sel(selection).transpose(x).values, log)
        plot_sweep_final(axes[1, j], values, runs, diverged, name=x, metric=metric, limit=limit)
        if selection:
            axes[0, j].set_title(", ".join(f"{k}={v:g}" for k, v in selection.items()))
    if title:
        fig.suptitle(title)
    return fig

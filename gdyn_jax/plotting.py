"""Matplotlib figures shared by the command line, experiments and notebooks.

Control views of a linearised optimizer (owner: linearize): step response, pole-zero map with
the unit circle, root locus, and the three together. Functions draw on a given ``Axes`` and
return it; figures are built with ``matplotlib.figure.Figure`` (no pyplot, no GUI backend).
Experiments may append their own functions at the end of this file.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from gdyn_jax import extras

__all__ = [
    "plot_step_response",
    "plot_pole_zero",
    "plot_root_locus",
    "analysis_figure",
    "plot_mean_band",
    "plot_bar_pairs",
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

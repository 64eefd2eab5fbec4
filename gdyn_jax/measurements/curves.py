r"""Reading training curves: the statistics experiments share.

- :func:`best_setting`: the hyperparameter setting with the best mean score over seeds, a
  diverged member counted at a stated score (never silently skipped);
- :func:`steps_to_target`: the first evaluation step at which a curve reaches a target;
- :func:`tail_rate`: the per-step rate of a geometrically decaying error sequence;
- :func:`curve_overshoot`: the largest rebound of a descending curve, as a step response's
  overshoot.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["Best", "best_setting", "curve_overshoot", "steps_to_target", "tail_rate"]


class Best(NamedTuple):
    """The best setting of a sweep.

    Its fields: ``setting``, the coordinate value of each setting dimension (a float, or what
    the coordinate holds), e.g. ``{'learning_rate': 0.1, 'beta': 0.9}``; ``index``, the
    integer position along each setting dimension (for ``isel``); ``score``, the mean over
    seeds, diverged members counted at ``diverged_score``; ``scores``, the per-seed scores
    (NaN for a diverged member); ``diverged``, how many of its seeds diverged.
    """

    setting: dict[str, Any]
    index: dict[str, int]
    score: float
    scores: np.ndarray
    diverged: int


def best_setting(
    scores,
    *,
    diverged=None,
    diverged_score: float,
    maximize: bool = True,
    seed_dim: str = "seed",
) -> Best:
    """The setting whose mean score over seeds is best.

    Args:
      scores: an ``xarray.DataArray`` with a ``seed_dim`` dimension; every other dimension is a
        setting (e.g. the final test accuracy of a sweep, ``ds.test_accuracy.isel(step=-1)``).
      diverged: boolean ``DataArray`` of the same dimensions, True for a diverged member (e.g.
        ``ds.diverged_at >= 0``). A member is also counted as diverged where its score is not
        finite.
      diverged_score: what a diverged member counts as in the mean (e.g. 0 for an accuracy, so
        that a setting that sometimes diverges is not chosen on its surviving seeds alone).
      maximize: whether larger scores are better.
      seed_dim: the name of the seed dimension.

    Returns:
      A :class:`Best`. Ties go to the first setting in the array's order.
    """
    if seed_dim not in scores.dims:
        raise ValueError(f"seed_dim: {seed_dim!r} is not a dimension of scores {scores.dims}")
    dims = [d for d in scores.dims if d != seed_dim]
    values = np.asarray(scores.transpose(*dims, seed_dim).values, dtype=float)
    bad = ~np.isfinite(values)
    if diverged is not None:
        bad |= np.asarray(diverged.transpose(*dims, seed_dim).values, dtype=bool)
    counted = np.where(bad, float(diverged_score), values).mean(axis=-1)
    flat = int(np.argmax(counted) if maximize else np.argmin(counted))
    position = np.unravel_index(flat, counted.shape)
    index = {d: int(i) for d, i in zip(dims, position, strict=True)}
    setting = {
        d: (scores[d].values[i].item() if d in scores.coords else i) for d, i in index.items()
    }
    return Best(
        setting=setting,
        index=index,
        score=float(counted[position]),
        scores=np.where(bad[position], np.nan, values[position]),
        diverged=int(bad[position].sum()),
    )


def steps_to_target(steps, curves, target: float, *, below: bool = True) -> np.ndarray:
    """The first step at which each curve reaches ``target`` (``inf`` where it never does).

    Args:
      steps: the evaluation steps, shape ``(T,)``.
      curves: values at those steps, shape ``(..., T)``; NaN (a diverged run) never counts.
      target: the level to reach.
      below: reach means ``curve <= target`` (a loss); False means ``>=`` (an accuracy).

    Returns:
      An array of shape ``curves.shape[:-1]`` (a float for one curve).
    """
    steps = np.asarray(steps, dtype=float)
    curves = np.asarray(curves, dtype=float)
    if steps.ndim != 1 or curves.shape[-1:] != steps.shape:
        raise ValueError(
            f"curves: expected a last axis of length {steps.size} (the steps), got shape "
            f"{curves.shape}"
        )
    with np.errstate(invalid="ignore"):
        hit = (curves <= target) if below else (curves >= target)
    first = np.where(hit.any(axis=-1), steps[np.argmax(hit, axis=-1)], np.inf)
    return first if first.ndim else float(first)


def tail_rate(
    errors, *, skip: int = 0, window: tuple[float, float] = (1e-11, 1e-1), min_points: int = 10
) -> float:
    r"""The per-step rate :math:`\rho` of the geometric tail :math:`e_k \approx c \rho^k`.

    A least-squares fit of :math:`\log e_k` on :math:`k` over the steps :math:`k \ge` ``skip``
    whose relative error :math:`e_k/e_0` lies inside ``window`` (the transient above it, float64
    rounding below it); if fewer than ``min_points`` steps do, the upper limit is dropped. A
    double pole (:math:`k \rho^k`) biases the fitted rate slightly upwards.

    Args:
      errors: ``e_0, e_1, ...`` (e.g. distances to the optimum), positive.
      skip: steps left out at the start.
      window: (lower, upper) limits on :math:`e_k / e_0`.
      min_points: the fewest points to fit.

    Returns:
      :math:`\rho = \exp(\text{slope})`.
    """
    errors = np.asarray(errors, dtype=float)
    if errors.ndim != 1 or errors.size < 2 or not errors[0] > 0:
        raise ValueError("errors: expected a 1-D sequence of >= 2 values starting above 0")
    k = np.arange(errors.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = errors / errors[0]
    low, high = window
    keep = (k >= skip) & (rel > low) & (rel < high)
    if keep.sum() < min_points:
        keep = (k >= skip) & (rel > low)
    if keep.sum() < 2:
        raise ValueError(f"errors: fewer than 2 points after skip={skip} above {low}")
    return float(np.exp(np.polyfit(k[keep], np.log(errors[keep]), 1)[0]))


def curve_overshoot(curve) -> float:
    r"""The overshoot of a descending curve, in percent of its whole descent.

    A loss curve :math:`L_0, L_1, \dots` that descends and rebounds overshoots the way a step
    response passes its set point:

    .. math::
        \mathrm{OS} = 100\,\max_t \frac{L_t - \min_{s \le t} L_s}{L_0 - \min_s L_s},

    the largest rebound above the running minimum relative to the descent (0 for a monotone
    curve, or one that never descends). A non-finite value (a diverged run) gives ``inf``.
    """
    curve = np.asarray(curve, dtype=float)
    if not np.all(np.isfinite(curve)):
        return float("inf")
    drop = curve[0] - curve.min()
    if drop <= 0:
        return 0.0
    rebound = curve - np.minimum.accumulate(curve)
    return float(100.0 * rebound.max() / drop)

r"""Tuning by analysis: the hyperparameters that minimise the worst-case rate on [mu, L].

The worst case over curvatures :math:`\lambda \in [\mu, L]` of the spectral radius of the
closed loop (:func:`~gdyn_jax.linearize.convergence_rate`) is minimised by a coarse grid over
the hyperparameters and rounds of zooming around the best point, which handles the non-smooth
minimax. Heavy ball recovers Polyak's tuning, SGD :math:`a^* = 2/(\mu + L)` (Lessard, Recht,
Packard 2016, Prop. 1; Goh 2017).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import jax
import numpy as np
import optax

from gdyn_jax.linearize.stability import _rate_fn, _rates_on_points, _require_time_invariant
from gdyn_jax.optimizers import hyperparameters

__all__ = ["optimal_hyperparameters"]


def _default_bounds(name: str, mu: float, L: float) -> tuple[float, float, bool]:
    if name == "learning_rate":
        return 1e-2 / L, 1e1 / L, True
    return 0.0, 1.0 - 1e-9, False


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _tuned_names(factory, names, fixed: dict) -> tuple[str, ...]:
    """``names``, or the factory's numeric hyperparameters not in ``fixed``; checked against
    its signature."""
    own = hyperparameters(factory)
    if names is None:
        names = tuple(name for name in own if name not in fixed)
    names = tuple(names)
    if not names:
        raise ValueError("names: expected at least one hyperparameter name")
    params = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [name for name in names if name not in params and not takes_any]
    if unknown:
        raise ValueError(f"names: {unknown} are not parameters of the factory ({', '.join(own)})")
    return names


def _check_bounds(factory, names, spec, fixed: dict) -> None:
    """Each bound is a finite ``lo < hi`` that the factory itself accepts (its own range checks
    run on the host, with the other names at their lower bounds)."""
    base = {name: lo for name, (lo, _, _) in zip(names, spec, strict=True)}
    for name, (lo, hi, _) in zip(names, spec, strict=True):
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds: {name}: expected finite (low, high) with low < high")
        for value in (lo, hi):
            try:
                factory(**{**fixed, **base, name: value})
            except ValueError as error:
                raise ValueError(
                    f"bounds: {name}={value:g} is outside the factory's range ({error})"
                ) from None


def _check_curvatures(mu, L) -> tuple[float, float]:
    mu, L = float(mu), float(L)
    if not (np.isfinite(mu) and mu > 0):
        raise ValueError(f"mu: expected a finite curvature > 0, got {mu}")
    if not (np.isfinite(L) and L >= mu):
        raise ValueError(f"L: expected a finite curvature >= mu, got {L}")
    return mu, L


def _bounds_spec(names, bounds: dict | None, mu: float, L: float) -> list[list]:
    """``[low, high, log-spaced]`` per name: ``bounds[name]`` or the default."""
    spec = []
    for name in names:
        lo, hi, log = _default_bounds(name, mu, L)
        if bounds and name in bounds:
            try:
                lo, hi = (float(b) for b in bounds[name])
            except (TypeError, ValueError):
                raise ValueError(f"bounds: {name}: expected (low, high)") from None
            log = log and lo > 0
        spec.append([lo, hi, log])
    return spec


def _grid(ranges, grid_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The (P, d) points of the cartesian grid over ``ranges`` and its axes."""
    axes = []
    for lo, hi, log in ranges:
        axes.append(np.geomspace(lo, hi, grid_size) if log else np.linspace(lo, hi, grid_size))
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), axes


def _zoom(rate, spec, lams: np.ndarray, grid_size: int, rounds: int):
    """``(point, rate)``: the best point of the grid over ``spec``, then of ``rounds`` grids
    zoomed around the best point so far (three spacings each side, inside ``spec``)."""
    d = len(spec)
    ranges = [list(s) for s in spec]
    best_point, best_rate = None, np.inf
    for _ in range(rounds + 1):
        points, axes = _grid(ranges, grid_size)
        rates = _rates_on_points(rate, points, lams)
        rates = np.where(np.isfinite(rates), rates, np.inf)
        i = int(np.argmin(rates))
        if rates[i] <= best_rate:
            best_point, best_rate = points[i], float(rates[i])
        idx = np.unravel_index(i, (grid_size,) * d)
        for j in range(d):
            lo_b, hi_b, log = spec[j]
            ax = axes[j]
            a = ax[max(idx[j] - 3, 0)]
            b = ax[min(idx[j] + 3, grid_size - 1)]
            ranges[j] = [max(a, lo_b), min(b, hi_b), log]
    return best_point, best_rate


def optimal_hyperparameters(
    factory: Callable[..., optax.GradientTransformation],
    mu: float,
    L: float,
    names: Sequence[str] | None = None,
    *,
    bounds: dict | None = None,
    num_curvatures: int = 129,
    grid_size: int = 41,
    rounds: int = 20,
    **fixed,
) -> tuple[dict, float]:
    r"""The setting of ``names`` that minimises the worst-case rate over curvatures in [mu, L].

    ``names`` defaults to the factory's own numeric hyperparameters
    (:func:`gdyn_jax.optimizers.hyperparameters`: its signature) that ``fixed`` does not set.
    The worst case is taken over ``num_curvatures`` points of :math:`[\mu, L]`, endpoints
    included (for the linear rules here the worst case over the interval is attained at its
    ends). Search: a coarse ``grid_size``\ :sup:`d` grid over ``bounds`` (default: learning rate
    log-spaced in [0.01/L, 10/L], other names in [0, 1)), then ``rounds`` of zooming a grid of
    the same size around the best point (three grid spacings each side), which handles the
    non-smooth minimax. Returns ``(hyperparameters, rate)``. The bounds are checked by calling
    the factory at them (its own range checks), before any search.

    For heavy ball it recovers Polyak's :math:`a^* = 4/(\sqrt L+\sqrt\mu)^2`,
    :math:`\beta^* = ((\sqrt\kappa-1)/(\sqrt\kappa+1))^2` with rate
    :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`; for SGD :math:`a^* = 2/(\mu+L)`, rate
    :math:`(\kappa-1)/(\kappa+1)` (Lessard et al. 2016, Prop. 1; Goh 2017).
    """
    mu, L = _check_curvatures(mu, L)
    grid_size = _check_int("grid_size", grid_size, 3)
    num_curvatures = _check_int("num_curvatures", num_curvatures, 2)
    rounds = _check_int("rounds", rounds, 0)
    names = _tuned_names(factory, names, fixed)
    spec = _bounds_spec(names, bounds, mu, L)
    _check_bounds(factory, names, spec, fixed)
    _require_time_invariant(factory, names, 1, fixed)
    lams = np.unique(
        np.concatenate([np.linspace(mu, L, num_curvatures), np.geomspace(mu, L, num_curvatures)])
    )
    with jax.enable_x64(True):
        rate = _rate_fn(factory, names, fixed)
        best_point, best_rate = _zoom(rate, spec, lams, grid_size, rounds)
    return dict(zip(names, (float(v) for v in best_point), strict=True)), best_rate

"""Helpers of the ``phases`` experiment: one (model, loss, batch, optimizer) case end to end.

For one case: the pre-flight (timed), the range test (timed), the sweep over the learning
rates (timed), each run's measured phase from its curves, the measured divergence boundary
(the learning rate, interpolated in log, at which half the seeds diverge, refined by
multisection between the last rate where no seed diverged and the first where all did), and
the divergent / not-divergent calls of the pre-flight, the naive rule (diverges iff the
curvature at init exceeds the rule's limit) and the range test on the (rate, seed) pairs
within a factor 4 of the measured boundary.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions import preflight, range_test
from gdyn_jax.sweep import SweepConfig, run_sweep

#: each optimizer of the experiment: its sweep name and fixed hyperparameters
OPTIMIZERS = {
    "sgd": ("sgd", {}),
    "heavy ball": ("momentum", {"beta": 0.9}),
    "nesterov": ("nesterov", {"beta": 0.9}),
    "adam": ("adam", {}),
}
WINDOW = 4.0  # pairs within this factor of the measured boundary are scored


def naive_lr(config: SweepConfig, measurement) -> float:
    """The learning rate at which the rule's limit equals the mean curvature at init: the
    naive boundary, the centre of the swept rates (a seed whose curvature along the gradient
    is not positive, which no limit meets, counts with its sharpness)."""
    probe = preflight(config, {"learning_rate": [1.0]}, measurement=measurement, probe_steps=0)
    return float(probe.limit[0, 0] / np.mean(measurement.positive_curvature()))


def _sweep(config: SweepConfig, lrs, seeds: int):
    start = time.perf_counter()
    ds = run_sweep(config, {"learning_rate": [float(v) for v in lrs]}, seeds, progress=False)
    return ds, time.perf_counter() - start


def _diverged(ds, limit=None) -> np.ndarray:
    """Each run's measured phase (``limit``: the rule's, for the edge of stability)."""
    classes = 10 if "test_accuracy" in ds else None
    measured = ph.measured_phases(
        ds["train_loss"].values,
        ds["diverged_at"].values,
        ds["sharpness"].values if "sharpness" in ds else None,
        limit,
        accuracy=ds["test_accuracy"].values if classes else None,
        classes=classes,
    )
    return measured


def measured_boundary(config: SweepConfig, lrs, fraction, seeds: int, rounds: int, extra: int):
    """The rate at which half the seeds diverge: multisection (``extra`` rates per round)
    between the last rate with none diverged and the first with all, then interpolation in
    log rate. Returns (boundary, all rates, their fractions, seconds)."""
    rates, frac, seconds = list(lrs), list(fraction), 0.0
    for _ in range(rounds):
        order = np.argsort(rates)
        r, f = np.asarray(rates)[order], np.asarray(frac)[order]
        none = np.nonzero(f == 0)[0]
        full = np.nonzero(f == 1)[0]
        if not none.size or not full.size or full[0] < none[-1]:
            break
        lo, hi = r[none[none < full[0]][-1]], r[full[0]]
        new = np.geomspace(lo, hi, extra + 2)[1:-1]
        ds, took = _sweep(config, new, seeds)
        seconds += took
        rates += list(new)
        frac += list((_diverged(ds) == 3).mean(axis=-1))
    return _half(np.asarray(rates), np.asarray(frac)), rates, frac, seconds


def _half(rates: np.ndarray, frac: np.ndarray) -> float:
    """The first crossing of 1/2 by the fraction, interpolated in log rate (NaN if none)."""
    order = np.argsort(rates)
    r, f = np.log(rates[order]), frac[order]
    for i in range(len(r) - 1):
        if f[i] < 0.5 <= f[i + 1]:
            return float(np.exp(r[i] + (0.5 - f[i]) / (f[i + 1] - f[i]) * (r[i + 1] - r[i])))
    return float(np.exp(r[0])) if f[0] >= 0.5 else float("nan")


def predicted_boundary(lrs: np.ndarray, divergent: np.ndarray) -> float:
    """The rate at which half the seeds are predicted divergent, interpolated in log rate."""
    return _half(np.asarray(lrs), divergent.mean(axis=-1))


def covering(lrs: np.ndarray, edge: np.ndarray | None) -> np.ndarray:
    """The rates ``lrs`` (log-spaced), widened where needed to span a factor ``WINDOW`` either
    side of every seed's probed divergence edge (as many rates, log-spaced): the span of the
    grid follows what the pre-flight measured on the model, not a constant per optimizer
    (Adam, whose limit at init says little of its edge, diverges 4-24 times above it on
    MNIST-1D). Unchanged where nothing was probed or no probed rate diverged."""
    finite = np.asarray(edge, np.float64) if edge is not None else np.array([])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not finite.size:
        return lrs
    low = min(lrs[0], finite.min() / WINDOW)
    high = max(lrs[-1], finite.max() * WINDOW)
    if low == lrs[0] and high == lrs[-1]:
        return lrs
    return np.geomspace(low, high, len(lrs))


def run_case(config: SweepConfig, s, measurement=None) -> dict[str, Any]:
    """One case (module doc); ``s`` the experiment's settings."""
    centre = naive_lr(config, measurement) if measurement is not None else None
    if centre is None:
        first = preflight(config, {"learning_rate": [1.0]}, s.seeds, probe_steps=0, **_opts(s))
        measurement = first.measurement
        centre = naive_lr(config, measurement)
    lrs = centre * np.geomspace(s.span[0], s.span[1], s.rates)
    pre = preflight(
        config, {"learning_rate": list(lrs)}, s.seeds, measurement=measurement, **_probe(s)
    )
    wider = covering(lrs, pre.edge)
    if not np.array_equal(wider, lrs):  # the probed edge outside the
        lrs = wider  # grid's window: the grid widened to it, and predicted again on it
        pre = preflight(
            config,
            {"learning_rate": list(lrs)},
            s.seeds,
            measurement=measurement,
            probe=pre.probe,  # the edge does not depend on the rates: not probed twice
            **_probe(s),
        )
    fine_lrs = np.geomspace(lrs[0], lrs[-1], 8 * s.rates + 1)  # the boundary between rates
    fine = preflight(
        config, {"learning_rate": list(fine_lrs)}, s.seeds, measurement=measurement, probe_steps=0
    )
    # the probed edge does not depend on the grid's rates: the fine grid reads it as it is
    fine_div = fine.phase == "divergent"
    if pre.probe is not None:
        fine_div = fine_lrs[:, None] > pre.edge[:1]
    rt = range_test(config, s.seeds, start=lrs[0] / 10, end=lrs[-1] * 10, steps=s.range_steps)
    ds, sweep_seconds = _sweep(config, lrs, s.seeds)
    measured = _diverged(ds, pre.limit[..., None])
    frac = (measured == 3).mean(axis=-1)
    boundary, rates, fracs, extra_seconds = measured_boundary(
        config, lrs, frac, s.seeds, s.rounds, s.extra_rates
    )
    pred_div = pre.phase == "divergent"
    naive_div = pre.margin > 0
    range_div = lrs[:, None] > rt.stop[None, :]
    near = np.abs(np.log(lrs / boundary))[:, None] <= np.log(WINDOW)
    near = np.broadcast_to(near, pred_div.shape) if np.isfinite(boundary) else near & False
    truth = measured == 3
    score = {
        k: float(np.mean((v == truth)[near])) if near.any() else float("nan")
        for k, v in (("preflight", pred_div), ("naive", naive_div), ("range_test", range_div))
    }
    return {
        "lrs": lrs,
        "preflight": pre,
        "measured": measured,
        "boundary": boundary,
        "predicted_boundary": predicted_boundary(fine_lrs, fine_div),
        "model_boundary": predicted_boundary(fine_lrs, fine.phase == "divergent"),
        "naive_boundary": predicted_boundary(fine_lrs, fine.margin > 0),
        "range_boundary": float(np.exp(np.mean(np.log(rt.stop)))),
        "scores": score,
        "pairs_scored": int(near.sum()),
        "probed_up_to": float(np.max(pre.probe.low)) if pre.probe is not None else float("nan"),
        "rates": rates,
        "fractions": fracs,
        "seconds": {
            "preflight": pre.seconds["total"],
            "preflight_compile": pre.seconds["compile"],
            "probe": pre.seconds["probe"],
            "range_test": rt.seconds,
            "sweep": sweep_seconds + extra_seconds,
        },
    }


def _opts(s) -> dict[str, Any]:
    return {"examples": s.examples, "iters": s.iters}


def _probe(s) -> dict[str, Any]:
    return {"probe_steps": s.probe_steps, "probe_rounds": s.probe_rounds}

"""Helpers of cohen2025: a real full-batch run recorded step by step, its averages, and the
numbers that set it beside the central flow (windowed average, two-step midpoint, distances)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax import data
from gdyn_jax.models.fully_connected import FullyConnected
from gdyn_jax.sweep.losses import mse


def mnist1d_tanh(examples: int, widths: tuple[int, ...], seed: int = 0):
    """``(loss_fn, params)``: the square loss of a tanh MLP on the first MNIST-1D examples."""
    x, y = data.load("mnist1d", f"train[:{examples}]")
    model = FullyConnected(widths=tuple(widths), activation="tanh")
    params = model.init(jax.random.key(seed), x[:1])

    def loss_fn(p):
        return mse(model.apply(p, x), y).mean()

    return loss_fn, params


def real_run(loss_fn, params, opt: optax.GradientTransformation, steps: int):
    """``(losses, weights)`` of ``steps`` full-batch steps: (T,) losses at w_0..w_{T-1} and
    (T+1, n) flat weights w_0..w_T."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss_fn)(p)
            u, s = opt.update(g, s, p)
            p = optax.apply_updates(p, u)
            return (p, s), (value, ravel_pytree(p)[0])

        return jax.lax.scan(step, (p, opt.init(p)), None, length=steps)[1]

    losses, ws = run(params)
    return np.asarray(losses), np.concatenate([np.asarray(flat)[None], np.asarray(ws)])


def centred_mean(values: np.ndarray, k: int) -> np.ndarray:
    """Mean over the centred window ``[t-k, t+k)`` of 2k steps (NaN where it does not fit or
    holds a NaN)."""
    values = np.asarray(values, float)
    out = np.full(values.shape, np.nan)
    zero = np.zeros((1, *values.shape[1:]))
    csum = np.concatenate([zero, np.cumsum(np.nan_to_num(values), axis=0)])
    bad = np.concatenate([zero, np.cumsum(np.isnan(values), axis=0)])
    t = np.arange(k, len(values) - k + 1)
    out[t] = (csum[t + k] - csum[t - k]) / (2 * k)
    out[t] = np.where(bad[t + k] > bad[t - k], np.nan, out[t])  # a window with a NaN
    return out


def midpoint_losses(loss_fn, params, weights: np.ndarray) -> np.ndarray:
    """Loss at the second-order midpoints (w_{t-1} + 2 w_t + w_{t+1}) / 4 (NaN at the ends)."""
    unravel = ravel_pytree(params)[1]
    mids = (weights[:-2] + 2 * weights[1:-1] + weights[2:]) / 4
    values = np.asarray(jax.lax.map(jax.jit(lambda w: loss_fn(unravel(w))), mids))
    return np.concatenate([[np.nan], values, [np.nan] * (len(weights) - 1 - len(values) - 1)])


def oscillation_shares(loss_fn, params, losses, weights: np.ndarray, flow, k: int):
    r"""Per step, the share of the loss carried by the oscillation, real and predicted: the real
    run's :math:`(\bar L - L(\bar w))/\bar L` over the centred 2k-step window (for
    :math:`w_t = \bar w + (-1)^t\delta` along a direction of curvature :math:`\lambda` the
    numerator is :math:`\tfrac12\lambda\|\delta\|^2`) and the central flow's
    :math:`\tfrac12 S^*\operatorname{tr}\Sigma / (L + \tfrac12 S^*\operatorname{tr}\Sigma)`,
    averaged over the same window. NaN where the window does not fit."""
    unravel = ravel_pytree(params)[1]
    steps = len(losses)
    avg = centred_mean(losses, k)
    w_bar = centred_mean(weights[:steps], k)
    fits = np.flatnonzero(np.isfinite(avg))
    at_mean = np.full(steps, np.nan)
    if fits.size:
        evaluate = jax.jit(lambda w: loss_fn(unravel(w)))
        at_mean[fits] = np.asarray(jax.lax.map(evaluate, w_bar[fits].astype(weights.dtype)))
    predicted = (flow.predicted_loss - flow.loss) / flow.predicted_loss
    return (avg - at_mean) / avg, centred_mean(predicted, k)


def edge_step(flow, limit: float) -> int:
    """The first step at which the central flow's sharpness reaches 0.99 S* (T if never)."""
    reached = np.flatnonzero(flow.sharpness >= 0.99 * limit)
    return int(reached[0]) if reached.size else len(flow.sharpness)


def relative_errors(losses, flow, start: int, k: int) -> dict[str, float]:
    """Median relative errors, over the steps from ``start`` whose centred window of 2k steps
    fits, of the central flow and the stable flow against the real loss so averaged."""
    avg = centred_mean(losses, k)
    steps = np.arange(start, len(losses))
    steps = steps[np.isfinite(avg[steps])]
    if not steps.size:
        return {"cf": np.nan, "gf": np.nan}

    def rel(pred):
        return float(np.median(np.abs(pred[steps] - avg[steps]) / avg[steps]))

    return {"cf": rel(flow.predicted_loss), "gf": rel(flow.stable_loss)}


def weight_distances(weights: np.ndarray, flow, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step, |w_bar - w_CF| and |w_bar - w_GF| with w_bar the centred 2k-step mean of the
    real run's weights (NaN where the window does not fit)."""
    w_bar = centred_mean(weights, k)
    d_cf = np.linalg.norm(w_bar - flow.params, axis=1)
    d_gf = np.linalg.norm(w_bar - flow.stable_params, axis=1)
    return d_cf, d_gf


def summary(
    name: str, limit: float, losses, weights, flow, mids, k: int, ks, shares=None
) -> dict[str, Any]:
    """The numbers of one rule: relative errors after the edge (at the scored k and at each of
    ``ks``), the two-step average and midpoint, distances at the last step the window fits."""
    steps = len(losses)
    start = edge_step(flow, limit)
    scored = relative_errors(losses, flow, start, k)
    avg = centred_mean(losses, k)
    window = np.arange(start, steps)
    window = window[np.isfinite(avg[window]) & np.isfinite(mids[window])]
    d_cf, d_gf = weight_distances(weights[: steps + 1], flow, k)
    end = steps - k  # the last step whose centred window fits
    out = {
        "rule": name,
        "limit": limit,
        "edge_step": start,
        "steps_scored": int(window.size),
        "cf_error": scored["cf"],
        "gf_error": scored["gf"],
        "errors_by_k": {int(j): relative_errors(losses, flow, start, j) for j in ks},
        "distance_cf": float(d_cf[end]),
        "distance_gf": float(d_gf[end]),
        "sdcp_residual": float(np.max(flow.sdcp_residual)),
        "substeps": list(flow.substeps),
    }
    if window.size:
        two = centred_mean(losses, 1)
        out["two_step_error"] = float(np.median(np.abs(two[window] - avg[window]) / avg[window]))
        bias = (mids[window] - avg[window]) / avg[window]
        out["midpoint_error"] = float(np.median(np.abs(bias)))
        out["midpoint_bias"] = float(np.median(bias))
        out["cf_sharpness_error"] = float(np.median(np.abs(flow.sharpness[window] / limit - 1)))
        if shares is not None:
            out["share_real"] = float(np.median(shares[0][window]))
            out["share_cf"] = float(np.median(shares[1][window]))
    return out

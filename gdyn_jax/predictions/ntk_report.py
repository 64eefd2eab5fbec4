r"""An NTK-loop prediction as one JSON-able object, with the check against a real run beside it.

:func:`summary` is what ``gdyn predict --json`` prints: the steps, the predicted train loss
(discrete and continuous), the per-mode table of the modes shown (the top mode, every fast mode
:math:`\eta\mu \ge 0.5`, and 20 modes log-spaced in curvature, one per 2 % cluster: curvature,
pole modulus, regime, settling step, and the predicted, continuous and, with a check, measured
projections :math:`\rho_i(k)`), and with a measured run the relative errors of the loss curve
and of the fast modes' projections (``{median, max}``). For an adaptive rule ``preconditioner``
states what was frozen, after how many warm-up updates, and that the curve is an approximation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gdyn_jax.predictions import ntk_adam, ntk_loop
from gdyn_jax.predictions import ntk_predict as npred

__all__ = ["minibatch", "shown_modes", "summary"]

MODE_WINDOW = 100  # steps over which a mode's projection error is taken


def _clean(values) -> Any:
    """Floats (rounded to 10 significant digits) with non-finite values as None, nested."""
    arr = np.asarray(values, np.float64)
    if arr.ndim == 0:
        v = float(arr)
        return float(f"{v:.10g}") if math.isfinite(v) else None
    return [_clean(v) for v in arr]


def shown_modes(prediction: npred.NTKPrediction) -> np.ndarray:
    """The modes a report shows: the fast ones and 20 log-spaced in curvature."""
    settled = np.abs(prediction.responses[:, -1]) <= ntk_loop.SETTLING
    spread = npred.spread_modes(
        prediction.modes.curvatures, settled, projections=prediction.modes.projections
    )
    return np.union1d(npred.fast_modes(prediction), spread).astype(int)


def _error(per_mode: np.ndarray) -> dict[str, float | None]:
    if per_mode.size == 0:
        return {"median": None, "max": None}
    return {"median": _clean(np.median(per_mode)), "max": _clean(np.max(per_mode))}


def summary(prediction: npred.NTKPrediction, measured: npred.Measured | None = None) -> dict:
    """The prediction (and its check against ``measured``) as one JSON-able dict."""
    p = prediction
    idx = shown_modes(p)
    table = p.table(idx)
    pred_proj, cont_proj = p.projections()[idx], p.projections(True)[idx]
    out: dict[str, Any] = {
        "steps": list(range(p.steps + 1)),
        "train_loss": _clean(p.train_loss),
        "continuous_train_loss": _clean(p.continuous_train_loss),
        "continuous": {"kind": p.continuous_kind, "step": _clean(p.effective_step)},
        "exact": bool(p.exact),
        "hyperparameters": {k: _clean(v) for k, v in p.hparams.items()},
        "examples": int(p.modes.outputs.shape[0]),
        "num_modes": int(p.modes.curvatures.size),
        "top_curvature": _clean(p.modes.curvatures[0]),
        "seconds": _clean(p.seconds),
    }
    if p.adaptive:
        warmup = p.modes.warmup
        out["preconditioner"] = {
            "frozen": list(ntk_adam.FROZEN),
            "warmup": int(warmup),
            "note": ntk_adam.APPROXIMATION.format(warmup=warmup),
        }
    measured_proj = None
    if measured is not None:
        measured_proj = npred.measured_projections(p, measured.outputs)
    modes = []
    for j, i in enumerate(idx):
        row = {
            "index": int(i),
            "eigenvalue": _clean(table["curvature"][j]),
            "pole_modulus": _clean(table["pole_modulus"][j]),
            "regime": str(table["regime"][j]),
            "settling": int(table["settling"][j]),
            "predicted": _clean(pred_proj[j]),
            "continuous": _clean(cont_proj[j]),
        }
        if measured_proj is not None:
            row["measured"] = _clean(measured_proj[i])
        modes.append(row)
    out["modes"] = modes
    if measured is not None:
        out.update(_check(p, measured, measured_proj))
    return out


def _check(p: npred.NTKPrediction, measured: npred.Measured, projections) -> dict:
    loss = measured.loss
    fast = npred.fast_modes(p)
    p0 = p.modes.projections[fast]
    disc = npred.mode_errors(p.projections()[fast], projections[fast], p0, MODE_WINDOW)
    cont = npred.mode_errors(p.projections(True)[fast], projections[fast], p0, MODE_WINDOW)
    upto = int(np.argmax(loss < 0.1 * loss[0])) if np.any(loss < 0.1 * loss[0]) else loss.size
    return {
        "measured_train_loss": _clean(loss),
        "relative_error": {k: _clean(v) for k, v in npred.curve_error(p.train_loss, loss).items()},
        "continuous_relative_error": {
            k: _clean(v) for k, v in npred.curve_error(p.continuous_train_loss, loss).items()
        },
        "steps_to_tenth": upto,
        "relative_error_to_tenth": {
            k: _clean(v) for k, v in npred.curve_error(p.train_loss, loss, upto).items()
        },
        "fast_modes": [int(i) for i in fast],
        "mode_relative_error": _error(disc),
        "continuous_mode_relative_error": _error(cont),
        "train_seconds": _clean(measured.seconds),
    }


def minibatch(expected, floor, measured: npred.Measured | None = None) -> dict:
    """Mini-batch SGD's expected curve and noise floor (``ntk_noise.minibatch_loss``) as JSON
    fields, with the relative error against a measured run."""
    out = {"expected_train_loss": _clean(expected), "noise_floor": _clean(floor)}
    if measured is not None:
        error = npred.curve_error(expected, measured.loss)
        out["expected_relative_error"] = {k: _clean(v) for k, v in error.items()}
    return out

"""A finished sweep scored against its pre-flight: each member's measured phase beside the
predicted one (``gdyn sweep --preflight``, ``gdyn preflight --results``, the experiments)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.preflight import Preflight

__all__ = ["score_sweep"]


def score_sweep(pre: Preflight, ds, classes: int | None = None) -> dict[str, Any]:
    """The measured phase of every member of a finished sweep (``phases.measured_phases`` on
    its curves; the edge of stability against the predicted limit) beside the prediction:
    ``{'measured': (P, S) strings, 'agreement': {phase: (right, predicted)},
    'divergence_call': fraction right}``; members the sweep skipped are left out."""
    order = (*pre.names, "seed", "step")
    curves = {
        k: ds[k].transpose(*order).values.reshape(*pre.phase.shape, -1)
        for k in ("train_loss", "sharpness", "test_accuracy")
        if k in ds
    }
    diverged = ds["diverged_at"].transpose(*order[:-1]).values.reshape(pre.phase.shape)
    measured = ph.measured_phases(
        curves["train_loss"],
        diverged,
        curves.get("sharpness"),
        pre.limit[..., None],
        curves.get("test_accuracy"),
        classes if "test_accuracy" in curves else None,
    )
    names = np.asarray(ph.MEASURED_PHASES, dtype=object)[measured]
    used = np.ones(pre.phase.shape, bool)
    if "skipped" in ds:
        used = ~ds["skipped"].transpose(*order[:-1]).values.reshape(pre.phase.shape)
    agreement = {
        p: (
            int(np.sum((pre.phase == p) & (names == p) & used)),
            int(np.sum((pre.phase == p) & used)),
        )
        for p in ph.PHASES
    }
    known = used & (pre.phase != "unknown")
    call = (pre.phase == "divergent") == (names == "divergent")
    return {
        "measured": names,
        "agreement": agreement,
        "divergence_call": float(np.mean(call[known])) if known.any() else float("nan"),
    }

"""Predictions: a rule's exact analysis on quadratics joined to a network's measurements.

Each function here computes what :mod:`gdyn_jax.linearize` says a rule does on the quadratic
model of a real loss, usually beside what :mod:`gdyn_jax.measurements` measured on it: kicks
along Hessian eigenvectors and the regime of each mode's loop
(``gdyn_jax.predictions.modes``), the noise floor along the top eigenvector
(``gdyn_jax.predictions.noise_floor``), the central flow of a rule at the edge of stability
(``gdyn_jax.predictions.central_flow``, from the rule's limit, exit mode and effective step in
``gdyn_jax.predictions.edge``), the loss on the quadratic model whose curvature is a
measured spectral measure (``gdyn_jax.predictions.spectral``), the phase of every point of a
sweep before it trains (``gdyn_jax.predictions.preflight``, from ``gdyn_jax.predictions.phases``;
the learning-rate range test beside it, ``gdyn_jax.predictions.range_test``), and a network's
training curve from its empirical NTK at initialisation, mode by mode through the rule's closed
loop (``gdyn_jax.predictions.ntk_loop``; a sweep task predicted and checked in
``gdyn_jax.predictions.ntk_predict``, reported in ``gdyn_jax.predictions.ntk_report``; with
mini-batches, the expected curve in ``gdyn_jax.predictions.ntk_noise``; Adam with its
preconditioner frozen, an approximation, in ``gdyn_jax.predictions.ntk_adam``).

This layer may import everything below it: the foundation, ``optimizers``, ``linearize``,
``data``, ``models``, ``measurements`` and ``sweep``; only ``plotting``, the command line and
the experiments sit above it.
"""

from gdyn_jax.predictions import ntk_adam, ntk_noise, ntk_report  # noqa: F401 - `gdyn predict` reads them
from gdyn_jax.predictions.central_flow import (
    CentralFlow,
    central_flow,
    flow_derivatives,
    min_substeps,
)
from gdyn_jax.predictions.edge import EXIT_MODES, RuleEdge, rule_edge
from gdyn_jax.predictions.modes import (
    REGIMES,
    KickTest,
    kick_test,
    mode_loops,
    predicted_kick_response,
    regime,
    regime_learning_rates,
    regimes_of,
)
from gdyn_jax.predictions.noise_floor import FloorTest, floor_test
from gdyn_jax.predictions.ntk_loop import NTKModes, ntk_modes
from gdyn_jax.predictions.ntk_predict import NTKPrediction, measured_run, predict_training
from gdyn_jax.predictions.phases import MEASURED_PHASES, PHASES, measured_phases
from gdyn_jax.predictions.preflight import (
    InitMeasurement,
    Preflight,
    check_preflight_options,
    measure_init,
    preflight,
)
from gdyn_jax.predictions.preflight_score import score_sweep
from gdyn_jax.predictions.range_test import RangeTest, range_test
from gdyn_jax.predictions.sdcp import solve_sdcp
from gdyn_jax.predictions.smoothness import nonsmooth_operations
from gdyn_jax.predictions.spectral import quadratic_model_loss

__all__ = [
    "EXIT_MODES",
    "MEASURED_PHASES",
    "PHASES",
    "REGIMES",
    "CentralFlow",
    "RuleEdge",
    "FloorTest",
    "InitMeasurement",
    "KickTest",
    "Preflight",
    "check_preflight_options",
    "RangeTest",
    "NTKModes",
    "NTKPrediction",
    "central_flow",
    "floor_test",
    "flow_derivatives",
    "kick_test",
    "min_substeps",
    "measure_init",
    "measured_phases",
    "measured_run",
    "mode_loops",
    "nonsmooth_operations",
    "ntk_modes",
    "predict_training",
    "predicted_kick_response",
    "preflight",
    "quadratic_model_loss",
    "range_test",
    "regime",
    "regime_learning_rates",
    "regimes_of",
    "score_sweep",
    "rule_edge",
    "solve_sdcp",
]

"""Measurements of a real network: the network side of the library.

What a network does, measured: curvature (Hessian-vector products, Lanczos, the sharpness and
the spectral measure; ``gdyn_jax.measurements.hessian``; the warm-started block eigensolver,
``gdyn_jax.measurements.eigensolver``; batch sharpness,
``gdyn_jax.measurements.sharpness``; the sharpness along gradient flow,
``gdyn_jax.measurements.flow``), kicks along Hessian eigenvectors
(``gdyn_jax.measurements.modes``), minibatch gradient noise along a direction
(``gdyn_jax.measurements.noise``), the empirical neural tangent kernel layer by layer
(``gdyn_jax.measurements.ntk``), adversarial probes
(``gdyn_jax.measurements.adversarial``) and statistics of training curves
(``gdyn_jax.measurements.curves``).

This layer may import the foundation (``errors``, ``extras``, ``files``, ``imports``,
``state_structure``), the rules (``optimizers``), ``data`` and ``models``; never the exact
analysis (``linearize``), the sweep or the predictions. Predictions
(:mod:`gdyn_jax.predictions`) set a rule's exact analysis beside these measurements.
"""

from gdyn_jax.measurements.adversarial import fgsm, fgsm_evaluate
from gdyn_jax.measurements.curves import (
    Best,
    best_setting,
    curve_overshoot,
    steps_to_target,
    tail_rate,
)
from gdyn_jax.measurements.eigensolver import Eigenpairs, eigenpairs, lobpcg
from gdyn_jax.measurements.flow import SharpnessFlow, sharpness_along_flow
from gdyn_jax.measurements.hessian import (
    METHODS,
    hvp,
    spectral_measure,
    top_eigenpairs,
    top_eigenvalue,
)
from gdyn_jax.measurements.modes import (
    eigen_residuals,
    kick_responses,
    minimize,
    projected_trajectory,
    relative_error,
)
from gdyn_jax.measurements.noise import noise_ensemble, projected_gradient_noise
from gdyn_jax.measurements.ntk import empirical_ntk
from gdyn_jax.measurements.sharpness import batch_sharpness, directional_curvatures

__all__ = [
    "METHODS",
    "Best",
    "Eigenpairs",
    "SharpnessFlow",
    "batch_sharpness",
    "best_setting",
    "curve_overshoot",
    "directional_curvatures",
    "eigenpairs",
    "eigen_residuals",
    "empirical_ntk",
    "fgsm",
    "fgsm_evaluate",
    "hvp",
    "kick_responses",
    "lobpcg",
    "minimize",
    "noise_ensemble",
    "projected_gradient_noise",
    "projected_trajectory",
    "relative_error",
    "sharpness_along_flow",
    "spectral_measure",
    "steps_to_target",
    "tail_rate",
    "top_eigenpairs",
    "top_eigenvalue",
]

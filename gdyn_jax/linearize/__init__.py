r"""Update rules as discrete-time control systems: the closed loop on a quadratic.

``linearize(opt, hessian)`` closes the loop :math:`g = H(\theta - r) + w` around any optax
transform and returns its state space (float64, from ``jax.jacfwd``); the rest of the package
reads it as a control engineer would: transfer functions in z, step and frequency responses,
python-control's step metrics, poles and damping, stability limits and regions, worst-case
rates and their optimal tuning, and the stationary noise floor. See DESIGN.md, "linearize".

Modules: ``system`` (closed loop -> LinearSystem), ``transfer`` (TransferFunction, open loop),
``response`` (responses, step_info, damping), ``stability`` (spectral radius, limits, grids,
root locus, tuning), ``noise`` (Lyapunov), ``eig`` (batched small eigenvalue kernels),
``robust`` (rates certified over all smooth strongly convex losses: IQCs and an SDP, needs the
``[robust]`` extra).
"""

from gdyn_jax.linearize.noise import stationary_covariance, stationary_excess_loss
from gdyn_jax.linearize.response import (
    STEP_INFO_KEYS,
    damping,
    default_steps,
    frequency_response,
    impulse_response,
    second_order,
    step_info,
    step_info_from_response,
    step_response,
)
from gdyn_jax.linearize.robust import (
    IQCS,
    RobustRate,
    RobustRateGrid,
    robust_rate,
    robust_rate_grid,
)
from gdyn_jax.linearize.stability import (
    convergence_rate,
    is_stable,
    max_stable_curvature,
    optimal_hyperparameters,
    root_locus,
    spectral_radius,
    stability_region,
)
from gdyn_jax.linearize.system import (
    LinearSystem,
    dynamic_mask,
    hessian_modes,
    linearize,
    linearize_grid,
    mode_systems,
    state_space,
    validate_hessian,
)
from gdyn_jax.linearize.transfer import TransferFunction, open_loop, transfer_function

__all__ = [
    "IQCS",
    "LinearSystem",
    "RobustRate",
    "RobustRateGrid",
    "STEP_INFO_KEYS",
    "TransferFunction",
    "convergence_rate",
    "damping",
    "default_steps",
    "dynamic_mask",
    "frequency_response",
    "hessian_modes",
    "impulse_response",
    "is_stable",
    "linearize",
    "linearize_grid",
    "max_stable_curvature",
    "mode_systems",
    "open_loop",
    "optimal_hyperparameters",
    "robust_rate",
    "robust_rate_grid",
    "root_locus",
    "second_order",
    "spectral_radius",
    "stability_region",
    "state_space",
    "stationary_covariance",
    "stationary_excess_loss",
    "step_info",
    "step_info_from_response",
    "step_response",
    "transfer_function",
    "validate_hessian",
]

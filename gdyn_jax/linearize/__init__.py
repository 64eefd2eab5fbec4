r"""Update rules as discrete-time control systems: the closed loop on a quadratic.

``linearize(opt, hessian)`` closes the loop :math:`g = H(\theta - r) + w` around any optax
transform and returns its state space (float64, from ``jax.jacfwd``); the rest of the package
reads it as a control engineer would: transfer functions in z, step and frequency responses,
python-control's step metrics, poles and damping, stability limits and regions, worst-case
rates and their optimal tuning, and the stationary noise floor.

**What "exact" means.** ``LinearSystem.exact`` is True only when the one-step map is affine
(proven on its jaxpr and cross-checked numerically from 1e-8 to 1e8), time-invariant and
deterministic; otherwise ``reason`` holds ``'nonlinear'``, ``'random'``, ``'time-varying'`` or
``'periodic'`` and ``notes`` say why. State leaves are classified by what they do: those whose
next value depends on the parameters or gradient are states; the rest is the rule's *clock*
(counts, schedule states, weight sums, injected hyperparameters, keys), advanced by the rule
and never linearised. A schedule makes the loop time-varying (:func:`linearize_time_varying`:
:math:`A_t, B_t` whose step response is the real run); a clock that repeats makes it periodic
(:func:`linearize_periodic`: the exact k-step lifted system); a random key in the step makes
it random (never silently exact). ``freeze=`` holds chosen leaves fixed. Worked examples::

    >>> import numpy as np, optax
    >>> from gdyn_jax import linearize as lz
    >>> cosine = optax.sgd(optax.cosine_decay_schedule(0.1, decay_steps=100))
    >>> lz.linearize(cosine, 2.0).reason, lz.linearize_time_varying(cosine, 2.0, 100).exact
    (('time-varying',), True)
    >>> print(np.round(lz.max_stable_curvature(cosine, steps=2), 4))  # 2 / a_t
    [20.     20.0049]
    >>> lookahead = optax.lookahead(optax.sgd(0.1), sync_period=3, slow_step_size=0.5)
    >>> lifted = lz.linearize_periodic(lookahead, 2.0)
    >>> lifted.period, f"{lz.spectral_radius(lifted):.3f}"  # 1 - a + a (1 - 0.2)^3, a = 0.5
    (3, '0.756')
    >>> free = optax.contrib.schedule_free_sgd(0.1, b1=0.9)
    >>> lz.linearize(free, 2.0).A.shape  # theta and z; b1, weight_sum, max_lr are clock
    (2, 2)

Modules: ``system`` (closed loop -> LinearSystem), ``grid`` (grids of them, vectorised),
``loop`` (the rule closed around a quadratic), ``exactness`` (the verdict), ``freeze`` (leaves
held fixed), ``timevarying`` (time-varying and lifted periodic systems), ``transfer``
(TransferFunction, open loop), ``response`` (responses, step_info, damping) and
``response_fast`` (step_info's fast path), ``stability`` (spectral radius, stability verdict,
grids, root locus), ``limit`` (the curvature limit of stability), ``lifting`` (matrices over a
horizon, the lifted map of a period), ``tuning`` (optimal hyperparameters), ``noise``
(Lyapunov), ``eig`` (batched small eigenvalue kernels), ``robust`` (rates certified over all
smooth strongly convex losses: IQCs and an SDP, needs the ``[robust]`` extra; its pieces in
``iqc``, ``lmi``, ``infeasibility`` and ``rate_search``), ``outcome`` (the three outcomes,
proven, disproven or undecided, of every analysis that can fail numerically). Which state
leaves are states and which are the clock, and the jaxpr analysis behind it, is
:mod:`gdyn_jax.state_structure`'s.
"""

from gdyn_jax.linearize.bracket import RateBracket, rate_bracket
from gdyn_jax.linearize.grid import linearize_grid
from gdyn_jax.linearize.limit import StabilityLimit, max_stable_curvature, stability_limit
from gdyn_jax.linearize.noise import stationary_covariance, stationary_excess_loss
from gdyn_jax.linearize.outcome import Decision, Outcome, UndecidedError
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
    decide_stable,
    is_stable,
    root_locus,
    spectral_radius,
    stability_region,
)
from gdyn_jax.linearize.system import (
    LinearSystem,
    LoopOverflowError,
    dynamic_mask,
    hessian_modes,
    linearize,
    mode_systems,
    state_space,
    validate_hessian,
)
from gdyn_jax.linearize.timevarying import (
    TimeVaryingSystem,
    linearize_periodic,
    linearize_time_varying,
    transition_contraction,
)
from gdyn_jax.linearize.transfer import TransferFunction, open_loop, transfer_function
from gdyn_jax.linearize.tuning import optimal_hyperparameters

__all__ = [
    "IQCS",
    "Decision",
    "LinearSystem",
    "LoopOverflowError",
    "Outcome",
    "RateBracket",
    "RobustRate",
    "RobustRateGrid",
    "STEP_INFO_KEYS",
    "StabilityLimit",
    "TimeVaryingSystem",
    "TransferFunction",
    "UndecidedError",
    "convergence_rate",
    "damping",
    "decide_stable",
    "default_steps",
    "dynamic_mask",
    "frequency_response",
    "hessian_modes",
    "impulse_response",
    "is_stable",
    "linearize",
    "linearize_grid",
    "linearize_periodic",
    "linearize_time_varying",
    "max_stable_curvature",
    "mode_systems",
    "open_loop",
    "optimal_hyperparameters",
    "rate_bracket",
    "robust_rate",
    "robust_rate_grid",
    "root_locus",
    "second_order",
    "spectral_radius",
    "stability_limit",
    "stability_region",
    "state_space",
    "stationary_covariance",
    "stationary_excess_loss",
    "step_info",
    "step_info_from_response",
    "step_response",
    "transfer_function",
    "transition_contraction",
    "validate_hessian",
]

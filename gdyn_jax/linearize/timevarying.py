r"""Time-varying and periodic closed loops: schedules, warm-up, schedule-free, lookahead.

When the one-step map depends on an advancing clock (a step count read by a schedule, a
weight sum), the loop is a linear *time-varying* system

.. math:: x_{t+1} = A_t x_t + B_t u_t, \qquad y_t = C x_t, \qquad t = 0 \dots T-1,

and :func:`linearize_time_varying` gives :math:`A_t, B_t` over a horizon, computed by advancing
the rule's own clock (one jit of a ``lax.scan``), so its step response is the real run's: SGD
under a schedule has :math:`A_t = 1 - a_t h`. Its stability is not that of the frozen
:math:`A_t` (spectral radii below 1 at every step do not make a product contract): what decides
it is the state-transition matrix :math:`\Phi(t+w, t) = A_{t+w-1}\cdots A_t`, whose per-step
norm :math:`\|\Phi(t+w,t)\|_2^{1/w}` over windows of ``w`` steps
:func:`transition_contraction` gives; the per-step spectral radius and the per-step stability
limit (``max_stable_curvature(opt, steps=T)``: :math:`2/a_t` for SGD) are the frozen views.

When the clock repeats with period k (``optax.lookahead`` with sync period k,
``optax.MultiSteps(every_k_schedule=k)``), the k-step map is time-invariant: the *lifted*
system :math:`x_{k(j+1)} = \Phi_k x_{kj} + \ldots` with :math:`\Phi_k = A_{k-1}\cdots A_0` is an
exact LTI system with one step per period (``period = k``): its transfer function, its
spectral radius :math:`\rho(\Phi_k)` (per optimizer step :math:`\rho(\Phi_k)^{1/k}`) and its
stability limit are exact (Bittanti and Colaneri, *Periodic Systems*, 2009, ch. 6, lifting).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from gdyn_jax.linearize.exactness import MAX_PERIOD, Verdict, verdict
from gdyn_jax.linearize.lifting import lift, matrix_sequence
from gdyn_jax.linearize.loop import build_loop
from gdyn_jax.linearize.system import INPUTS, LinearSystem, validate_hessian

__all__ = [
    "TimeVaryingSystem",
    "linearize_time_varying",
    "linearize_periodic",
    "lift",
    "transition_contraction",
]

_EXACT_TAGS = ("nonlinear", "random")


@dataclasses.dataclass(frozen=True, eq=False)
class TimeVaryingSystem:
    r""":math:`x_{t+1} = A_t x_t + B_t u_t`, :math:`y_t = C x_t` for t = 0 .. T-1 (``dt = 1``).

    Attributes:
      A, B: float64 arrays (T, k, k) and (T, k, 2n); C (n, k), D (n, 2n) as
        :class:`~gdyn_jax.linearize.LinearSystem`'s (inputs: reference, then noise).
      exact: True when these matrices are the exact loop (the map is affine and deterministic
        at every step); ``reason``/``notes`` as LinearSystem's otherwise.
      start: the clock's position (optimizer steps) at t = 0 is that of the ``state`` given.
    """

    A: Any
    B: Any
    C: Any
    D: Any
    exact: bool
    reason: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    num_params: int = 1
    hessian: Any = None
    inputs: tuple[str, ...] = INPUTS
    frozen: tuple[str, ...] = ()

    @property
    def horizon(self) -> int:
        return int(np.shape(self.A)[0])

    @property
    def num_states(self) -> int:
        return int(np.shape(self.A)[-1])

    def input_matrix(self, input: str = "reference"):  # noqa: A002
        """The columns of every ``B_t`` for one input block: (T, k, n)."""
        if input not in self.inputs:
            raise ValueError(f"input: expected one of {self.inputs}, got {input!r}")
        n = self.num_params
        i = self.inputs.index(input)
        return self.B[..., i * n : (i + 1) * n]

    def at(self, t: int) -> LinearSystem:
        """The frozen system of step ``t`` (A_t, B_t), as a LinearSystem (not exact)."""
        return LinearSystem(
            self.A[t],
            self.B[t],
            self.C,
            self.D,
            exact=False,
            num_params=self.num_params,
            hessian=self.hessian,
            reason=("time-varying",),
            notes=(f"time-varying: the matrices of step {t} with the clock frozen there",),
            frozen=self.frozen,
        )


def _check_count(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value!r}")
    return int(value)


def _prepare(opt, hessian, params, state, reference, freeze):
    h = validate_hessian(hessian)
    loop = build_loop(opt, h.shape[0], params=params, state=state, freeze=freeze)
    z0 = loop.z0(reference)
    proof, _ = verdict(loop, h, z0)
    return h, loop, z0, proof


def _kept(proof: Verdict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The reasons (and notes) that remain once the clock is modelled."""
    keep = [i for i, tag in enumerate(proof.reason) if tag in _EXACT_TAGS]
    return tuple(proof.reason[i] for i in keep), tuple(proof.notes[i] for i in keep)


def linearize_time_varying(
    opt, hessian, steps: int, *, params=None, state=None, reference=None, freeze=None
) -> TimeVaryingSystem:
    r"""The closed loop of ``opt`` over ``steps`` optimizer steps: :math:`A_t, B_t`.

    Arguments as :func:`~gdyn_jax.linearize.linearize`; t = 0 is the clock in ``state``
    (``opt.init``'s by default). ``exact`` holds when the map is proven affine and
    deterministic at every step (the proof is on the one program all steps run); for a
    nonlinear rule the matrices are the Jacobians at the given point with the clock advanced.
    """
    steps = _check_count("steps", steps, 1, 1_000_000)
    with jax.enable_x64(True):
        h, loop, z0, proof = _prepare(opt, hessian, params, state, reference, freeze)
        A, B = matrix_sequence(loop, h, z0, steps)
    reason, notes = _kept(proof)
    n = h.shape[0]
    return TimeVaryingSystem(
        A,
        B,
        loop.output_matrix(),
        np.zeros((n, 2 * n)),
        exact=not reason,
        reason=reason,
        notes=notes,
        num_params=n,
        hessian=h,
        frozen=loop.frozen_names,
    )


def linearize_periodic(
    opt,
    hessian,
    *,
    period: int | None = None,
    params=None,
    state=None,
    reference=None,
    freeze=None,
) -> LinearSystem:
    r"""The exact lifted system of a periodic rule: one step per period of k optimizer steps.

    The period is detected (the clock the loop reads returns to its start, checked up to
    1000 steps) or given (a multiple of the detected one; ``period=1`` on a time-invariant rule
    returns :func:`~gdyn_jax.linearize.linearize`'s system). The result is a
    :class:`~gdyn_jax.linearize.LinearSystem` with ``period = k``, ``A`` = :math:`\Phi_k`, the
    reference block held over the period and ``k`` noise blocks
    (:func:`~gdyn_jax.linearize.timevarying.lift`); its state and
    output are sampled at t = 0, k, 2k, ... from the clock phase of ``state``. Everything that
    takes a LinearSystem applies (transfer function, step response in periods, spectral radius
    :math:`\rho(\Phi_k)`, ``spectral_radius(system, per_step=True)`` :math:`=\rho^{1/k}`,
    stationary covariance at the sampling instants). Raises ValueError naming ``period`` when
    the rule's clock does not repeat (use :func:`linearize_time_varying`).
    """
    with jax.enable_x64(True):
        h, loop, z0, proof = _prepare(opt, hessian, params, state, reference, freeze)
        k = _resolve_period(period, proof)
        A, B = matrix_sequence(loop, h, z0, k)
    Phi, B_lift = lift(A, B, h.shape[0])
    reason, notes = _kept(proof)
    n = h.shape[0]
    return LinearSystem(
        Phi,
        B_lift,
        loop.output_matrix(),
        np.zeros((n, n * (1 + k))),
        exact=not reason,
        inputs=INPUTS,
        num_params=n,
        hessian=h,
        reason=reason,
        notes=notes,
        period=k,
        frozen=loop.frozen_names,
    )


def _resolve_period(period, proof: Verdict) -> int:
    if proof.period is None:
        why = (
            f"its clock does not repeat within {MAX_PERIOD} steps"
            if proof.affine
            else "periodicity is only checked for affine rules"
        )
        raise ValueError(f"period: the rule is not periodic ({why}); use linearize_time_varying")
    if period is None:
        return proof.period
    period = _check_count("period", period, 1, MAX_PERIOD)
    if period % proof.period:
        raise ValueError(
            f"period: the rule's clock repeats every {proof.period} steps; {period} is not a "
            "multiple of it"
        )
    return period


def transition_contraction(system: TimeVaryingSystem, window: int) -> np.ndarray:
    r""":math:`\|\Phi(t+w, t)\|_2^{1/w}` for t = 0 .. T-w: the per-step contraction of the state
    transition over each window of ``w`` steps (< 1: the state shrinks over that window, however
    the frozen spectral radii look)."""
    window = _check_count("window", window, 1, system.horizon)
    A = np.asarray(system.A)
    out = np.empty(system.horizon - window + 1)
    for t in range(out.size):
        Phi = np.eye(system.num_states)
        for s in range(t, t + window):
            Phi = A[s] @ Phi
        out[t] = np.linalg.norm(Phi, 2) ** (1.0 / window)
    return out


def simulate(system: TimeVaryingSystem, steps: int, input: str, impulse: bool):  # noqa: A002
    """Responses of a TimeVaryingSystem from x_0 = 0 (step: input 1 on every component from
    t = 0; impulse: at t = 0 only), ``y_t`` for t = 0 .. steps-1."""
    steps = _check_count("steps", steps, 1, system.horizon)
    b = np.sum(np.asarray(system.input_matrix(input)), axis=-1)  # (T, k)
    A, C = np.asarray(system.A), np.asarray(system.C)
    x = np.zeros(system.num_states)
    ys = np.empty((steps, system.num_params))
    for t in range(steps):
        ys[t] = C @ x
        x = A[t] @ x + (b[t] if (not impulse or t == 0) else 0.0)
    return ys[:, 0] if system.num_params == 1 else ys

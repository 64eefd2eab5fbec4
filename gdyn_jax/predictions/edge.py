r"""How an update rule leaves stability, read from its own code: the input of a central flow.

A central flow (Cohen et al., ICLR 2025) averages a rule's oscillation at the edge of
stability. Four numbers of the rule decide it, and :func:`rule_edge` computes them all from
the rule's closed loop on a one-dimensional quadratic :math:`\tfrac12 h\theta^2`
(:mod:`gdyn_jax.linearize`), never from a formula typed per method:

- the limit :math:`S^*` (``linearize.max_stable_curvature``): GD :math:`2/\eta`, heavy ball
  :math:`(2+2\beta)/\eta`, Nesterov :math:`(2+2\beta)/((1+2\beta)\eta)`;
- the exit mode: the poles that leave the unit circle just above :math:`S^*`. A real pole
  leaving at :math:`z=-1` is a period-2 oscillation :math:`\delta_t \propto (-1)^t`, which a
  central flow averages (its mean over two steps is zero, its covariance :math:`\Sigma`). A
  complex pair leaving at :math:`e^{\pm i\omega}` oscillates at another period, and a pole
  leaving at :math:`z=+1` does not oscillate at all; neither is what the construction
  averages, and :func:`rule_edge` refuses them with that reason;
- the effective step: the open loop's gain at :math:`z=1`, the residue of its integrator,
  :math:`\eta_{\text{eff}} = R(1)` with :math:`R(z) = -(z-1)L(z)` (GD :math:`\eta`, heavy
  ball and Nesterov :math:`\eta/(1-\beta)`): the step the rule takes on a slowly varying
  gradient, so the averaged trajectory moves as :math:`\dot w = -\eta_{\text{eff}}\,\bar g`;
- and its delay, the group delay of :math:`R` at :math:`z=1`,
  :math:`\tau = -R'(1)/R(1)` steps (GD 0, heavy ball :math:`\beta/(1-\beta)`, Nesterov
  :math:`\beta/(1-\beta) - \beta`): to first order in :math:`z-1`,
  :math:`R(z) \approx \eta_{\text{eff}}/(1+\tau(z-1))`, the rule passes the gradient through a
  first-order lag of :math:`\tau` steps (the momentum builds up, and the stiff directions relax
  at the rate :math:`1/2\tau` of its poles of modulus :math:`\sqrt\beta`).

A central flow also needs the oscillation to *hover*: the sharpness of the real run fluctuates
around :math:`S^*` and the oscillation must then grow and decay slowly, at a rate
proportional to the distance from :math:`S^*`, as GD's pole :math:`1-\eta\lambda` does
(:math:`\pm 2\epsilon` per step at :math:`(1\pm\epsilon)S^*`). ``soft_width`` is the
relative distance below :math:`S^*` over which the leaving pole stays real and negative: GD
(down to :math:`S^*/2`) and Nesterov at :math:`\beta = 0.9` keep it over tens of percent.
Heavy ball's two poles meet at :math:`\eta\lambda = (1+\sqrt\beta)^2`, just below
:math:`\eta S^* = 2+2\beta`, and below it they are a complex pair of modulus
:math:`\sqrt\beta`: its width is
:math:`(1-\sqrt\beta)^2/(2+2\beta)` (:math:`7\times10^{-4}` at :math:`\beta=0.9`), so the
period-2 mode is damped by :math:`1-\sqrt\beta` (5 %) per step as soon as the sharpness dips
below :math:`S^*` by more than that: the oscillation dies out between bursts instead of
settling, and the trajectory is a relaxation cycle, not a central flow. (The rule's delay
:math:`\tau` destabilises the edge on its own: the concept page "the edge of stability,
averaged" linearises the self-stabilisation loop.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.errors import UsageError

__all__ = ["EXIT_MODES", "RuleEdge", "rule_edge"]

#: the ways a pole leaves the unit circle
EXIT_MODES = ("period-2", "complex", "monotone")
_PROBE = 1e-3  # poles read at S* (1 + _PROBE)
_IMAG_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class RuleEdge:
    """A rule's edge of stability: ``limit`` :math:`S^*`, ``mode`` (an entry of
    :data:`EXIT_MODES`), ``effective_step`` :math:`\\eta_{\\text{eff}}`, ``poles`` leaving the
    unit circle at :math:`S^*(1+10^{-3})`, and ``supported`` with ``reason`` when not;
    ``delay`` :math:`\\tau`, the group delay of the open loop's regular part at :math:`z=1`;
    ``soft_width`` the relative distance below :math:`S^*` over which the leaving pole stays
    real and negative (1/2 for GD, whose pole :math:`1-\\eta\\lambda` turns positive below
    :math:`S^*/2`; see the module docstring)."""

    limit: float
    mode: str
    effective_step: float
    poles: tuple[complex, ...]
    supported: bool
    reason: str = ""
    delay: float = 0.0
    soft_width: float = 0.0


def _effective_step(opt: optax.GradientTransformation) -> tuple[float, float]:
    """:math:`R(1)` and :math:`-R'(1)/R(1)` for :math:`R(z) = -(z-1)L(z) = -N(z)/Q(z)`."""
    tf = linearize.open_loop(opt)
    quotient, remainder = np.polydiv(tf.den, np.array([1.0, -1.0]))
    if abs(np.polyval(tf.den, 1.0)) > 1e-9 * max(1.0, float(np.max(np.abs(tf.den)))):
        raise UsageError(
            "optimizer: its open loop has no integrator (no pole at z = 1), so it has no "
            "effective step; a central flow needs a rule that accumulates gradients"
        )
    del remainder
    num, den = np.polyval(tf.num, 1.0), np.polyval(quotient, 1.0)
    slope = np.polyval(np.polyder(tf.num), 1.0) / num - np.polyval(np.polyder(quotient), 1.0) / den
    return float(-num / den), float(-slope)


def rule_edge(opt: optax.GradientTransformation) -> RuleEdge:
    """The limit, exit mode and effective step of ``opt`` (see the module docstring).

    Raises:
      UsageError: the rule is not affine in the gradient (its loop is only a local
        linearisation: RMSProp, Adam), or it is never stable / always stable.
    """
    if not isinstance(opt, optax.GradientTransformation):
        raise UsageError(f"optimizer: expected an optax GradientTransformation, got {opt!r}")
    limit = float(linearize.max_stable_curvature(opt))
    if not np.isfinite(limit) or limit <= 0:
        raise UsageError(f"optimizer: no finite stability limit (max_stable_curvature={limit})")
    system = linearize.linearize(opt, limit * (1 + _PROBE))
    if not system.exact:
        raise UsageError(
            "optimizer: not an affine rule (linearize says "
            + ", ".join(system.reason or ("inexact",))
            + "); its central flow is not the construction here"
        )
    poles = np.linalg.eigvals(np.asarray(system.A, np.float64))
    leaving = tuple(complex(p) for p in poles if abs(p) > 1.0)
    if any(abs(p.imag) > _IMAG_TOL for p in leaving):
        mode, reason = "complex", "a complex pair leaves the unit circle: not a period-2 exit"
    elif leaving and all(p.real < 0 for p in leaving):
        mode, reason = "period-2", ""
    else:
        mode, reason = "monotone", "a real pole leaves at z = +1: no oscillation to average"
    step, delay = _effective_step(opt)
    width = _soft_width(system, limit * (1 + _PROBE), limit) if mode == "period-2" else 0.0
    return RuleEdge(limit, mode, step, leaving, mode == "period-2", reason, delay, width)


def _period2(loop: tuple[np.ndarray, np.ndarray], curvature: float) -> bool:
    """Whether the pole of largest modulus of :math:`A_0 + hBC` at ``curvature`` is real and
    negative (``loop`` = :math:`(A_0, BC)`, the loop opened at the gradient)."""
    poles = np.linalg.eigvals(loop[0] + curvature * loop[1])
    top = poles[np.argmax(np.abs(poles))]
    return bool(abs(top.imag) <= _IMAG_TOL and top.real < 0)


def _soft_width(system, curvature: float, limit: float) -> float:
    r"""The largest :math:`\delta \le 1-10^{-3}` with a real negative leaving pole on all of
    :math:`[(1-\delta)S^*, S^*)`: a grid of half decades from :math:`10^{-6}`, then bisection
    (in :math:`\log\delta`) of the first bracket to 5 % (a lower bound). ``system`` is the
    rule linearised at ``curvature``; an affine rule's closed loop is :math:`A_0 + hBC`."""
    bc = np.asarray(system.input_matrix("noise"), np.float64) @ np.asarray(system.C, np.float64)
    loop = (np.asarray(system.A, np.float64) - curvature * bc, bc)
    grid = np.concatenate([np.logspace(-6, -0.5, 12), [1 - 1e-3]])
    ok = [d for d in grid if _period2(loop, limit * (1 - d))]
    fails = [d for d in grid if d not in ok]
    if not fails:
        return float(grid[-1])
    high = fails[0]
    low = max((d for d in ok if d < high), default=0.0)
    if low == 0.0:
        return 0.0
    while high / low > 1.05:
        mid = np.sqrt(low * high)
        low, high = (mid, high) if _period2(loop, limit * (1 - mid)) else (low, mid)
    return float(low)

r"""A rule's rate bracketed from its own code: the PEP worst case below, the IQC certificate above.

:func:`rate_bracket` reads the open loop :math:`(A, B, C)` of an optax rule once
(``jax.jacfwd``, :func:`~gdyn_jax.linearize.iqc.open_loop_matrices`), computes the exact worst
case after :math:`n` steps over :math:`S(\mu, L)` (:mod:`gdyn_jax.linearize.pep`) and the
smallest rate the IQC certifies (:func:`~gdyn_jax.linearize.robust_rate`). The n-step rate
:math:`\tau_n^{1/(2n)}` tends to the worst-case rate as n grows but bounds it from neither side
at finite n; the certified rate is an upper bound on it, and
:math:`\tau_n \le c\,\rho_{IQC}^{2n}` with the certificate's constant :math:`c` (below).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optax

from gdyn_jax.linearize.iqc import check_class, check_iqc, open_loop_matrices
from gdyn_jax.linearize.lmi import require_cvxpy
from gdyn_jax.linearize.outcome import Outcome
from gdyn_jax.linearize.pep import (
    MAX_STEPS,
    METRICS,
    Form,
    PEPResult,
    rest_state,
    solve_pep,
    worst_iterates,
)
from gdyn_jax.linearize.rate_search import RobustRate, certify

__all__ = ["RateBracket", "rate_bracket"]

STARTS = ("rest", "free")


@dataclasses.dataclass(frozen=True)
class RateBracket:
    r"""The worst case after ``n`` steps and the certified rate of one rule over :math:`S(\mu, L)`.

    Attributes:
      tau: :math:`\tau_n`, the worst ``metric`` after n steps over ``initial`` :math:`\le 1`
        (None unless ``outcome`` is PROVEN; ``inf`` where the metric is unbounded).
      n_step_rate: :math:`\tau_n^{1/(2n)}`.
      upper: the rate certified by the IQC (None unless ``robust.outcome`` is PROVEN).
      constant: :math:`c` with :math:`\tau_n \le c\,\rho^{2n}` for the default metric and
        start: :math:`c = \operatorname{cond}(P)\,\|O\|^2\|v\|^2`, where LRP's Theorem 4 gives
        :math:`\|\eta_n\|^2 \le \operatorname{cond}(P)\,\rho^{2n}\|\eta_0\|^2` for the state
        :math:`\eta = [\xi - \xi_\star; \zeta - \zeta_\star]` with the IQC filter started at
        its equilibrium (:math:`\zeta_0 = \zeta_\star`, so :math:`\|\eta_0\| = \|\xi_0 -
        \xi_\star\| = \|v\|\,\|x_0 - x_\star\|` at rest), and the output is :math:`O\xi`.
        None for other metrics or starts, or without a certificate.
      outcome, reason: the PEP's :class:`~gdyn_jax.linearize.Outcome` (a solver failure is
        UNDECIDED) and why.
      robust: the :class:`~gdyn_jax.linearize.RobustRate` behind ``upper``.
      iterates: with ``iterates=True``, the worst function's points: name (``'x*'``,
        ``'y0'`` .. ``'yn'``, output points ``'p0'``, ``'pn'``) -> (position, gradient, value).
    """

    tau: float | None
    n_step_rate: float | None
    upper: float | None
    constant: float | None
    n: int
    mu: float
    L: float
    metric: object
    initial: object
    start: str
    outcome: Outcome
    reason: str
    robust: RobustRate | None
    pep: PEPResult
    iterates: dict | None = None

    def bound(self) -> float | None:
        r""":math:`c\,\rho_{IQC}^{2n}`, the certificate's bound on ``tau`` (None without one)."""
        if self.constant is None or self.upper is None:
            return None
        return self.constant * self.upper ** (2 * self.n)


def rate_bracket(
    opt: optax.GradientTransformation,
    mu: float,
    L: float,
    n: int = 10,
    *,
    metric: str | Form = "distance",
    initial: str | Form | None = None,
    start: str = "rest",
    output=None,
    iqc: str | None = "off_by_one",
    iterates: bool = False,
) -> RateBracket:
    r"""The worst case of ``opt`` after ``n`` steps (PEP) and its certified rate (IQC).

    By default the metric is :math:`\|x_n - x_\star\|^2 / \|x_0 - x_\star\|^2` with the rule's
    state at rest at the start (as its ``init`` makes it), :math:`x` the parameters.

    Args:
      opt: an optax transform that ``linearize`` finds affine in the gradient and that acts
        on each coordinate alike; others are refused with linearize's reason.
      mu, L: the class :math:`S(\mu, L)`, :math:`0 < \mu < L`.
      n: the number of steps, :math:`1 \le n \le` ``MAX_STEPS`` (30).
      metric: ``'distance'`` (:math:`\|p_n - x_\star\|^2`), ``'function'``
        (:math:`f(p_n) - f_\star`), ``'function+distance'`` (:math:`f(p_n) - f_\star +
        \frac\mu2\|p_n - x_\star\|^2`), at the output point :math:`p = O\xi`, or a
        :class:`~gdyn_jax.linearize.pep.Form` over the state and gradient.
      initial: the same choices at step 0 (default: the same as ``metric``), bounded by 1.
      start: ``'rest'`` (the state at rest at :math:`x_0`) or ``'free'`` (any initial state).
      output: the row :math:`O` over the rule's state giving the output point (default
        :math:`C`: the parameters); e.g. ``[1, a*beta]`` for Nesterov's :math:`x_k` in optax
        form (state: parameters, velocity).
      iqc: the IQC of the upper side (:func:`~gdyn_jax.linearize.robust_rate`), or None to
        skip it.
      iterates: also return the worst function's points.

    Raises:
      ValueError: naming ``opt``, ``mu``, ``L``, ``n``, ``metric``, ``initial``, ``start``,
        ``output`` or ``iqc`` for bad input, before any SDP.
    """
    mu, L, n, metric, initial, iqc = _check_args(mu, L, n, metric, initial, start, iqc)
    require_cvxpy()
    A, B, C = open_loop_matrices(opt)
    O = _check_output(output, A.shape[0], C)
    pep = solve_pep(A, B, C, mu, L, n, metric=metric, initial=initial, start=start, output=O)
    robust = None if iqc is None else certify((A, B, C), mu, L, iqc, 1e-6)[0]
    upper = robust.rate if robust is not None and robust.outcome is Outcome.PROVEN else None
    default = metric == "distance" and initial == "distance" and start == "rest"
    constant = _constant(robust, A, C, O) if default and upper is not None else None
    tau = pep.tau
    rate = None if tau is None else (float("inf") if np.isinf(tau) else max(tau, 0.0) ** (0.5 / n))
    points = worst_iterates(pep, L) if iterates and pep.gram is not None else None
    return RateBracket(
        tau, rate, upper, constant, n, mu, L, metric, initial, start, pep.outcome, pep.reason,
        robust, pep, points,
    )  # fmt: skip


def _check_args(mu, L, n, metric, initial, start, iqc):
    """The arguments, checked before any work (one-line ValueErrors naming them)."""
    mu, L = check_class(mu, L)
    if not L > mu:
        raise ValueError(f"L: expected a smoothness > mu = {mu:g} for a PEP, got {L:g}")
    n = _check_steps(n)
    metric = _check_metric("metric", metric)
    initial = metric if initial is None else _check_metric("initial", initial)
    if start not in STARTS:
        raise ValueError(f"start: expected one of {', '.join(STARTS)}, got {start!r}")
    iqc = None if iqc is None else check_iqc(iqc)
    return mu, L, n, metric, initial, iqc


def _constant(robust: RobustRate, A, C, O) -> float:
    """cond(P) ||O||^2 ||v||^2 (see RateBracket.constant)."""
    from_rest = rest_state(A, C)
    eig = np.linalg.eigvalsh(0.5 * (robust.P + robust.P.T))
    return float(eig[-1] / eig[0] * (O @ O) * (from_rest @ from_rest))


def _check_steps(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n: expected an integer number of steps, got {n!r}")
    if not 1 <= n <= MAX_STEPS:
        raise ValueError(
            f"n: expected 1 <= n <= {MAX_STEPS} (larger SDPs exceed the time budget), got {n}"
        )
    return int(n)


def _check_metric(name: str, spec):
    if isinstance(spec, Form) or spec in METRICS:
        return spec
    raise ValueError(f"{name}: expected one of {', '.join(METRICS)} or a Form, got {spec!r}")


def _check_output(output, ns: int, C) -> np.ndarray:
    if output is None:
        return np.asarray(C[0], np.float64)
    O = np.asarray(output, np.float64)
    if O.shape != (ns,) or not np.all(np.isfinite(O)):
        raise ValueError(f"output: expected {ns} finite coefficients over the state, got {O!r}")
    return O

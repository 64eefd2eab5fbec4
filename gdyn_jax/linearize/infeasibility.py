r"""Proof that no certificate exists: a dual (Farkas) certificate, from an SDP, checked in numpy.

The rate LMI of :mod:`gdyn_jax.linearize.lmi`, in the Schur form the solver sees,

.. math::

    F(P, \lambda) = \begin{bmatrix} -\rho^2 E P E^\top + \sum_i \lambda_i Q_i &
    (P[\hat A\ \hat B])^\top \\ P[\hat A\ \hat B] & -P \end{bmatrix} \prec 0,

forces :math:`P \succ 0` and is linear in :math:`(P, \lambda)`. If some :math:`Z \succeq 0`,
:math:`Z \ne 0`, has :math:`F_P^*(Z) = -\rho^2 E^\top Z_{11} E + [\hat A\ \hat B] Z_{12} +
([\hat A\ \hat B] Z_{12})^\top - Z_{22} \succeq 0` and :math:`\operatorname{tr}(Q Z_{11}) \ge 0`
for every generator :math:`Q` of the multipliers' cone (:math:`Q_{\text{sector}}`, and for the
off-by-one IQC :math:`(1-\rho^2) Q_{\text{sector}} + \rho^2 Q_{\text{off}}`, its edge
:math:`\lambda_2 = \rho^2(\lambda_1 + \lambda_2)`), then every candidate has
:math:`\operatorname{tr}(F Z) = \langle P, F_P^*(Z)\rangle + \sum_i \lambda_i
\operatorname{tr}(Q_i Z_{11}) \ge 0`, which no :math:`F \prec 0` allows: no certificate exists
at this :math:`\rho`, nor below it. :class:`InfeasibilitySDP` maximises the smallest of those
margins over :math:`\operatorname{tr} Z = 1`; :func:`verified_infeasibility` recomputes them in
numpy on the returned :math:`Z` (made exactly positive semi-definite first) and accepts the
proof only when they are positive beyond rounding. The primal SDP's own negative margin is not
such a proof: when the certificate it looks for would be badly conditioned (a step tiny against
the curvature) the solver can stop at a spurious one.
"""

from __future__ import annotations

import functools

import numpy as np

from gdyn_jax.linearize.lmi import require_cvxpy, solve_clarabel

__all__ = ["InfeasibilitySDP", "infeasibility_sdp", "verified_infeasibility"]

#: Relative to the data's scale, the margins must exceed this to count as a proof.
PROOF_RTOL = 1e-9


def _generators(forms: list[np.ndarray], names: tuple[str, ...], rho: float) -> list[np.ndarray]:
    """The forms at the extreme rays of the multipliers' cone."""
    if "off_by_one" not in names:
        return [forms[0]]
    sector, off = forms[names.index("sector")], forms[names.index("off_by_one")]
    return [sector, (1.0 - rho * rho) * sector + rho * rho * off]


class InfeasibilitySDP:
    """The dual SDP at a given rho, a DPP cvxpy problem compiled once per size."""

    def __init__(self, size: int, names: tuple[str, ...]):
        cp = require_cvxpy()
        n = size
        self.Z = cp.Variable((2 * n + 1, 2 * n + 1), symmetric=True)
        self.s = cp.Variable()
        self.AB = cp.Parameter((n, n + 1))
        self.rho2 = cp.Parameter(nonneg=True)
        count = 2 if "off_by_one" in names else 1
        self.forms = [cp.Parameter((n + 1, n + 1), symmetric=True) for _ in range(count)]
        Z11, Z12, Z22 = self.Z[: n + 1, : n + 1], self.Z[: n + 1, n + 1 :], self.Z[n + 1 :, n + 1 :]
        cross = self.AB @ Z12
        R = -self.rho2 * self.Z[:n, :n] + cross + cross.T - Z22
        constraints = [self.Z >> 0, cp.trace(self.Z) == 1, 0.5 * (R + R.T) >> self.s * np.eye(n)]
        constraints += [cp.trace(q @ Z11) >= self.s for q in self.forms]
        self.problem = cp.Problem(cp.Maximize(self.s), constraints)

    def solve(self, AB: np.ndarray, generators: list[np.ndarray], rho: float):
        """``Z`` (or None) and the solver's status."""
        self.AB.value = AB
        for parameter, value in zip(self.forms, generators, strict=True):
            parameter.value = 0.5 * (value + value.T)
        self.rho2.value = rho * rho
        status, _ = solve_clarabel(self.problem)  # answers are verified in numpy
        if status == "solver_error":
            return None, status
        return (None if self.Z.value is None else np.array(self.Z.value)), status


@functools.cache
def infeasibility_sdp(size: int, names: tuple[str, ...]) -> InfeasibilitySDP:
    return InfeasibilitySDP(size, names)


def verified_infeasibility(AB, forms, names, rho: float, Z) -> float | None:
    """The smallest margin of the dual certificate ``Z`` (made PSD, trace 1) relative to the
    data's scale, when it proves that no certificate exists at ``rho``; else None."""
    if Z is None or not np.all(np.isfinite(Z)):
        return None
    w, V = np.linalg.eigh(0.5 * (Z + Z.T))
    w = np.maximum(w, 0.0)
    if w.sum() <= 0:
        return None
    Z = (V * (w / w.sum())) @ V.T
    n = AB.shape[0]
    Z11, Z12, Z22 = Z[: n + 1, : n + 1], Z[: n + 1, n + 1 :], Z[n + 1 :, n + 1 :]
    cross = AB @ Z12
    R = -rho * rho * Z[:n, :n] + cross + cross.T - Z22
    margins = [float(np.linalg.eigvalsh(0.5 * (R + R.T))[0])]
    generators = _generators(forms, names, rho)
    margins += [float(np.sum(q * Z11)) for q in generators]
    scale = max(1.0, float(np.max(np.abs(AB))), *(float(np.max(np.abs(q))) for q in generators))
    margin = min(margins) / scale
    return margin if margin > PROOF_RTOL else None


def prove_infeasible(AB, forms, names, rho: float) -> tuple[float | None, str]:
    """``(margin, status)``: a verified proof that no certificate exists at ``rho`` (margin), or
    None and the dual solver's status."""
    generators = _generators(forms, names, rho)
    Z, status = infeasibility_sdp(AB.shape[0], tuple(names)).solve(AB, generators, rho)
    return verified_infeasibility(AB, forms, names, rho, Z), status

r"""The LMI of a rate as a small SDP (cvxpy, Clarabel), and the exact numpy check of its answers.

For a given :math:`\rho`, :class:`RateSDP` maximises the margin by which the LMI of
:mod:`gdyn_jax.linearize.robust` holds; :func:`verified_rate2` computes, in numpy, the smallest
:math:`\rho^2` at which a returned certificate satisfies it; :class:`Coordinates` are the
balanced coordinates the solver works in. cvxpy comes through :mod:`gdyn_jax.extras`: without
the ``[robust]`` extra, :class:`~gdyn_jax.errors.MissingExtraError` says what to install.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from gdyn_jax import extras

__all__ = [
    "MAX_COND",
    "Coordinates",
    "RateSDP",
    "require_cvxpy",
    "sdp",
    "solve_clarabel",
    "verified_rate2",
]

#: The largest condition number of the solver's coordinates (the rule's state whitened by a
#: certificate): beyond it the coordinates stay the rule's own, so certificates stay verifiable.
MAX_COND = 1e4


def require_cvxpy():
    """cvxpy, or :class:`~gdyn_jax.errors.MissingExtraError` saying to install [robust]."""
    return extras.cvxpy


class RateSDP:
    r"""The SDP at a given :math:`\rho`, as a DPP cvxpy problem compiled once per size.

    Maximise :math:`t` subject to the LMI in Schur form, :math:`P \succeq tI`,
    :math:`\sum_i\lambda_i = 1` (the LMI is homogeneous, and :math:`\lambda = 0` is never
    feasible because :math:`A` has the eigenvalue 1 of the integrator) and, for the
    off-by-one IQC, :math:`\lambda_2 \le \rho^2`. A certificate exists iff :math:`t > 0`;
    maximising :math:`t` keeps :math:`P` as well conditioned as the LMI allows.
    """

    def __init__(self, size: int, names: tuple[str, ...]):
        cp = require_cvxpy()
        n = size
        self.P = cp.Variable((n, n), symmetric=True)
        self.lam = cp.Variable(len(names), nonneg=True)
        self.t = cp.Variable()
        self.AB = cp.Parameter((n, n + 1))
        self.forms = [cp.Parameter((n + 1, n + 1), symmetric=True) for _ in names]
        self.rho2 = cp.Parameter(nonneg=True)
        embed = np.vstack([np.eye(n), np.zeros((1, n))])
        top = -self.rho2 * (embed @ self.P @ embed.T)
        top = top + sum(self.lam[i] * q for i, q in enumerate(self.forms))
        pab = self.P @ self.AB
        lmi = cp.bmat([[top, pab.T], [pab, -self.P]])
        margin = self.t * np.eye(2 * n + 1)
        constraints = [0.5 * (lmi + lmi.T) << -margin, cp.sum(self.lam) == 1]
        if "off_by_one" in names:
            constraints.append(self.lam[names.index("off_by_one")] <= self.rho2)
        self.problem = cp.Problem(cp.Maximize(self.t), constraints)

    def solve(self, AB: np.ndarray, forms: list[np.ndarray], rho: float):
        """``(P, lambdas, t, status)``: the largest margin ``t`` (negative: no certificate) and
        its solution; all None but the status when the solver failed."""
        self.AB.value = AB
        for parameter, value in zip(self.forms, forms, strict=True):
            parameter.value = 0.5 * (value + value.T)
        self.rho2.value = rho * rho
        status, _ = solve_clarabel(self.problem)
        if status == "solver_error":
            return None, None, None, status
        if self.P.value is None or self.t.value is None or self.lam.value is None:
            return None, None, None, status
        lam = np.maximum(np.array(self.lam.value), 0.0)
        return np.array(self.P.value), lam, float(self.t.value), status


@functools.cache
def sdp(size: int, names: tuple[str, ...]) -> RateSDP:
    """The rate SDP of a loop of ``size`` states and these IQCs, built once (cvxpy Parameters)."""
    return RateSDP(size, names)


def solve_clarabel(problem, **options) -> tuple[str, str]:
    """Solves a cvxpy ``problem`` with Clarabel, its warnings silenced (every answer of the
    package's SDPs is verified in numpy); ``(status, "")``, or ``("solver_error", message)``."""
    cp = require_cvxpy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            problem.solve(solver=cp.CLARABEL, **options)
    except cp.error.SolverError as err:
        return "solver_error", str(err)
    return problem.status, ""


def verified_rate2(AB, forms: list[np.ndarray], names, P, lam) -> float | None:
    r"""The smallest :math:`\rho^2` at which ``(P, lam)`` satisfies the LMI, or None.

    With :math:`G = [\hat A\ \hat B]^\top P [\hat A\ \hat B] + \sum_i \lambda_i Q_i`, the LMI
    is :math:`G - \rho^2\,\mathrm{diag}(P, 0) \preceq 0`: it needs :math:`G_{uu} < 0` and then
    :math:`S = G_{\eta\eta} - G_{\eta u} G_{uu}^{-1} G_{u\eta} \preceq \rho^2 P`, i.e.
    :math:`\rho^2 \ge \lambda_{\max}(S, P)` (generalised eigenvalue), and for the off-by-one
    IQC :math:`\rho^2 \ge \lambda_2 / (\lambda_1 + \lambda_2)`.
    """
    P = 0.5 * (P + P.T)
    if not np.all(np.isfinite(P)) or np.linalg.eigvalsh(P)[0] <= 0:
        return None
    G = AB.T @ P @ AB + sum(w * q for w, q in zip(lam, forms, strict=True))
    G = 0.5 * (G + G.T)
    g_uu = G[-1, -1]
    if not g_uu < -1e-12 * max(1.0, float(np.max(np.abs(G)))):
        return None
    S = G[:-1, :-1] - np.outer(G[:-1, -1], G[:-1, -1]) / g_uu
    try:
        top = float(extras.scipy_linalg.eigh(0.5 * (S + S.T), P, eigvals_only=True)[-1])
    except np.linalg.LinAlgError:
        return None
    rho2 = max(top, 0.0)
    if "off_by_one" in names and lam.sum() > 0:
        rho2 = max(rho2, float(lam[names.index("off_by_one")] / lam.sum()))
    return rho2


class Coordinates:
    r"""Solver coordinates :math:`\eta = T\eta'`, :math:`u = s\,u'`, refined after each
    certificate to make the last one the identity (:math:`T \leftarrow T P'^{-1/2}`): the LMI
    is congruent in any coordinates, and certificates near the optimal rate can be very ill
    conditioned in the rule's own (Triple Momentum's are nearly singular)."""

    def __init__(self, AB: np.ndarray, C: np.ndarray, L: float):
        """Start from a diagonal balancing (``scipy.linalg.matrix_balance``) of the augmented
        loop closed at curvature L, with the gradient measured in units of L."""
        n = AB.shape[0]
        self.s = float(L)
        closed = AB[:, :n] + L * AB[:, n:] @ np.pad(C, ((0, 0), (0, n - C.shape[1])))
        _, T = extras.scipy_linalg.matrix_balance(closed, permute=False, separate=False)
        self.T = np.asarray(T, np.float64)

    def apply(self, AB: np.ndarray, forms: list[np.ndarray]):
        n = self.T.shape[0]
        T_inv = np.linalg.inv(self.T)
        AB_new = np.hstack([T_inv @ AB[:, :n] @ self.T, self.s * (T_inv @ AB[:, n:])])
        S = extras.scipy_linalg.block_diag(self.T, [[self.s]])
        return AB_new, [S.T @ q @ S for q in forms]

    def original(self, P: np.ndarray) -> np.ndarray:
        T_inv = np.linalg.inv(self.T)
        P = T_inv.T @ P @ T_inv
        return 0.5 * (P + P.T)

    def refine(self, P: np.ndarray) -> None:
        """Whiten by ``P`` unless the coordinates would drift past ``MAX_COND``."""
        w, V = np.linalg.eigh(0.5 * (P + P.T))
        T = self.T @ (V * w**-0.5) @ V.T
        if np.linalg.cond(T) <= MAX_COND:
            self.T = T

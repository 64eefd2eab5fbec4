r"""Certified convergence rates over all smooth strongly convex losses (IQC analysis).

On a quadratic, ``linearize`` gives an update rule's rate exactly. Over the whole class
:math:`S(\mu, L)` of :math:`\mu`-strongly convex functions with :math:`L`-Lipschitz gradients,
Lessard, Recht and Packard (2016) certify a rate by robust control: the rule is a linear
system :math:`G` in feedback with the gradient :math:`u = \nabla f(y)`,

.. math::

    \xi_{k+1} = A\xi_k + B u_k,\qquad y_k = C\xi_k,\qquad u_k = \nabla f(y_k),

and :math:`\nabla f` is replaced by the quadratic constraints it satisfies (IQCs). With
:math:`\eta = [\xi; \zeta]` the state of :math:`G` and of the IQC filter, the rate
:math:`\rho` is certified when the LMI (their Theorem 4, with several IQCs as in eq. (3.11))

.. math::

    \begin{bmatrix}\hat A^\top P\hat A - \rho^2 P & \hat A^\top P\hat B\\
    \hat B^\top P\hat A & \hat B^\top P\hat B\end{bmatrix}
    + \sum_i \lambda_i Q_i \preceq 0,\qquad P \succ 0,\ \lambda_i \ge 0

is feasible; then :math:`\|\xi_k - \xi_\star\| \le \sqrt{\operatorname{cond} P}\,\rho^k
\|\xi_0 - \xi_\star\|` for every :math:`f \in S(\mu, L)`, in any dimension. Here
:math:`Q_i = [\hat C\ \hat D]^\top M [\hat C\ \hat D]` with :math:`M = [[0, 1], [1, 0]]`, so
:math:`[\eta; u]^\top Q_i [\eta; u] = 2 z_1 z_2` for the IQC's output :math:`z`:

- ``"sector"`` (Lemma 6, pointwise): :math:`z = (L y - u,\ u - \mu y)`; no filter state.
  Exact for gradient descent: it certifies :math:`\max(|1-a\mu|, |1-aL|)`.
- ``"off_by_one"``: the weighted off-by-one IQC (Lemma 10) with :math:`\bar\rho` free,
  written as in Remark 11: multipliers :math:`\lambda_1` on the sector term and
  :math:`\lambda_2` on the off-by-one term :math:`2(L y_k - u_k + \zeta_k)(u_k - \mu y_k)`,
  :math:`\zeta_{k+1} = u_k - L y_k`, with :math:`\lambda_2 \le \rho^2(\lambda_1 + \lambda_2)`
  (that is :math:`\bar\rho^2 = \lambda_2/(\lambda_1+\lambda_2) \le \rho^2`). This is what LRP
  use for Nesterov's method; it contains the sector IQC (:math:`\lambda_2 = 0`).

The linear system comes from the rule's own code: the state :math:`\xi = [\theta; s]`, the
input the gradient, the output :math:`y = \theta` (optax evaluates the gradient at the
parameters passed to ``update``; Nesterov and Triple Momentum in optax form keep the look-ahead
point as :math:`\theta`). :math:`A, B` are ``jax.jacfwd`` of one step through
:func:`gdyn_jax.linearize.linearize`, whose affinity judgement (``LinearSystem.exact``) decides
whether the rule is linear in the gradient; others (Adam, clipping) are refused. The rule must
act on each coordinate alike (:math:`A = A_0 \otimes I`), which makes the one-coordinate LMI
lossless (LRP §4.2); this is checked on two coordinates.

For each :math:`\rho` the LMI is a small SDP, solved with ``cvxpy`` (a parametrised, DPP
problem compiled once per size) and Clarabel, in the Schur form
:math:`[[-\rho^2 E P E^\top + \sum_i\lambda_i Q_i, (P[\hat A\ \hat B])^\top], [P[\hat A\ \hat B],
-P]] \preceq -tI` with :math:`\sum_i \lambda_i = 1` (the LMI is homogeneous), maximising the
margin :math:`t`: a certificate exists iff :math:`t > 0`. The smallest :math:`\rho` is searched
between the quadratic rate (a lower bound: quadratics with curvatures in :math:`[\mu, L]`
belong to the class) and 1, by false position on the margins with a bisection fallback. Every
solver answer is checked in numpy, in the solver's coordinates and in the rule's own: the
smallest :math:`\rho` at which the returned :math:`(P, \lambda)` satisfies the LMI is computed
exactly (Schur complement, generalised eigenvalues), and only that verified value is kept, so a
reported rate always comes with a certificate; a solver failure only ever makes the rate less
tight (``bracket`` says how tight). The solver works in balanced coordinates, whitened by each
certificate found (congruent LMIs), because certificates close to the optimal rate are badly
conditioned in the rule's coordinates; with the drift of those coordinates capped, the
certificates stay verifiable in float64, which limits the accuracy for large
:math:`\kappa`: Triple Momentum is certified within 0.1% of :math:`1 - 1/\sqrt\kappa` (in
iterations) up to :math:`\kappa = 100` and within 5% at :math:`\kappa = 1000`.

References: Lessard, Recht, Packard, "Analysis and design of optimization algorithms via
integral quadratic constraints", SIAM J. Optim. 26(1):57-95, 2016; Van Scoy, Freeman, Lynch,
IEEE Control Systems Letters 2(1):49-54, 2018.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optax
import scipy.linalg

from gdyn_jax.linearize.system import linearize, linearize_grid

__all__ = [
    "IQCS",
    "LMI_RTOL",
    "MissingExtraError",
    "RobustRate",
    "RobustRateGrid",
    "iqc_system",
    "open_loop_matrices",
    "quadratic_rate",
    "robust_rate",
    "robust_rate_grid",
]

IQCS = ("sector", "off_by_one")
#: The numpy check of a certificate accepts it when the LMI's largest eigenvalue is at most
#: ``LMI_RTOL`` times the scale of its terms
#: (:meth:`~gdyn_jax.linearize.RobustRate.lmi_residual`).
LMI_RTOL = 1e-9
_NUM_CURVATURES = 257
_MAX_COND = 1e4  # of the solver's coordinates: certificates stay verifiable in the rule's own
_INSTALL = 'pip install -e ".[robust]"'


class MissingExtraError(ImportError, ValueError):
    """An optional dependency is missing (a ValueError too, so the CLI reports it in a line)."""


def _cvxpy():
    try:
        import cvxpy
    except ImportError:
        raise MissingExtraError(
            f"robust_rate needs cvxpy and Clarabel, the [robust] extra: {_INSTALL}"
        ) from None
    return cvxpy


# --------------------------------------------------------------------------- the open loop


def _check_opt(opt) -> None:
    if not isinstance(opt, optax.GradientTransformation):
        raise ValueError(f"opt: expected an optax.GradientTransformation, got {type(opt).__name__}")


def _not_linear(system) -> str:
    reason = getattr(system, "reason", None)
    detail = f" ({reason})" if reason else ""
    return (
        "opt: the update rule is not linear time-invariant in the gradient"
        f"{detail} (linearize: exact=False); robust_rate certifies rules such as sgd, momentum, "
        "nesterov, pid, triple_momentum, not adaptive or clipped ones"
    )


def _open_loop_of(system) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C) of the loop opened at the gradient, from a loop closed with H = identity.

    The closed loop has :math:`A_{cl} = A + B H C` with :math:`B` the gradient-noise columns
    (the gradient is :math:`g = H(\\theta - r) + w`), so :math:`A = A_{cl} - B C` at H = I.
    """
    B = np.asarray(system.input_matrix("noise"), np.float64)
    C = np.asarray(system.C, np.float64)
    A = np.asarray(system.A, np.float64) - B @ C
    return A, B, C


def open_loop_matrices(opt: optax.GradientTransformation) -> tuple[np.ndarray, ...]:
    r"""The rule as the linear system :math:`(A, B, C)` from the gradient to the point where it is
    evaluated, for one coordinate: :math:`\xi_{k+1} = A\xi_k + B g_k`, :math:`y_k = C\xi_k`.

    Raises ValueError naming ``opt`` when ``linearize`` does not find the rule affine
    (``exact`` is False) or when the rule couples coordinates (its two-coordinate system is
    not the one-coordinate system repeated, :math:`A_0 \otimes I_2`).
    """
    _check_opt(opt)
    one = linearize(opt, 1.0)
    if not one.exact:
        raise ValueError(_not_linear(one))
    A, B, C = _open_loop_of(one)
    two = linearize(opt, np.eye(2))
    if not two.exact:
        raise ValueError(_not_linear(two))
    A2, B2, C2 = _open_loop_of(two)
    eye = np.eye(2)
    expected = (np.kron(A, eye), np.kron(B, eye), np.kron(C, eye))
    if any(
        x.shape != e.shape or not np.allclose(x, e, rtol=1e-12, atol=1e-12 * (1 + np.abs(e).max()))
        for x, e in zip((A2, B2, C2), expected, strict=True)
    ):
        raise ValueError(
            "opt: the update rule couples parameters (on two coordinates it is not the "
            "one-coordinate rule applied to each); robust_rate analyses coordinate-wise rules"
        )
    return A, B, C


def _check_class(mu, L) -> tuple[float, float]:
    try:
        mu, L = float(mu), float(L)
    except (TypeError, ValueError):
        raise ValueError(f"mu, L: expected numbers, got {mu!r}, {L!r}") from None
    if not (np.isfinite(mu) and mu > 0):
        raise ValueError(f"mu: expected a finite strong convexity > 0, got {mu}")
    if not (np.isfinite(L) and L >= mu):
        raise ValueError(f"L: expected a finite smoothness >= mu = {mu:g}, got {L}")
    return mu, L


def quadratic_rate(A, B, C, mu: float, L: float, num: int = _NUM_CURVATURES) -> float:
    r"""Worst spectral radius of :math:`A + hBC` over curvatures :math:`h \in [\mu, L]` (ends
    included, ``num`` linear and ``num`` geometric points): the rate on quadratics, a lower
    bound for any certificate over :math:`S(\mu, L)`."""
    hs = np.unique(np.concatenate([np.linspace(mu, L, num), np.geomspace(mu, L, num)]))
    closed = np.asarray(A)[None] + hs[:, None, None] * (np.asarray(B) @ np.asarray(C))[None]
    return float(np.max(np.abs(np.linalg.eigvals(closed))))


# --------------------------------------------------------------------------- the IQCs


def iqc_system(A, B, C, mu: float, L: float, iqc: str) -> tuple[np.ndarray, dict]:
    r"""The augmented system :math:`[\hat A\ \hat B]` and the quadratic forms :math:`Q_i`.

    Returns ``(AB, forms)``: ``AB`` is :math:`[\hat A\ \hat B]` of shape
    :math:`(\hat n, \hat n + 1)` and ``forms`` maps each multiplier's name (``'sector'``,
    ``'off_by_one'``) to its symmetric :math:`(\hat n+1) \times (\hat n+1)` matrix over
    :math:`[\eta; u]`.
    """
    A, B, C = (np.atleast_2d(np.asarray(x, np.float64)) for x in (A, B, C))
    n = A.shape[0]
    if iqc == "sector":
        AB = np.hstack([A, B])
        lipschitz = np.concatenate([L * C[0], [-1.0]])  # L y - u
        strong = np.concatenate([-mu * C[0], [1.0]])  # u - mu y
        return AB, {"sector": _form(lipschitz, strong)}
    # filter state zeta_{k+1} = u_k - L y_k
    A_hat = np.block([[A, np.zeros((n, 1))], [-L * C, np.zeros((1, 1))]])
    B_hat = np.vstack([B, [[1.0]]])
    AB = np.hstack([A_hat, B_hat])
    strong = np.concatenate([-mu * C[0], [0.0, 1.0]])
    sector = np.concatenate([L * C[0], [0.0, -1.0]])
    off = np.concatenate([L * C[0], [1.0, -1.0]])  # L y - u + zeta
    return AB, {"sector": _form(sector, strong), "off_by_one": _form(off, strong)}


def _form(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The symmetric matrix of the quadratic form 2 (a·v)(b·v)."""
    return np.outer(a, b) + np.outer(b, a)


def _check_iqc(iqc: str) -> str:
    if iqc not in IQCS:
        raise ValueError(f"iqc: expected one of {', '.join(IQCS)}, got {iqc!r}")
    return iqc


# --------------------------------------------------------------------------- the SDP


class _RateSDP:
    r"""The SDP at a given :math:`\rho`, as a DPP cvxpy problem compiled once per size.

    Maximise :math:`t` subject to the LMI in Schur form, :math:`P \succeq tI`,
    :math:`\sum_i\lambda_i = 1` (the LMI is homogeneous, and :math:`\lambda = 0` is never
    feasible because :math:`A` has the eigenvalue 1 of the integrator) and, for the
    off-by-one IQC, :math:`\lambda_2 \le \rho^2`. A certificate exists iff :math:`t > 0`;
    maximising :math:`t` keeps :math:`P` as well conditioned as the LMI allows.
    """

    def __init__(self, size: int, names: tuple[str, ...]):
        cp = _cvxpy()
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
        cp = _cvxpy()
        self.AB.value = AB
        for parameter, value in zip(self.forms, forms, strict=True):
            parameter.value = 0.5 * (value + value.T)
        self.rho2.value = rho * rho
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # inaccurate answers are verified below
                self.problem.solve(solver=cp.CLARABEL)
        except cp.error.SolverError:
            return None, None, None, "solver_error"
        status = self.problem.status
        if self.P.value is None or self.t.value is None or self.lam.value is None:
            return None, None, None, status
        lam = np.maximum(np.array(self.lam.value), 0.0)
        return np.array(self.P.value), lam, float(self.t.value), status


_SDPS: dict = {}


def _sdp(size: int, names: tuple[str, ...]) -> _RateSDP:
    key = (size, names)
    if key not in _SDPS:
        _SDPS[key] = _RateSDP(size, names)
    return _SDPS[key]


def _verified_rate2(AB, forms: list[np.ndarray], names, P, lam) -> float | None:
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
        top = float(scipy.linalg.eigh(0.5 * (S + S.T), P, eigvals_only=True)[-1])
    except np.linalg.LinAlgError:
        return None
    rho2 = max(top, 0.0)
    if "off_by_one" in names and lam.sum() > 0:
        rho2 = max(rho2, float(lam[names.index("off_by_one")] / lam.sum()))
    return rho2


class _Coordinates:
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
        _, T = scipy.linalg.matrix_balance(closed, permute=False, separate=False)
        self.T = np.asarray(T, np.float64)

    def apply(self, AB: np.ndarray, forms: list[np.ndarray]):
        n = self.T.shape[0]
        T_inv = np.linalg.inv(self.T)
        AB_new = np.hstack([T_inv @ AB[:, :n] @ self.T, self.s * (T_inv @ AB[:, n:])])
        S = scipy.linalg.block_diag(self.T, [[self.s]])
        return AB_new, [S.T @ q @ S for q in forms]

    def original(self, P: np.ndarray) -> np.ndarray:
        T_inv = np.linalg.inv(self.T)
        P = T_inv.T @ P @ T_inv
        return 0.5 * (P + P.T)

    def refine(self, P: np.ndarray) -> None:
        """Whiten by ``P`` unless the coordinates would drift past ``_MAX_COND``."""
        w, V = np.linalg.eigh(0.5 * (P + P.T))
        T = self.T @ (V * w**-0.5) @ V.T
        if np.linalg.cond(T) <= _MAX_COND:
            self.T = T


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class RobustRate:
    r"""A certified rate over :math:`S(\mu, L)` and its certificate.

    Attributes:
      rate: the certified :math:`\rho` (:math:`\|\xi_k - \xi_\star\| \le \sqrt{\operatorname{cond}
        P}\,\rho^k \|\xi_0 - \xi_\star\|` for every :math:`f \in S(\mu, L)`), or None when no
        certificate of convergence (:math:`\rho < 1`) was found with this IQC: ``status`` says
        whether the SDP was infeasible (its largest margin is negative) or failed numerically.
      P: the certificate matrix (:math:`\hat n \times \hat n`, over the rule's state and, for
        ``off_by_one``, the filter state :math:`\zeta`), or None.
      multipliers: :math:`\lambda_i` by IQC term (``{'sector': ...}`` or
        ``{'sector': ..., 'off_by_one': ...}``), or None.
      iqc: the IQC used.
      bracket: ``(lower, upper)``: no certificate was found at ``lower`` (or it is the
        quadratic rate, a lower bound), a verified one exists at ``upper`` (= ``rate``).
      status: the solver's status at the kept certificate, or why there is none.
      quadratic_rate: the worst rate on quadratics with curvatures in :math:`[\mu, L]`.
      mu, L: the class.
      A, B, C: the rule's open loop (one coordinate), from ``jax.jacfwd``.
      solves: the number of SDPs solved.
    """

    rate: float | None
    P: np.ndarray | None
    multipliers: dict | None
    iqc: str
    bracket: tuple[float, float]
    status: str
    quadratic_rate: float
    mu: float
    L: float
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    solves: int = 0

    @property
    def rho_bar(self) -> float | None:
        r""":math:`\bar\rho` of the weighted off-by-one IQC (Remark 11), if used."""
        if self.multipliers is None or "off_by_one" not in self.multipliers:
            return None
        total = sum(self.multipliers.values())
        return float(np.sqrt(self.multipliers["off_by_one"] / total)) if total > 0 else 0.0

    def augmented(self) -> tuple[np.ndarray, dict]:
        """``(AB, forms)`` of :func:`~gdyn_jax.linearize.robust.iqc_system` for this result."""
        return iqc_system(self.A, self.B, self.C, self.mu, self.L, self.iqc)

    def lmi(self, rho: float | None = None) -> np.ndarray:
        """The LMI's matrix at ``rho`` (default: the rate) with this certificate."""
        if self.P is None:
            raise ValueError("rho: this result has no certificate")
        rho = self.rate if rho is None else float(rho)
        AB, forms = self.augmented()
        n = self.P.shape[0]
        G = AB.T @ self.P @ AB + sum(self.multipliers[k] * forms[k] for k in forms)
        G[:n, :n] -= rho**2 * self.P
        return 0.5 * (G + G.T)

    def lmi_residual(self) -> float:
        """Largest eigenvalue of :meth:`lmi` over the scale of its terms (<= LMI_RTOL: valid)."""
        AB, forms = self.augmented()
        terms = [AB.T @ self.P @ AB, self.rate**2 * self.P]
        terms += [self.multipliers[k] * forms[k] for k in forms]
        scale = max(float(np.max(np.abs(t))) for t in terms)
        return float(np.linalg.eigvalsh(self.lmi())[-1]) / max(scale, 1e-300)


def _no_certificate(why: str, lo: float, quad: float, mu, L, iqc, system, solves=0):
    A, B, C = system
    return RobustRate(None, None, None, iqc, (lo, 1.0), why, quad, mu, L, A, B, C, solves)


class _Search:
    """One search for the smallest certified rho: the bracket, the best verified certificate.

    ``lower``: the largest rho tried below the best certificate without a verified one (or
    the quadratic rate). ``upper``: the best verified rate. Each SDP also gives its margin
    ``t``, an increasing function of rho that changes sign at the optimal rate, so the next
    rho is the false-position root of the margins of the last probes on either side,
    falling back to bisection when the bracket stops shrinking.
    """

    def __init__(self, system, mu, L, iqc, floor):
        A, B, C = system
        self.AB, forms = iqc_system(A, B, C, mu, L, iqc)
        self.names = tuple(forms)
        self.forms = list(forms.values())
        self.sdp = _sdp(self.AB.shape[0], self.names)
        self.coords = _Coordinates(self.AB, C, L)
        self.floor = floor
        self.failed: list[float] = []
        self.best = None  # (rate, P in the rule's coordinates, multipliers, status)
        self.solves = 0
        self.status = ""
        self.last = None  # multipliers of the last certificate (P is the identity in coords)
        self.below: tuple[float, float] | None = None  # (rho, margin < 0), last probe below
        self.above: tuple[float, float] | None = None  # (rho, margin > 0), last probe above

    @property
    def upper(self) -> float | None:
        return None if self.best is None else self.best[0]

    @property
    def lower(self) -> float:
        below = [r for r in self.failed if self.upper is None or r < self.upper]
        return max([self.floor, *below])

    def attempt(self, rho: float) -> bool:
        """Solve at ``rho``; keep a certificate only if verified in numpy at a rate <= rho."""
        self.solves += 1
        AB, forms = self.coords.apply(self.AB, self.forms)
        P, lam, t, status = self.sdp.solve(AB, forms, rho)
        ok = t is not None and t > 0
        rho2 = _verified_rate2(AB, forms, self.names, P, lam) if ok else None
        if rho2 is not None:  # and in the rule's own coordinates, where it is returned
            P_rule = self.coords.original(P)
            original = _verified_rate2(self.AB, self.forms, self.names, P_rule, lam)
            rho2 = None if original is None else max(rho2, original)
        rate = None if rho2 is None else float(np.sqrt(rho2)) * (1.0 + 1e-12)
        if rate is None or rate > rho * (1.0 + 1e-9):
            self.failed.append(rho)
            if t is not None and t <= 0:
                self._keep("below", rho, t)
            why = f"margin {t:.3g}" if t is not None and t <= 0 else "not verified"
            self.status = self.status or f"{status}, {why}"
            return False
        self._keep("above", rho, t)
        if self.upper is None or rate < self.upper:
            multipliers = dict(zip(self.names, (float(v) for v in lam), strict=True))
            self.best = (rate, self.coords.original(P), multipliers, status)
        self.coords.refine(P)  # the certificate just found is the identity from now on
        self.last = lam
        return True

    def inherit(self, other: _Search) -> None:
        """Start in ``other``'s coordinates, with its last certificate checked on this system."""
        self.coords = copy.deepcopy(other.coords)
        if other.last is None:
            return
        AB, forms = self.coords.apply(self.AB, self.forms)
        identity = np.eye(AB.shape[0])
        rho2 = _verified_rate2(AB, forms, self.names, identity, other.last)
        if rho2 is not None and rho2 < 1.0:
            rate = float(np.sqrt(rho2)) * (1.0 + 1e-12)
            multipliers = dict(zip(self.names, (float(v) for v in other.last), strict=True))
            self.best = (rate, self.coords.original(identity), multipliers, "neighbour's")
            self.last = other.last

    def _keep(self, side: str, rho: float, t: float) -> None:
        previous = getattr(self, side)
        if previous is not None and previous[0] == rho:
            return
        setattr(self, side, (rho, t))
        self.kept = side

    def next_rho(self, tol: float) -> float:
        """False position on the margins, kept at least a tenth of the bracket (or a quarter
        of ``tol``) inside it; bisection until a probe on each side has a margin."""
        lo, hi = self.lower, self.upper
        if self.below is None or self.above is None:
            return 0.5 * (lo + hi)
        (a, fa), (b, fb) = self.below, self.above
        guess = b - fb * (b - a) / (fb - fa)
        inset = max(0.1 * (hi - lo), 0.25 * tol)
        return float(np.clip(guess, lo + inset, hi - inset))


def _search_rate(system, mu, L, iqc, tol, warm: _Search | None = None):
    """The smallest certified rho between the quadratic rate and 1, and the search.

    ``warm``, a neighbouring point's search, lends its coordinates and its last certificate
    (checked in numpy on this point's matrices: an upper bound without an SDP) and its rate
    as the guess around which the first probes go.
    """
    A, B, C = system
    quad = quadratic_rate(A, B, C, mu, L)
    if not quad < 1.0:
        why = "diverges on a quadratic in [mu, L]"
        return _no_certificate(why, quad, quad, mu, L, iqc, system), None
    search = _Search(system, mu, L, iqc, quad)
    guess = None if warm is None or warm.best is None else warm.best[0]
    if guess is not None:
        search.inherit(warm)
    step = 1e-3 * (1.0 - (guess or 0.0)) + tol
    for rho in ([] if guess is None else [min(guess + step, 1.0)]) + [1.0]:
        if search.upper is not None or (rho > search.lower and search.attempt(rho)):
            break
    if search.upper is None and guess is not None:  # the neighbour's coordinates may not suit
        search.coords = _Coordinates(search.AB, system[2], L)
        search.failed.clear()
        search.attempt(1.0)
    if search.upper is None:
        why = f"no certificate at rho = 1 ({search.status})"
        return _no_certificate(why, search.lower, quad, mu, L, iqc, system, search.solves), search
    first = quad if guess is None else max(min(guess, search.upper) - step, quad)
    if first < search.upper:
        search.attempt(first)
    stalls = 0
    while search.upper - search.lower > tol:
        width = search.upper - search.lower
        rho = search.next_rho(tol) if stalls < 3 else 0.5 * (search.lower + search.upper)
        search.attempt(rho)
        stalls = stalls + 1 if search.upper - search.lower > 0.5 * width else 0
    rate, P, multipliers, status = search.best
    if not rate < 1.0:
        why = "bounded only (rho = 1)"
        return _no_certificate(why, search.lower, quad, mu, L, iqc, system, search.solves), search
    result = RobustRate(
        rate, P, multipliers, iqc, (search.lower, rate), status, quad, mu, L, A, B, C, search.solves
    )
    return result, search


def robust_rate(
    opt: optax.GradientTransformation,
    mu: float,
    L: float,
    *,
    iqc: str = "off_by_one",
    tol: float = 1e-6,
) -> RobustRate:
    r"""The smallest rate :math:`\rho` certified for ``opt`` over every :math:`f \in S(\mu, L)`.

    Args:
      opt: an optax transform that ``linearize`` finds affine in the gradient and that acts
        on each coordinate alike (sgd, momentum, nesterov, pid, triple_momentum, a user's rule).
      mu, L: the class: strong convexity :math:`0 < \mu` and smoothness :math:`L \ge \mu`.
      iqc: ``"off_by_one"`` (default; Lemma 10 with :math:`\bar\rho` free, plus the sector
        IQC) or ``"sector"`` (Lemma 6 alone).
      tol: width of the final bisection bracket on :math:`\rho`.

    Returns:
      A :class:`RobustRate`; ``rate`` is None where no certificate exists (e.g. heavy ball with
      Polyak's tuning at large :math:`\kappa`, which converges on every quadratic but not on
      every function of the class).

    Raises:
      ValueError: naming ``opt``, ``mu``, ``L``, ``iqc`` or ``tol`` for bad input;
        :class:`~gdyn_jax.linearize.robust.MissingExtraError` (an ImportError) without the
        ``[robust]`` extra.

    Example: gradient descent with :math:`a = 2/(L+\mu)` is certified at
    :math:`(\kappa-1)/(\kappa+1)`, its rate on quadratics.
    """
    mu, L = _check_class(mu, L)
    iqc = _check_iqc(iqc)
    tol = _check_tol(tol)
    _cvxpy()
    return _search_rate(open_loop_matrices(opt), mu, L, iqc, tol)[0]


def _check_tol(tol) -> float:
    tol = float(tol)
    if not (np.isfinite(tol) and 0 < tol <= 1e-2):
        raise ValueError(f"tol: expected a value in (0, 0.01], got {tol}")
    return tol


# --------------------------------------------------------------------------- grids


@dataclasses.dataclass(frozen=True)
class RobustRateGrid:
    """Certified rates over a cartesian grid of hyperparameters.

    Attributes:
      rate: array of the grid's shape, NaN where there is no certificate.
      quadratic_rate: the worst rate on quadratics at each point.
      results: object array of the :class:`RobustRate` of each point.
      grid: the grid (name -> 1-D values).
      solves: SDPs solved in all.
    """

    rate: np.ndarray
    quadratic_rate: np.ndarray
    results: np.ndarray
    grid: dict
    solves: int


def robust_rate_grid(
    factory: Callable[..., optax.GradientTransformation],
    grid: dict,
    mu: float,
    L: float,
    *,
    iqc: str = "off_by_one",
    tol: float = 1e-5,
    **fixed: Any,
) -> RobustRateGrid:
    r""":func:`robust_rate` at every point of a cartesian ``grid`` of ``factory``'s
    hyperparameters (``fixed`` are further constant ones), e.g. a rate map.

    The open loops of all points come from one vectorised ``jax.jacfwd``
    (:func:`gdyn_jax.linearize.linearize_grid`); affinity and coordinate-wise action are
    checked at the grid's corners. One compiled SDP serves every point, and the points are
    visited in a snake order so that each bisection starts from its neighbour's rate.
    """
    mu, L = _check_class(mu, L)
    iqc = _check_iqc(iqc)
    tol = _check_tol(tol)
    _cvxpy()
    system = linearize_grid(factory, grid, np.eye(1), **fixed)
    names = list(grid)
    axes = [np.asarray(grid[k], np.float64) for k in names]
    shape = tuple(len(a) for a in axes)
    for corner in np.ndindex(*(2,) * len(shape)):
        point = {k: axis[-c] for k, axis, c in zip(names, axes, corner, strict=True)}
        open_loop_matrices(factory(**point, **fixed))
    A, B, C = _open_loop_of(system)
    results = np.empty(shape, dtype=object)
    warm = None
    for index in _snake(shape):
        results[index], search = _search_rate((A[index], B[index], C[index]), mu, L, iqc, tol, warm)
        warm = search if search is not None and search.best is not None else warm
    rate = np.vectorize(lambda r: np.nan if r.rate is None else r.rate, otypes=[float])(results)
    quad = np.vectorize(lambda r: r.quadratic_rate, otypes=[float])(results)
    solves = int(sum(r.solves for r in results.ravel()))
    return RobustRateGrid(rate, quad, results, dict(zip(names, axes, strict=True)), solves)


def _snake(shape: tuple[int, ...]):
    """Indices of ``shape`` in boustrophedon order (neighbours follow neighbours)."""
    if len(shape) == 1:
        yield from ((i,) for i in range(shape[0]))
        return
    for i in range(shape[0]):
        inner = list(_snake(shape[1:]))
        for rest in inner if i % 2 == 0 else reversed(inner):
            yield (i, *rest)

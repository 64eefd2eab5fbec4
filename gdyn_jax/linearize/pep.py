r"""The worst case after n steps of a rule over :math:`S(\mu, L)`: performance estimation (PEP).

:func:`~gdyn_jax.linearize.robust_rate` certifies an upper bound on a rule's rate over every
:math:`\mu`-strongly convex, :math:`L`-smooth function; the PEP of Drori & Teboulle (2014) and
Taylor, Hendrickx, Glineur (2017) computes the exact worst case after :math:`n` steps. Both
are read off the same open loop from the rule's own code (``jax.jacfwd``, as
:mod:`gdyn_jax.linearize.iqc` does): :math:`\xi_{k+1} = A\xi_k + B g_k`, :math:`y_k = C\xi_k`,
:math:`g_k = \nabla f(y_k)`. The rule acts on each coordinate alike, so every iterate is a
fixed linear combination of the initial state and the gradients; with their Gram matrix
:math:`G \succeq 0` and the function values :math:`f_k` as variables, the worst case is the SDP

.. math::

    \tau_n = \max\ \mathrm{metric}(\xi_n)\quad\text{s.t.}\quad \mathrm{initial}(\xi_0) \le 1,\
    G \succeq 0,\ f_i \ge f_j + \langle g_j, x_i - x_j\rangle + \tfrac{1}{2(1-\mu/L)}\big(
    \tfrac1L\|g_i - g_j\|^2 + \mu\|x_i - x_j\|^2 - \tfrac{2\mu}{L}\langle g_j - g_i, x_j - x_i
    \rangle\big)

over every pair of points :math:`y_0, \dots, y_n, x_\star` (and the output points, if the
metric reads one): these interpolation conditions are necessary and sufficient for a function
of :math:`S(\mu, L)` to take those values and gradients there (Taylor et al. 2017, Thm. 4), so
the SDP is exact in any dimension :math:`\ge n + 2`, and a factor of :math:`G` gives the
worst function's iterates. It is solved on the problem normalised by :math:`L` (gradients in
units of :math:`L`, the class :math:`S(1/\kappa, 1)`; the ratio is unchanged), with cvxpy and
Clarabel (the ``[robust]`` extra), and its answer is checked in numpy.

The state at rest: the default start is the rule's state at rest at :math:`x_0`, as its
``init`` makes it: the equilibrium :math:`\xi_0 = v\,x_0` with :math:`(A - I)v = 0`,
:math:`Cv = 1` (velocities 0, a stored previous point equal to :math:`x_0`); ``start='free'``
leaves the whole initial state free (two free initial points for a two-step method).

References: Drori, Teboulle, Math. Program. 145:451-482, 2014; Taylor, Hendrickx, Glineur,
Math. Program. 161:307-345, 2017; Goujaud et al., PEPit, Math. Program. Comput. 2024.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gdyn_jax.linearize.iqc import quadratic_rate
from gdyn_jax.linearize.lmi import require_cvxpy, solve_clarabel
from gdyn_jax.linearize.outcome import Outcome

__all__ = ["MAX_STEPS", "METRICS", "Form", "PEPResult", "rest_state", "solve_pep"]

#: The largest n accepted: at n = 30 one SDP takes 3 to 8 s here (BENCHMARKS.md).
MAX_STEPS = 30
#: Named metrics (and initial conditions), evaluated at the output point p = O xi.
METRICS = ("distance", "function", "function+distance")
#: A Gram matrix whose constraints hold to this (relative to its scale) is accepted.
FEASIBILITY_RTOL = 1e-6
#: Clarabel's defaults, then without its equilibration, which some degenerate worst cases
#: (gradient descent with a = 1/L, n = 20) need to reach 'optimal' rather than 'inaccurate'.
SOLVER_OPTIONS = ({}, {"equilibrate_enable": False})


@dataclasses.dataclass(frozen=True)
class Form:
    r"""A quadratic measure of step k: :math:`q_k = w_k^\top Q w_k + c\,(f(y_k) - f_\star)`
    with :math:`w_k = [\xi_k - \xi_\star;\ g_k]` (the rule's state off its equilibrium and the
    gradient at :math:`y_k`), in the rule's own units. A Lyapunov function such as PEPit's for
    robust momentum is written this way."""

    Q: np.ndarray
    c: float = 0.0

    def __post_init__(self):
        Q = np.asarray(self.Q, np.float64)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or not np.all(np.isfinite(Q)):
            raise ValueError(f"Q: expected a finite square matrix, got shape {Q.shape}")
        object.__setattr__(self, "Q", 0.5 * (Q + Q.T))
        object.__setattr__(self, "c", float(self.c))


@dataclasses.dataclass(frozen=True)
class PEPResult:
    """The SDP's answer: ``tau`` (None unless PROVEN), its outcome and reason, the Gram
    matrix, the function values, and the rows of the points over the Gram basis."""

    tau: float | None
    outcome: Outcome
    reason: str
    status: str
    gram: np.ndarray | None = None
    values: np.ndarray | None = None
    points: dict | None = None


def rest_state(A: np.ndarray, C: np.ndarray) -> np.ndarray:
    """The equilibrium direction v: (A - I) v = 0, C v = 1 (ValueError naming ``opt`` when
    the rule's state grows with no gradient or its rest state is not unique)."""
    n = A.shape[0]
    radius = float(np.max(np.abs(np.linalg.eigvals(A))))
    if radius > 1.0 + 1e-9:
        raise ValueError(
            f"opt: the rule's state grows with a zero gradient (open-loop spectral radius "
            f"{radius:.6g} > 1); a PEP needs a state at rest"
        )
    rank = np.linalg.matrix_rank(A - np.eye(n), tol=1e-9 * max(1.0, np.abs(A).max()))
    if n - rank != 1:
        raise ValueError(
            f"opt: the rule's state has {n - rank} independent poles at 1 with a zero gradient "
            "(a redundant state leaf that never decays); its rest state is not unique"
        )
    M = np.vstack([A - np.eye(n), C])
    rhs = np.concatenate([np.zeros(n), [1.0]])
    v, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    if not np.allclose(M @ v, rhs, atol=1e-9):
        raise ValueError("opt: the rule's rest state does not sit at its parameters (C v != 1)")
    return v


class _Basis:
    """Rows over the Gram basis [initial state, g_0..g_n, gradients at the output points]."""

    def __init__(self, A, B, C, O, n: int, start: str, extra: bool):
        ns = A.shape[0]
        self.m0 = 1 if start == "rest" else ns
        self.n, self.extra = n, extra
        self.size = self.m0 + (n + 1) + (2 if extra else 0)
        e = np.zeros((ns, self.size))
        if start == "rest":
            e[:, 0] = rest_state(A, C)
        else:
            e[:, :ns] = np.eye(ns)
        self.states = [e]
        for k in range(n):
            e = A @ e + np.outer(B[:, 0], self.unit(self.m0 + k))
            self.states.append(e)
        self.C, self.O = C[0], O

    def unit(self, i: int) -> np.ndarray:
        u = np.zeros(self.size)
        u[i] = 1.0
        return u

    def points(self) -> dict:
        """name -> (position row, gradient row, index of its value; None for x*)."""
        pts = {"x*": (np.zeros(self.size), np.zeros(self.size), None)}
        for k in range(self.n + 1):
            pts[f"y{k}"] = (self.C @ self.states[k], self.unit(self.m0 + k), k)
        if self.extra:
            for j, k in enumerate((0, self.n)):
                index = self.m0 + self.n + 1 + j
                pts[f"p{k}"] = (self.O @ self.states[k], self.unit(index), self.n + 1 + j)
        return pts


def _sym(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The symmetric matrix M with trace(M G) = <a, b> for the Gram matrix G."""
    return 0.5 * (np.outer(a, b) + np.outer(b, a))


def _interpolation(points: dict, mu: float, L: float, nf: int):
    """(M, F): rows vec(M_ij) and value coefficients of each condition, trace(M G) + F f <= 0."""
    rows, coefs = [], []
    scale = 1.0 / (2.0 * (1.0 - mu / L))
    items = list(points.values())
    for i, (xi, gi, fi) in enumerate(items):
        for j, (xj, gj, fj) in enumerate(items):
            if i == j:
                continue
            dx, dg = xi - xj, gi - gj
            curv = _sym(dg, dg) / L + mu * _sym(dx, dx) - 2 * mu / L * _sym(dg, dx)
            M = _sym(gj, dx) + scale * curv
            F = np.zeros(nf)
            if fi is not None:
                F[fi] -= 1.0
            if fj is not None:
                F[fj] += 1.0
            rows.append(M.ravel())
            coefs.append(F)
    return np.array(rows), np.array(coefs)


def _measure(spec, basis: _Basis, k: int, mu: float, nf: int):
    """(M, F) of a metric or initial condition at step k (0 or n): value trace(M G) + F f."""
    points = basis.points()
    F = np.zeros(nf)
    if isinstance(spec, Form):
        w = np.vstack([basis.states[k], basis.unit(basis.m0 + k)])
        if spec.Q.shape[0] != w.shape[0]:
            raise ValueError(f"Q: expected shape {(w.shape[0],) * 2} (state and gradient)")
        F[k] = spec.c
        return w.T @ spec.Q @ w, F
    x = basis.O @ basis.states[k]
    fx = points[f"p{k}" if basis.extra else f"y{k}"][2]
    M = np.zeros((basis.size, basis.size))
    if spec in ("distance", "function+distance"):
        M = M + (1.0 if spec == "distance" else 0.5 * mu) * _sym(x, x)
    if spec in ("function", "function+distance"):
        F[fx] = 1.0
    return M, F


def solve_pep(A, B, C, mu, L, n, *, metric="distance", initial=None, start="rest", output=None):
    """The PEP of n steps of the open loop (A, B, C) over S(mu, L), normalised by L."""
    cp = require_cvxpy()
    O = C[0] if output is None else np.asarray(output, np.float64)
    extra = not np.array_equal(O, C[0]) and any(
        not isinstance(s, Form) and s != "distance" for s in (metric, initial)
    )
    metric, initial = (_normalised(s, L, A.shape[0]) for s in (metric, initial))
    basis = _Basis(A, L * B, C, O, n, start, extra)
    mu1, nf = mu / L, n + 1 + (2 if extra else 0)
    points = basis.points()
    Mi, Fi = _interpolation(points, mu1, 1.0, nf)
    Mm, Fm = _measure(metric, basis, n, mu1, nf)
    M0, F0 = _measure(initial, basis, 0, mu1, nf)
    data = (Mi, Fi, M0, F0, Mm, Fm)
    quad = quadratic_rate(A, B, C, mu, L)
    tries = []
    for rate in dict.fromkeys((quad, 1.0, float(np.sqrt(quad)))):  # the balance, then others
        for options in SOLVER_OPTIONS:
            result = _solve(cp, data, *_balance(basis, rate), points, options)
            if result.outcome is not Outcome.UNDECIDED:
                return result
            tries.append(result.reason)
    why = f"no balance of the SDP solved it (n = {n}, kappa = {L / mu:.4g}): " + "; ".join(tries)
    return dataclasses.replace(result, reason=why)


def _solve(cp, data, s, sf, points, options) -> PEPResult:
    """One solve of the SDP in the variables balanced by (s, sf), checked in numpy."""
    Mi, Fi, M0, F0, Mm, Fm = data
    S = np.outer(s, s).ravel()
    G = cp.Variable((len(s), len(s)), PSD=True)  # the Gram matrix is s G s
    f = cp.Variable(len(sf))  # the values are sf f
    g = cp.vec(G, order="C")
    constraints = [(Mi * S) @ g + (Fi * sf) @ f <= 0, (M0.ravel() * S) @ g + (F0 * sf) @ f <= 1]
    problem = cp.Problem(cp.Maximize((Mm.ravel() * S) @ g + (Fm * sf) @ f), constraints)
    status, error = solve_clarabel(problem, **options)
    if status == "solver_error":
        return PEPResult(None, Outcome.UNDECIDED, f"the SDP solver failed ({error})", status)
    status = str(status)
    if status in ("unbounded", "unbounded_inaccurate"):
        why = "the metric is not bounded by the initial condition (the PEP is unbounded)"
        return PEPResult(float("inf"), Outcome.DISPROVEN, why, status)
    if G.value is None or status != "optimal":
        return PEPResult(None, Outcome.UNDECIDED, f"solver status {status}", status)
    G, f = s[:, None] * np.array(G.value) * s[None, :], sf * np.array(f.value)
    return _verified(G, f, data, status, points)


def _balance(basis: _Basis, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Scales of the basis vectors and values: the k-th gradient and value are expected to
    shrink like rate^k and rate^(2k), so the SDP solves for G and f relative to that (a
    diagonal congruence: the same problem, better conditioned for large n)."""
    r = float(np.clip(rate, 1e-2, 1.0))
    s = np.ones(basis.size)
    s[basis.m0 : basis.m0 + basis.n + 1] = r ** np.arange(basis.n + 1)
    sf = r ** (2.0 * np.arange(basis.n + 1))
    if basis.extra:
        s[basis.m0 + basis.n + 1 :] = [1.0, r**basis.n]
        sf = np.concatenate([sf, [1.0, r ** (2 * basis.n)]])
    return s, sf


def _verified(G, f, data, status, points) -> PEPResult:
    """The solver's optimum, kept only if its Gram matrix and values satisfy the constraints in
    numpy to FEASIBILITY_RTOL (then a function of the class attains it, up to that)."""
    Mi, Fi, M0, F0, Mm, Fm = data
    g = G.ravel()
    scale = max(1.0, float(np.abs(G).max()), float(np.abs(f).max()))
    interp = float(np.max(Mi @ g + Fi @ f)) if len(Mi) else 0.0
    init = float(M0.ravel() @ g + F0 @ f) - 1.0
    psd = -float(np.linalg.eigvalsh(0.5 * (G + G.T))[0])
    worst = max(interp, init, psd) / scale
    tau = float(Mm.ravel() @ g + Fm @ f)
    if worst > FEASIBILITY_RTOL:
        why = f"the solver's worst case violates its constraints by {worst:.2g} in float64"
        return PEPResult(None, Outcome.UNDECIDED, why, status, G, f, points)
    why = (
        f"the solver's optimum tau = {tau:.10g}, its Gram matrix checked in float64 "
        f"(largest violation {max(worst, 0.0):.1g} of its scale)"
    )
    return PEPResult(tau, Outcome.PROVEN, why, status, G, f, points)


def _normalised(spec, L: float, ns: int):
    """A metric in the units of the problem normalised by L (g = L g', f = L f')."""
    if not isinstance(spec, Form):
        return spec
    if spec.Q.shape != (ns + 1, ns + 1):
        raise ValueError(f"Q: expected shape {(ns + 1, ns + 1)} (the state and the gradient)")
    d = np.ones(ns + 1)
    d[-1] = L
    return Form(d[:, None] * spec.Q * d[None, :], spec.c * L)


def worst_iterates(result: PEPResult, L: float) -> dict:
    """Coordinates of the worst function's points (a factor of the Gram matrix): for each point
    its position, gradient and value (x* at the origin with f* = 0), in the rule's units (the
    SDP's gradients and values are in units of L)."""
    w, V = np.linalg.eigh(0.5 * (result.gram + result.gram.T))
    keep = w > 1e-9 * max(w.max(), 1e-300)
    X = (V[:, keep] * np.sqrt(w[keep])).T  # G ~= X^T X
    out = {}
    for name, (x, g, fi) in result.points.items():
        value = 0.0 if fi is None else float(result.values[fi])
        out[name] = (X @ x, L * (X @ g), L * value)
    return out

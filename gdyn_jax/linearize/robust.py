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

Three outcomes, never two (``gdyn_jax.linearize.outcome``): a result is ``PROVEN`` (a
verified certificate), ``DISPROVEN`` (no certificate exists with this IQC: a dual certificate
of the LMI's infeasibility at :math:`\rho = 1`, found by a second SDP and verified in numpy,
``gdyn_jax.linearize.infeasibility``; or the rule diverges on a quadratic of the class) or
``UNDECIDED`` (neither verifies: the solver failed, or its answers do not hold in float64; a
solver's negative margin alone is no proof, it can be spurious when the certificate sought is
badly conditioned, as for a step size tiny against the curvature). Where
the rule's own coordinates prove no rate, the search runs again on the problem normalised by
:math:`L` (the gradient in units of :math:`L`, the class :math:`S(1/\kappa, 1)`), whose data
keep unit scale however large :math:`\kappa` is: in the rule's coordinates the IQC's forms
grow like :math:`L^2` and the solver fails from :math:`\kappa \approx 10^5` on for plain
gradient descent, or reports a spurious infeasibility.

The pieces: :mod:`gdyn_jax.linearize.iqc` (the open loop and the IQCs),
:mod:`gdyn_jax.linearize.lmi` (the SDP and the numpy check of a certificate),
:mod:`gdyn_jax.linearize.rate_search` (the search for the smallest rate); this module holds the
entry points.

References: Lessard, Recht, Packard, "Analysis and design of optimization algorithms via
integral quadratic constraints", SIAM J. Optim. 26(1):57-95, 2016; Van Scoy, Freeman, Lynch,
IEEE Control Systems Letters 2(1):49-54, 2018.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import optax

from gdyn_jax.errors import MissingExtraError
from gdyn_jax.linearize.grid import linearize_grid
from gdyn_jax.linearize.iqc import (
    IQCS,
    check_class,
    check_iqc,
    iqc_system,
    open_loop_matrices,
    open_loop_of,
    quadratic_rate,
)
from gdyn_jax.linearize.lmi import require_cvxpy
from gdyn_jax.linearize.rate_search import LMI_RTOL, RobustRate, certify

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
      A :class:`RobustRate` whose ``outcome`` is one of three
      (:class:`~gdyn_jax.linearize.Outcome`): ``PROVEN``, with ``rate`` and its verified
      certificate; ``DISPROVEN``, no certificate exists with this IQC (e.g. heavy ball with
      Polyak's tuning at large :math:`\kappa`, which converges on every quadratic but not on
      every function of the class); ``UNDECIDED``, the SDP solver failed or its certificates
      do not verify in float64 (``reason`` says which). ``rate`` is None unless PROVEN. Where
      the rule's own coordinates give no certificate, the search is run again on the problem
      normalised by :math:`L` (gradients in units of :math:`L`), whose SDP keeps unit scale at
      any :math:`\kappa`: gradient descent is certified at its closed-form rate up to
      :math:`\kappa = 10^8`.

    Raises:
      ValueError: naming ``opt``, ``mu``, ``L``, ``iqc`` or ``tol`` for bad input;
        :class:`~gdyn_jax.errors.MissingExtraError` (an ImportError) without the
        ``[robust]`` extra.

    Example: gradient descent with :math:`a = 2/(L+\mu)` is certified at
    :math:`(\kappa-1)/(\kappa+1)`, its rate on quadratics.
    """
    mu, L = check_class(mu, L)
    iqc = check_iqc(iqc)
    tol = _check_tol(tol)
    require_cvxpy()  # without the [robust] extra: MissingExtraError, before any work
    return certify(open_loop_matrices(opt), mu, L, iqc, tol)[0]


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
      rate: array of the grid's shape, NaN where no rate is certified (see ``outcome``).
      quadratic_rate: the worst rate on quadratics at each point.
      results: object array of the :class:`RobustRate` of each point.
      grid: the grid (name -> 1-D values).
      solves: SDPs solved in all.
      outcome: array of the grid's shape of :class:`~gdyn_jax.linearize.Outcome` values (a
        ``str`` enum): where ``rate`` is NaN, ``'disproven'`` (no certificate) and
        ``'undecided'`` (the solver could not tell) are told apart.
    """

    rate: np.ndarray
    quadratic_rate: np.ndarray
    results: np.ndarray
    grid: dict
    solves: int
    outcome: np.ndarray = None


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
    mu, L = check_class(mu, L)
    iqc = check_iqc(iqc)
    tol = _check_tol(tol)
    require_cvxpy()  # without the [robust] extra: MissingExtraError, before any work
    system = linearize_grid(factory, grid, np.eye(1), **fixed)
    names = list(grid)
    axes = [np.asarray(grid[k], np.float64) for k in names]
    shape = tuple(len(a) for a in axes)
    for corner in np.ndindex(*(2,) * len(shape)):
        point = {k: axis[-c] for k, axis, c in zip(names, axes, corner, strict=True)}
        open_loop_matrices(factory(**point, **fixed))
    A, B, C = open_loop_of(system)
    results = np.empty(shape, dtype=object)
    warm = None
    for index in _snake(shape):
        results[index], search = certify((A[index], B[index], C[index]), mu, L, iqc, tol, warm)
        warm = search if search is not None and search.best is not None else warm
    rate = np.vectorize(lambda r: np.nan if r.rate is None else r.rate, otypes=[float])(results)
    quad = np.vectorize(lambda r: r.quadratic_rate, otypes=[float])(results)
    outcome = np.vectorize(lambda r: r.outcome, otypes=[object])(results)
    solves = int(sum(r.solves for r in results.ravel()))
    axes_by_name = dict(zip(names, axes, strict=True))
    return RobustRateGrid(rate, quad, results, axes_by_name, solves, outcome)


def _snake(shape: tuple[int, ...]):
    """Indices of ``shape`` in boustrophedon order (neighbours follow neighbours)."""
    if len(shape) == 1:
        yield from ((i,) for i in range(shape[0]))
        return
    for i in range(shape[0]):
        inner = list(_snake(shape[1:]))
        for rest in inner if i % 2 == 0 else reversed(inner):
            yield (i, *rest)

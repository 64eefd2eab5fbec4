r"""The search for the smallest certified rate, and its result with the certificate.

Between the quadratic rate (a lower bound) and 1, by false position on the SDP's margins with
a bisection fallback; every certificate is verified in numpy before it is kept
(:mod:`gdyn_jax.linearize.lmi`). The maths and the references are in
:mod:`gdyn_jax.linearize.robust`.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from gdyn_jax.linearize.infeasibility import prove_infeasible
from gdyn_jax.linearize.iqc import iqc_system, quadratic_rate
from gdyn_jax.linearize.lmi import Coordinates, sdp, verified_rate2
from gdyn_jax.linearize.outcome import Outcome

__all__ = ["LMI_RTOL", "RobustRate", "Search", "certify", "search_rate"]

#: The numpy check of a certificate accepts it when the LMI's largest eigenvalue is at most
#: ``LMI_RTOL`` times the scale of its terms
#: (:meth:`~gdyn_jax.linearize.RobustRate.lmi_residual`).
LMI_RTOL = 1e-9
#: A rate on quadratics this close above 1 may be a double pole's rounding (~sqrt(eps)).
QUADRATIC_ROUNDING = 1e-7


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
      outcome: :class:`~gdyn_jax.linearize.Outcome` of the claim "a rate < 1 is certified":
        ``PROVEN`` (``rate`` is set), ``DISPROVEN`` (no certificate exists with this IQC: a
        dual certificate of the LMI's infeasibility at :math:`\rho = 1` verified in numpy,
        ``gdyn_jax.linearize.infeasibility``, or the rule diverges on a quadratic of the
        class) or ``UNDECIDED`` (neither a certificate nor a proof that none exists verifies
        in float64; ``reason`` gives the solver's status and :math:`\kappa`). ``rate`` is
        None unless PROVEN.
      reason: one line: what proves the outcome, or what could not be decided.
      normalised: True where the answer comes from the problem normalised by :math:`L`
        (gradients in units of :math:`L`, the class :math:`S(1/\kappa, 1)`), tried when the
        rule's own coordinates give no certificate; ``P`` and ``multipliers`` are then mapped
        back to the rule's coordinates.
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
    outcome: Outcome = Outcome.UNDECIDED
    reason: str = ""
    normalised: bool = False

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
        """Largest eigenvalue of :meth:`lmi` over the scale of its terms (<= LMI_RTOL: valid);
        for a ``normalised`` result, of the congruent LMI in the coordinates it was checked in."""
        P, multipliers = self.P, self.multipliers
        A, B, C, mu, L = self.A, self.B, self.C, self.mu, self.L
        if self.normalised:
            P, multipliers = _scaled(P, multipliers, self.L, self.iqc, inverse=False)
            A, B, C, mu, L = A, self.L * B, C, self.mu / self.L, 1.0
        AB, forms = iqc_system(A, B, C, mu, L, self.iqc)
        n = P.shape[0]
        G = AB.T @ P @ AB + sum(multipliers[k] * forms[k] for k in forms)
        G[:n, :n] -= self.rate**2 * P
        terms = [AB.T @ P @ AB, self.rate**2 * P]
        terms += [multipliers[k] * forms[k] for k in forms]
        scale = max(float(np.max(np.abs(t))) for t in terms)
        return float(np.linalg.eigvalsh(0.5 * (G + G.T))[-1]) / max(scale, 1e-300)


def _scaled(P, multipliers, L: float, iqc: str, *, inverse: bool):
    r"""The certificate in the rule's coordinates from the normalised ones (``inverse``), or
    back: the filter state scales as :math:`\zeta = L\zeta'` and the forms as :math:`L^2`."""
    d = np.ones(P.shape[0])
    if iqc == "off_by_one":
        d[-1] = L
    d = 1.0 / d if inverse else d
    factor = L**-2 if inverse else L**2
    return d[:, None] * P * d[None, :], {k: v * factor for k, v in multipliers.items()}


def _no_certificate(outcome, why, lo, quad, mu, L, iqc, system, solves=0, reason=""):
    A, B, C = system
    return RobustRate(
        None, None, None, iqc, (lo, 1.0), why, quad, mu, L, A, B, C, solves, outcome, reason
    )


class Search:
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
        self.sdp = sdp(self.AB.shape[0], self.names)
        self.coords = Coordinates(self.AB, C, L)
        self.floor = floor
        self.failed: list[float] = []
        self.failures: dict[float, tuple[str, str]] = {}  # rho -> (kind, detail)
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
        rho2 = verified_rate2(AB, forms, self.names, P, lam) if ok else None
        if rho2 is not None:  # and in the rule's own coordinates, where it is returned
            P_rule = self.coords.original(P)
            original = verified_rate2(self.AB, self.forms, self.names, P_rule, lam)
            rho2 = None if original is None else max(rho2, original)
        rate = None if rho2 is None else float(np.sqrt(rho2)) * (1.0 + 1e-12)
        if rate is None or rate > rho * (1.0 + 1e-9):
            self.failed.append(rho)
            if t is not None and t <= 0:
                self._keep("below", rho, t)
            why = f"margin {t:.3g}" if t is not None and t <= 0 else "not verified"
            self.status = self.status or f"{status}, {why}"
            self.failures[rho] = _failure(status, t)
            return False
        self._keep("above", rho, t)
        if self.upper is None or rate < self.upper:
            multipliers = dict(zip(self.names, (float(v) for v in lam), strict=True))
            self.best = (rate, self.coords.original(P), multipliers, status)
        self.coords.refine(P)  # the certificate just found is the identity from now on
        self.last = lam
        return True

    def inherit(self, other: Search) -> None:
        """Start in ``other``'s coordinates, with its last certificate checked on this system."""
        self.coords = copy.deepcopy(other.coords)
        if other.last is None:
            return
        AB, forms = self.coords.apply(self.AB, self.forms)
        identity = np.eye(AB.shape[0])
        rho2 = verified_rate2(AB, forms, self.names, identity, other.last)
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


def _failure(status: str, t: float | None) -> tuple[str, str]:
    """What a failed probe says (it never proves that no certificate exists)."""
    if t is not None and t > 0:
        detail = f"the solver's certificate (status {status}) does not verify in float64"
        return "unverified", detail
    margin = "no answer" if t is None else f"largest margin {t:.3g}"
    return "no certificate", f"the solver found none (status {status}, {margin})"


def _kappa(mu: float, L: float) -> str:
    return f"kappa = {L / mu:.4g}"


def search_rate(system, mu, L, iqc, tol, warm: Search | None = None, quad=None, decide=True):
    """The smallest certified rho between the quadratic rate and 1, and the search.

    ``warm``, a neighbouring point's search, lends its coordinates and its last certificate
    (checked in numpy on this point's matrices: an upper bound without an SDP) and its rate
    as the guess around which the first probes go. ``quad``: the rate on quadratics, if known.
    ``decide``: where no certificate is found at rho = 1, look for a proof that none exists.
    """
    A, B, C = system
    quad = quadratic_rate(A, B, C, mu, L) if quad is None else quad
    if not quad < 1.0:
        return _diverges(quad, mu, L, iqc, system), None
    search = Search(system, mu, L, iqc, quad)
    guess = None if warm is None or warm.best is None else warm.best[0]
    if guess is not None:
        search.inherit(warm)
    step = 1e-3 * (1.0 - (guess or 0.0)) + tol
    for rho in ([] if guess is None else [min(guess + step, 1.0)]) + [1.0]:
        if search.upper is not None or (rho > search.lower and search.attempt(rho)):
            break
    if search.upper is None and guess is not None:  # the neighbour's coordinates may not suit
        search.coords = Coordinates(search.AB, system[2], L)
        search.failed.clear()
        search.attempt(1.0)
    if search.upper is None:
        outcome, reason = _none_at_one(search, iqc, mu, L, decide)
        why = f"no certificate at rho = 1 ({search.status})"
        result = _no_certificate(
            outcome, why, search.lower, quad, mu, L, iqc, system, search.solves, reason
        )
        return result, search
    first = quad if guess is None else max(min(guess, search.upper) - step, quad)
    if first < search.upper:
        search.attempt(first)
    stalls = 0
    while search.upper - search.lower > tol:
        width = search.upper - search.lower
        rho = search.next_rho(tol) if stalls < 3 else 0.5 * (search.lower + search.upper)
        search.attempt(rho)
        stalls = stalls + 1 if search.upper - search.lower > 0.5 * width else 0
    return _result(search, quad, mu, L, iqc, system), search


def _none_at_one(search: Search, iqc: str, mu, L, decide: bool) -> tuple[Outcome, str]:
    """No certificate was found at rho = 1: DISPROVEN where a dual certificate proves that
    none exists, else UNDECIDED."""
    detail = search.failures.get(1.0, ("", "no probe at rho = 1"))[1]
    head = f"no certificate with the {iqc} IQC at rho = 1"
    if not decide:
        return Outcome.UNDECIDED, f"{head}: {detail} ({_kappa(mu, L)})"
    AB, forms = search.coords.apply(search.AB, search.forms)
    margin, status = prove_infeasible(AB, forms, search.names, 1.0)
    search.solves += 1
    if margin is not None:
        why = f"{head}: none exists (a dual certificate verified in float64, margin {margin:.3g})"
        return Outcome.DISPROVEN, f"{why} ({_kappa(mu, L)})"
    why = f"{head} ({detail}), and no proof that none exists (dual status {status}, not verified)"
    return Outcome.UNDECIDED, f"{why} ({_kappa(mu, L)})"


def _diverges(quad: float, mu, L, iqc, system) -> RobustRate:
    """No rate < 1 over the class: the rule diverges on one of its quadratics (or, within
    rounding of 1, could not tell)."""
    why = "diverges on a quadratic in [mu, L]"
    if quad > 1.0 + QUADRATIC_ROUNDING:
        outcome, reason = Outcome.DISPROVEN, f"{why} (its rate there is {quad:.6g})"
    else:
        outcome = Outcome.UNDECIDED
        reason = f"the rate on quadratics, {quad!r}, is within rounding of 1"
    return _no_certificate(outcome, why, quad, quad, mu, L, iqc, system, 0, reason)


def _result(search: Search, quad: float, mu, L, iqc, system) -> RobustRate:
    """The result of a search that found a certificate (at rho = 1 at least)."""
    rate, P, multipliers, status = search.best
    if not rate < 1.0:
        why = "bounded only (rho = 1)"
        reason = (
            f"a certificate at rho = 1 (bounded, not convergent), none found below: the best "
            f"certified rate lies in ({search.lower:.10g}, 1] ({_kappa(mu, L)})"
        )
        return _no_certificate(
            Outcome.UNDECIDED, why, search.lower, quad, mu, L, iqc, system, search.solves, reason
        )
    reason = f"certificate verified in float64 at rho = {rate:.10g}; " + _below(search, quad)
    A, B, C = system
    bracket = (search.lower, rate)
    return RobustRate(
        rate, P, multipliers, iqc, bracket, status, quad, mu, L, A, B, C, search.solves,
        Outcome.PROVEN, reason,
    )  # fmt: skip


def _below(search: Search, quad: float) -> str:
    """What holds at the bracket's lower end (how tight the certified rate is)."""
    lower = search.lower
    if lower == quad:
        return "the bracket's lower end is the rate on quadratics (no rate below it holds)"
    detail = search.failures.get(lower, ("", "not probed"))[1]
    return f"none found at rho = {lower:.10g}: {detail}"


def certify(system, mu, L, iqc, tol, warm: Search | None = None):
    """:func:`search_rate` in the rule's coordinates and, where it proves no rate there, again
    on the problem normalised by L (gradients in units of L, the class S(1/kappa, 1)), whose
    SDP stays of unit scale at any kappa; the normalised answer then stands, its certificate
    mapped back to the rule's coordinates. Returns ``(result, search in the rule's own)``."""
    result, search = search_rate(system, mu, L, iqc, tol, warm, decide=L == 1.0)
    if result.outcome is Outcome.PROVEN or search is None or L == 1.0:
        return result, search
    A, B, C = system
    scaled, _ = search_rate((A, L * B, C), mu / L, 1.0, iqc, tol, quad=result.quadratic_rate)
    P, multipliers = scaled.P, scaled.multipliers
    if P is not None:
        P, multipliers = _scaled(P, multipliers, L, iqc, inverse=True)
    normalised = dataclasses.replace(
        scaled,
        P=P,
        multipliers=multipliers,
        mu=mu,
        L=L,
        B=B,
        solves=result.solves + scaled.solves,
        reason=f"{scaled.reason} (normalised by L)",
        normalised=True,
    )
    return normalised, search

r"""Rate brackets from the rules' code: the PEP worst case below, the IQC certificate above.

For five rules tuned for :math:`S(\mu, L)` (:math:`\mu = 1/\kappa`, :math:`L = 1`), gradient
descent (:math:`a = 2/(\mu+L)`), Nesterov (:math:`a = 1/L`,
:math:`\beta = (\sqrt\kappa-1)/(\sqrt\kappa+1)`), Triple Momentum (Van Scoy et al. 2018), robust
momentum (Cyrus et al. 2018, :math:`\lambda = 1/2`) and heavy ball (Polyak's tuning for
quadratics), ``linearize.rate_bracket`` reads the rule's open loop from its optax code and
returns the exact worst case :math:`\tau_n` of :math:`\|x_n - x_\star\|^2/\|x_0 - x_\star\|^2`
after :math:`n` steps from the state at rest (PEP: Drori & Teboulle 2014; Taylor, Hendrickx,
Glineur 2017) and the rate the IQC certifies (``linearize.robust_rate``; Lessard, Recht,
Packard 2016). The n-step rate :math:`\tau_n^{1/(2n)}` bounds the worst-case rate from neither
side at finite n; the certificate bounds :math:`\tau_n \le c\,\rho^{2n}`.

Scored against independent numbers: gradient descent's closed forms
:math:`\tau_n = q^{2n}`, :math:`\rho = q = \max(|1-a\mu|, |1-aL|)`; the published rates
certified by the IQC (Triple Momentum :math:`1 - 1/\sqrt\kappa`; robust momentum
:math:`\lambda(1-1/\kappa) + (1-\lambda)(1-1/\sqrt\kappa)`; Nesterov's guarantee
:math:`\sqrt{1 - 1/\sqrt\kappa}` as an upper bound); and heavy ball's gap: where the IQC
certifies nothing, the PEP finds a worst case that has not contracted after n steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import numpy as np

from experiments._harness import Modes, Report
from gdyn_jax import linearize, optimizers

TITLE = "Rate brackets of five rules over smooth strongly convex losses: PEP below, IQC above"
SOURCE = (
    "Lessard, Recht, Packard, SIAM J. Optim. 2016 (IQC); Taylor, Hendrickx, Glineur, "
    "Math. Program. 2017 (PEP); Cyrus et al., ACC 2018 (robust momentum)"
)
RULES = ("gd", "nesterov", "triple_momentum", "robust_momentum", "heavy_ball")
LAM = 0.5  # robust momentum's lambda
#: Below this tau the PEP's answer is at its Gram matrix's feasibility tolerance
#: (``linearize.pep.FEASIBILITY_RTOL``): its n-step rate is not resolved.
RESOLVED = 1e-6


@dataclass(frozen=True)
class Settings(Modes):
    kappas: tuple[float, ...] = (2.0, 10.0, 100.0, 1000.0)
    n: int = 20

    TINY = dict(kappas=(10.0, 100.0), n=4)
    FULL = dict(kappas=(2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0))


def rule(name: str, kappa: float):
    """The rule ``name`` tuned for S(1/kappa, 1), and its published rate (None: heavy ball)."""
    mu, L, sk = 1.0 / kappa, 1.0, np.sqrt(kappa)
    if name == "gd":
        a = 2 / (mu + L)
        return optimizers.sgd(a), max(abs(1 - a * mu), abs(1 - a * L))
    if name == "nesterov":
        return optimizers.nesterov(1 / L, (sk - 1) / (sk + 1)), np.sqrt(1 - 1 / sk)
    if name == "triple_momentum":
        return optimizers.triple_momentum(mu, L), 1 - 1 / sk
    if name == "robust_momentum":
        rho = LAM * (1 - 1 / kappa) + (1 - LAM) * (1 - 1 / sk)
        return optimizers.robust_momentum(mu, L, LAM), rho
    beta = ((sk - 1) / (sk + 1)) ** 2
    return optimizers.momentum(4 / (np.sqrt(L) + np.sqrt(mu)) ** 2, beta), None


def brackets(s: Settings) -> tuple[list[dict], float]:
    """One ``rate_bracket`` per rule and kappa, and the seconds all of them took."""
    rows, start = [], time.perf_counter()
    with jax.enable_x64(True):
        for kappa in s.kappas:
            for name in RULES:
                opt, published = rule(name, kappa)
                r = linearize.rate_bracket(opt, 1.0 / kappa, 1.0, s.n)
                resolved = r.tau is not None and r.tau >= RESOLVED
                rows.append(
                    {
                        "kappa": kappa,
                        "rule": name,
                        "published": published,
                        "pep": r.outcome.name.lower(),
                        "pep_reason": r.reason,
                        "tau": r.tau,
                        "n_step_rate": r.n_step_rate if resolved else None,
                        "iqc": r.robust.outcome.name.lower(),
                        "upper": r.upper,
                        "bound": r.bound(),
                    }
                )
    return rows, time.perf_counter() - start


def run(s: Settings, report: Report) -> None:
    rows, seconds = brackets(s)
    n = s.n
    report.text(
        f"`linearize.rate_bracket(opt, 1/kappa, 1, n={n})` for each rule and kappa: the PEP's "
        f"worst case tau_n of ||x_n - x*||^2 / ||x_0 - x*||^2 from the state at rest, its "
        f"n-step rate tau_n^(1/2n), and the rate the IQC (off-by-one) certifies, with the "
        f"certificate's bound c rho^(2n) on tau_n. All {len(rows)} brackets (every SDP of both "
        f"sides) took {seconds:.1f} s. An n-step rate is shown only where tau_n >= "
        f"{RESOLVED:g} (below, tau_n is at the solver's feasibility tolerance); a PEP the solver "
        "could not decide is shown as undecided and never scored."
    )
    for r in rows:
        _score(report, r, n)
    where = [f"{r['rule']} at kappa={r['kappa']:g}" for r in rows]
    unresolved = [
        w for w, r in zip(where, rows, strict=True) if r["pep"] == "proven" and not r["n_step_rate"]
    ]
    if unresolved:
        report.text(
            f"tau_n below {RESOLVED:g}, so not compared with c rho^(2n) (could not decide at the "
            "solver's tolerance): " + "; ".join(unresolved) + "."
        )
    undecided = [w for w, r in zip(where, rows, strict=True) if r["pep"] != "proven"]
    if undecided:
        report.text(
            "PEP undecided (the solver did not reach a verified optimum): "
            + "; ".join(undecided)
            + f". Reason, e.g.: {next(r['pep_reason'] for r in rows if r['pep'] != 'proven')}"
        )
    header = ["kappa", "rule", "PEP", f"tau_{n}", "n-step rate", "IQC rate", "c rho^2n"]
    report.table(
        header,
        [
            [r["kappa"], r["rule"], r["pep"], r["tau"], r["n_step_rate"], r["upper"] or r["iqc"],
             r["bound"]]
            for r in rows
        ],
    )  # fmt: skip
    _figure(report, rows, s)
    report.record(brackets=rows, sdp_seconds=seconds)


def _score(report: Report, r: dict, n: int) -> None:
    """The scored claims on one bracket."""
    at, name, upper = f"kappa={r['kappa']:g}: {r['rule']}", r["rule"], r["upper"]
    value = np.nan if upper is None else upper
    if name == "gd":
        q = r["published"]
        tau = np.nan if r["tau"] is None else r["tau"]
        report.compare(f"{at} PEP tau_{n}", tau, q ** (2 * n), atol=1e-6, label="q^(2n)")
        report.compare(f"{at} IQC rate", value, q, atol=1e-5, label="q = max|1 - a h|")
    elif name == "nesterov":
        report.bound(f"{at} IQC rate <= sqrt(1 - 1/sqrt(kappa))", value, upper=r["published"])
    elif name in ("triple_momentum", "robust_momentum"):
        report.compare(f"{at} IQC rate", value, r["published"], atol=1e-3, label="published")
    if r["n_step_rate"] is None:  # undecided, or tau_n unresolved: nothing to score
        return
    if r["bound"] is not None:
        report.bound(f"{at} PEP tau_{n} <= c rho^(2n)", r["tau"], upper=r["bound"])
    if name == "heavy_ball" and r["iqc"] == "disproven":
        report.bound(f"{at} no certificate; PEP tau_{n} (>= 1: not contracted)", r["tau"], lower=1)


def _figure(report: Report, rows: list, s: Settings) -> None:
    caption = f"IQC rate (upper) and PEP n-step rate (n = {s.n}) against kappa, per rule"
    with report.figure("brackets.png", caption, (11, 4.5)) as fig:
        axes = fig.subplots(1, 2)
        for i, name in enumerate(RULES):
            mine = [r for r in rows if r["rule"] == name]
            k = np.array([r["kappa"] for r in mine])
            upper = np.array([np.nan if r["upper"] is None else r["upper"] for r in mine])
            pep = np.array([np.nan if r["n_step_rate"] is None else r["n_step_rate"] for r in mine])
            axes[0].semilogx(k, 1 - upper, f"C{i}o-", label=f"{name}, IQC (upper)")
            axes[0].semilogx(k, 1 - pep, f"C{i}s--", mfc="none", label=f"{name}, PEP n-step")
            axes[1].semilogx(k, pep / upper, f"C{i}s-", label=name)
        axes[0].set_yscale("symlog", linthresh=1e-3)
        axes[0].set(xlabel="κ", ylabel="1 − rate (higher: faster)")
        axes[0].set_title("Bracket (missing: no certificate, undecided or unresolved)")
        axes[0].legend(fontsize=6, ncol=2)
        axes[1].axhline(1, color="k", lw=0.6)
        axes[1].set(xlabel="κ", ylabel="PEP n-step rate / IQC rate")
        axes[1].legend(fontsize=7)

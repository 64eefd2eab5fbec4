"""Three outcomes, never two: proven, disproven or undecided, and never a wrong verdict.

Checked over kappa = 2 ... 1e8 and step sizes 1e-12 ... 1e3 against closed forms: gradient
descent's rate over S(mu, L), max(|1 - a mu|, |1 - a L|) (the sector IQC is exact for it, so
a certificate exists whenever that is < 1, LRP 2016 §4.4), the stability limits 2/a (SGD),
(2 + 2 beta)/a (heavy ball), (2 + 2 beta)/((1 + 2 beta) a) (Nesterov) from Jury's criterion,
and the poles of SGD and heavy ball computed in 50-digit arithmetic (mpmath). Each answer must be
right or undecided with a reason; the well-posed part of each range must be decided.
"""

from __future__ import annotations

import json
import warnings

import mpmath
import numpy as np
import optax
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers
from gdyn_jax.linearize import Decision, Outcome, UndecidedError
from gdyn_jax.linearize.robust import IQCS, LMI_RTOL

KAPPAS = (2.0, 1e2, 1e4, 1e6, 1e8)
STEP_SIZES = (1e-12, 1e-9, 1e-6, 1e-3, 1.0, 1e3)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_vocabulary():
    assert [o.value for o in Outcome] == ["proven", "disproven", "undecided"]
    assert Outcome.PROVEN.decided and Outcome.DISPROVEN.decided and not Outcome.UNDECIDED.decided
    decision = Decision("undecided", "the solver failed")
    assert decision.outcome is Outcome.UNDECIDED and not decision.decided
    assert json.dumps(decision.to_dict()) == (
        '{"outcome": "undecided", "reason": "the solver failed"}'
    )
    error = UndecidedError("beyond float64")
    assert isinstance(error, ArithmeticError) and error.reason == "beyond float64"


# ------------------------------------------------------------------ certified rates


def _check_rate(result, exact: float) -> Outcome:
    """``result`` of gradient descent is right or undecided; returns its outcome."""
    assert result.reason and "\n" not in result.reason
    if result.outcome is Outcome.PROVEN:
        assert result.rate < 1.0
        assert result.rate >= exact * (1 - 1e-12)  # no certificate beats the truth
        assert result.lmi_residual() <= LMI_RTOL
    else:
        assert result.rate is None and result.P is None
        if result.outcome is Outcome.DISPROVEN:
            assert exact >= 1.0, result.reason  # the sector IQC certifies exact < 1
    return result.outcome


@pytest.mark.parametrize("iqc", IQCS)
def test_gradient_descent_any_step_any_kappa_never_wrong(iqc):
    outcomes = {}
    for kappa in KAPPAS:
        for a in STEP_SIZES:
            exact = max(abs(1 - a), abs(1 - a * kappa))
            result = lz.robust_rate(optimizers.sgd(a), 1.0, kappa, iqc=iqc)
            outcomes[kappa, a] = _check_rate(result, exact)
            if exact > 1.0 + 1e-6:  # diverges on a quadratic of the class: decided
                assert outcomes[kappa, a] is Outcome.DISPROVEN
            if exact < 1.0 - 1e-5:  # a rate float64 resolves: decided
                assert outcomes[kappa, a] is Outcome.PROVEN, (kappa, a, result.reason)
    assert list(outcomes.values()).count(Outcome.PROVEN) >= 5


@pytest.mark.parametrize("iqc", IQCS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_tuned_gradient_descent_certified_at_every_kappa(kappa, iqc):
    """a = 2/(L + mu): rate (kappa - 1)/(kappa + 1). The solver failed from kappa = 1e5 on
    (status solver_error, and a spurious infeasibility at 1e6); the normalised problem
    certifies it within 10% of the closed form, in iterations, up to 1e8."""
    exact = (kappa - 1) / (kappa + 1)
    tol = min(1e-2, 1e-3 * (1 - exact))
    result = lz.robust_rate(optimizers.sgd(2 / (1 + kappa)), 1.0, kappa, iqc=iqc, tol=tol)
    assert _check_rate(result, exact) is Outcome.PROVEN, result.reason
    assert np.log(exact) / np.log(result.rate) <= 1.1
    assert result.normalised == (kappa >= 1e5)


def test_the_docstring_example_at_large_kappa_with_default_tolerance():
    kappa = 1e5
    result = lz.robust_rate(optimizers.sgd(2 / (1 + kappa)), 1.0, kappa)
    assert result.outcome is Outcome.PROVEN and "normalised by L" in result.reason
    assert result.rate == pytest.approx((kappa - 1) / (kappa + 1), abs=1e-6)


def _polyak(kappa):
    sk = np.sqrt(kappa)
    return optimizers.momentum(4 / (sk + 1) ** 2, ((sk - 1) / (sk + 1)) ** 2)


@pytest.mark.parametrize("iqc", IQCS)
def test_heavy_ball_past_its_threshold_is_never_certified(iqc):
    """Polyak's heavy ball has no certificate past kappa ~ 18 (LRP 2016 §4.6; it cycles on a
    piecewise quadratic at kappa = 25): disproven by a verified dual certificate while its
    margin is above rounding, undecided beyond, never proven."""
    for kappa in (25.0, 1e2, 1e3, 1e4, 1e6, 1e8):
        result = lz.robust_rate(_polyak(kappa), 1.0, kappa, iqc=iqc)
        assert result.outcome is not Outcome.PROVEN and result.rate is None
        if kappa <= 1e3:
            assert result.outcome is Outcome.DISPROVEN, result.reason
            assert "dual certificate verified" in result.reason
        else:
            assert result.reason


def test_triple_momentum_is_never_disproven_with_the_off_by_one_iqc():
    """Van Scoy et al. (2018) prove 1 - 1/sqrt(kappa) with the weighted off-by-one IQC: proven
    (never below that rate) or undecided, at every kappa."""
    for kappa in KAPPAS:
        result = lz.robust_rate(optimizers.triple_momentum(1.0, kappa), 1.0, kappa)
        assert result.outcome is not Outcome.DISPROVEN, result.reason
        if result.outcome is Outcome.PROVEN:
            assert result.rate >= 1 - 1 / np.sqrt(kappa) - 1e-12
    assert lz.robust_rate(optimizers.triple_momentum(1.0, 100.0), 1.0, 100.0).outcome == "proven"


def test_grid_outcomes_tell_no_certificate_from_undecided():
    grid = {"learning_rate": np.array([1e-12, 0.1, 0.25])}
    result = lz.robust_rate_grid(optimizers.sgd, grid, 1.0, 10.0, iqc="sector")
    assert list(result.outcome) == ["undecided", "proven", "disproven"]
    assert np.isnan(result.rate[[0, 2]]).all() and result.rate[1] == pytest.approx(0.9, abs=1e-5)


# ------------------------------------------------------------------ stability limits


def _limit_cases():
    for a in STEP_SIZES:
        yield pytest.param(optimizers.sgd(a), 2 / a, id=f"sgd-{a:g}")
        for beta in (0.9,):
            hb, nag = (2 + 2 * beta) / a, (2 + 2 * beta) / ((1 + 2 * beta) * a)
            yield pytest.param(optimizers.momentum(a, beta), hb, id=f"momentum-{a:g}-{beta}")
            yield pytest.param(optimizers.nesterov(a, beta), nag, id=f"nesterov-{a:g}-{beta}")


@pytest.mark.parametrize(("opt", "expected"), list(_limit_cases()))
def test_stability_limit_closed_forms_over_step_sizes(opt, expected):
    """Decided and right from a = 1e-12 (limit 2e12, past the first search's 1e12: it said
    'no limit') to a = 1e3."""
    limit = lz.stability_limit(opt)
    assert limit.outcome is Outcome.PROVEN, limit.reason
    assert limit.value == pytest.approx(expected, rel=1e-9)
    lo, hi = limit.bracket
    assert lo == limit.value < hi <= lo * (1 + 1e-12)
    assert lz.max_stable_curvature(opt) == limit.value


def test_a_limit_beyond_float64_is_undecided_not_infinite():
    limit = lz.stability_limit(optimizers.sgd(1e-300))  # 2e300: past the widest search
    assert limit.outcome is Outcome.UNDECIDED and np.isnan(limit.value)
    assert "the limit is above" in limit.reason
    with pytest.raises(UndecidedError, match="^max_stable_curvature: could not decide: stable"):
        lz.max_stable_curvature(optimizers.sgd(1e-300))


def test_a_search_range_below_the_limit_is_undecided():
    limit = lz.stability_limit(optimizers.sgd(0.1), lower=1.0, upper=10.0)  # limit 20
    assert limit.outcome is Outcome.UNDECIDED and limit.searched == (1.0, 10.0)
    with pytest.raises(UndecidedError, match="to the end of the search, 10"):
        lz.max_stable_curvature(optimizers.sgd(0.1), lower=1.0, upper=10.0)


def test_no_stable_curvature_is_disproven():
    limit = lz.stability_limit(optimizers.sgd(0.0))  # theta' = theta: marginal at every h
    assert limit.outcome is Outcome.DISPROVEN and limit.value == 0.0
    assert "does not depend on h" in limit.reason
    assert lz.max_stable_curvature(optimizers.sgd(0.0)) == 0.0
    ascent = optax.sgd(-0.1)  # optax takes a negative step: unstable at every curvature
    assert lz.stability_limit(ascent).outcome is Outcome.DISPROVEN


def test_per_step_limits_of_a_schedule_spanning_fifteen_decades():
    """SGD under a schedule whose step goes from 1e-12 to 1e3: the frozen limits 2/a_t, each
    decided on its own scale."""
    lrs = np.array([1e-12, 1e-7, 1e-2, 1e3])
    schedule = optax.piecewise_constant_schedule(1e-12, {1: 1e5, 2: 1e5, 3: 1e5})
    limits = lz.max_stable_curvature(optimizers.sgd(schedule), steps=4)
    np.testing.assert_allclose(limits, 2 / lrs, rtol=1e-9)


# ------------------------------------------------------------------ the stability verdict


def _sgd_radius(a: float, h: float) -> mpmath.mpf:
    with mpmath.workdps(50):
        return abs(1 - mpmath.mpf(a) * mpmath.mpf(h))


def _heavy_ball_radius(a: float, beta: float, h: float) -> mpmath.mpf:
    """Largest root modulus of z^2 - (1 + beta - a h) z + beta, in closed form."""
    with mpmath.workdps(50):
        a, beta, h = mpmath.mpf(a), mpmath.mpf(beta), mpmath.mpf(h)
        t = 1 + beta - a * h
        s = mpmath.sqrt(mpmath.mpc(t * t - 4 * beta))
        return max(abs((t + s) / 2), abs((t - s) / 2))


def _check_verdict(decision, rho_true) -> Outcome:
    if decision.outcome is Outcome.PROVEN:
        assert rho_true < 1, decision.reason
    elif decision.outcome is Outcome.DISPROVEN:
        assert rho_true >= 1, decision.reason
    else:  # undecided only where float64 cannot resolve the distance to 1
        assert abs(rho_true - 1) < 1e-9, decision.reason
    return decision.outcome


def test_stability_verdict_against_fifty_digit_poles():
    outcomes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a in STEP_SIZES:
            for h in (1e-12, 1e-6, 1.0, 1.999 / a, 2.0 / a, 2.001 / a, 1e6, 1e12):
                system = lz.linearize(optimizers.sgd(a), h)
                outcomes.append(_check_verdict(lz.decide_stable(system), _sgd_radius(a, h)))
                for beta in (0.5, 0.9):
                    system = lz.linearize(optimizers.momentum(a, beta), h)
                    rho = _heavy_ball_radius(a, beta, h)
                    outcomes.append(_check_verdict(lz.decide_stable(system), rho))
    assert sum(o is Outcome.UNDECIDED for o in outcomes) <= 0.2 * len(outcomes)


def test_a_pole_stored_as_one_is_undecided_not_unstable():
    system = lz.linearize(optimizers.sgd(1e-20), 1.0)  # the pole 1 - 1e-20 is 1.0 in float64
    assert lz.spectral_radius(system) == 1.0 and not lz.is_stable(system)
    decision = lz.decide_stable(system)
    assert decision.outcome is Outcome.UNDECIDED and "within its rounding" in decision.reason

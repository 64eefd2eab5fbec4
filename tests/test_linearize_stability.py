"""Stability limits, grids, root loci and optimal tuning against closed forms and control."""

from __future__ import annotations

import control as ct
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdyn_jax import linearize, optimizers


def _char_roots(coeffs):
    return np.sort_complex(np.roots(coeffs))


@pytest.mark.parametrize("a,beta", [(0.1, 0.9), (0.7, 0.0), (3.0, 0.5)])
def test_max_stable_curvature_closed_forms(a, beta):
    # Jury's criterion on z^2 - (1 + beta - a h) z + beta (heavy ball) gives a h < 2 + 2 beta;
    # on z^2 - (1+beta)(1-ah) z + beta(1-ah) (Nesterov) gives a h < (2+2beta)/(1+2beta).
    cases = [
        (optimizers.sgd(a), 2.0 / a),
        (optimizers.momentum(a, beta), (2 + 2 * beta) / a),
        (optimizers.nesterov(a, beta), (2 + 2 * beta) / ((1 + 2 * beta) * a)),
        (optimizers.ema_momentum(a, beta), (2 + 2 * beta) / ((1 - beta) * a)),
    ]
    for opt, expected in cases:
        assert linearize.max_stable_curvature(opt) == pytest.approx(expected, rel=1e-9)


def test_max_stable_curvature_is_the_pole_crossing():
    opt = optimizers.pid(0.05, 0.8, 0.5, 0.5)
    h_max = linearize.max_stable_curvature(opt)
    below = linearize.spectral_radius(linearize.linearize(opt, h_max * (1 - 1e-7)))
    above = linearize.spectral_radius(linearize.linearize(opt, h_max * (1 + 1e-7)))
    assert below < 1.0 < above


def test_spectral_radius_and_poles_match_control():
    rng = np.random.default_rng(1)
    for _ in range(25):
        a, beta, h = rng.uniform(0.05, 1.0), rng.uniform(0, 0.99), rng.uniform(0.1, 5)
        system = linearize.linearize(optimizers.momentum(a, beta), h)
        sys_ct = ct.tf([a * h, 0], [1, -(1 + beta - a * h), beta], dt=1)
        poles = linearize.transfer_function(system).poles()
        np.testing.assert_allclose(
            np.sort_complex(poles), np.sort_complex(sys_ct.poles()), atol=1e-10
        )
        assert linearize.spectral_radius(system) == pytest.approx(
            np.max(np.abs(sys_ct.poles())), rel=1e-9
        )
        assert linearize.is_stable(system) == bool(np.max(np.abs(sys_ct.poles())) < 1)


@pytest.fixture(scope="module")
def hb_grid():
    lrs = np.linspace(0.01, 4.5, 30)
    betas = np.linspace(0.0, 0.99, 20)
    return lrs, betas


def test_convergence_rate_grid_matches_roots(hb_grid):
    lrs, betas = hb_grid
    eig = [0.5, 1.0]
    rates = linearize.convergence_rate(
        optimizers.momentum, {"learning_rate": lrs, "beta": betas}, eig
    )
    assert rates.shape == (30, 20)
    for i in range(0, 30, 7):
        for j in range(0, 20, 6):
            a, b = lrs[i], betas[j]
            expected = max(np.max(np.abs(np.roots([1, -(1 + b - a * h), b]))) for h in eig)
            assert rates[i, j] == pytest.approx(expected, rel=1e-7, abs=1e-9)
    region = linearize.stability_region(
        optimizers.momentum, {"learning_rate": lrs, "beta": betas}, np.diag(eig)
    )
    np.testing.assert_array_equal(region, rates < 1.0)
    # the boundary is a h = 2 + 2 beta at the largest eigenvalue
    boundary = lrs[:, None] * 1.0 < 2 + 2 * betas[None, :]
    far = np.abs(lrs[:, None] - (2 + 2 * betas[None, :])) > 0.05
    np.testing.assert_array_equal(region[far], boundary[far])


def test_root_locus_matches_control_root_locus_map():
    beta, h = 0.8, 1.5
    gains = np.linspace(0.01, 3.0, 25)
    ours = linearize.root_locus(optimizers.momentum, "learning_rate", gains, h, beta=beta)
    # negative feedback of the plant h z / (z^2 - (1 + beta) z + beta) with gain a
    loop = ct.tf([h, 0], [1, -(1 + beta), beta], dt=1)
    theirs = ct.root_locus_map(loop, gains).loci
    for row, other in zip(ours, theirs, strict=True):
        dist = np.abs(row[:, None] - other[None, :])
        assert np.max(np.min(dist, axis=1)) < 1e-7 and np.max(np.min(dist, axis=0)) < 1e-7


def test_polyak_heavy_ball_and_gd_optimum():
    mu, L = 1.0, 100.0
    kappa = L / mu
    hp, rate = linearize.optimal_hyperparameters(optimizers.momentum, mu, L)
    # Polyak (1964); Lessard et al. 2016 Prop. 1; Goh 2017: complex poles of modulus sqrt(beta)
    # for all h in [mu, L] once (1 - sqrt(beta))^2 <= a mu and a L <= (1 + sqrt(beta))^2.
    sqrt_beta = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    a_star = ((1 + sqrt_beta) ** 2) / L
    assert a_star == pytest.approx(4 / (np.sqrt(L) + np.sqrt(mu)) ** 2)
    assert rate == pytest.approx(sqrt_beta, rel=1e-6)
    assert hp["beta"] == pytest.approx(sqrt_beta**2, rel=1e-5)
    assert hp["learning_rate"] == pytest.approx(a_star, rel=1e-5)
    hp, rate = linearize.optimal_hyperparameters(optimizers.sgd, mu, L, names=("learning_rate",))
    # GD: max(|1 - a mu|, |1 - a L|) is minimised where both are equal: a = 2 / (mu + L)
    assert hp["learning_rate"] == pytest.approx(2 / (mu + L), rel=1e-6)
    assert rate == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-7)


def test_grid_errors_name_the_argument():
    with pytest.raises(ValueError, match="^grid"):
        linearize.convergence_rate(optimizers.sgd, {}, [1.0])
    with pytest.raises(ValueError, match="^eigenvalues"):
        linearize.convergence_rate(optimizers.sgd, {"learning_rate": [0.1]}, [-1.0])
    with pytest.raises(ValueError, match="^mu"):
        linearize.optimal_hyperparameters(optimizers.sgd, 0.0, 1.0, names=("learning_rate",))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["sgd", "momentum", "ema_momentum", "nesterov", "pid"]),
    a=st.floats(1e-6, 1e3),
    beta=st.floats(0.0, 0.999),
    h=st.floats(1e-6, 1e6),
)
def test_hypothesis_hyperparameters_never_crash(name, a, beta, h):
    hp = {"learning_rate": a} if name == "sgd" else {"learning_rate": a, "beta": beta}
    system = linearize.linearize(optimizers.get(name)(**hp), h)
    assert system.exact
    tf = linearize.transfer_function(system)
    assert np.all(np.isfinite(tf.num)) and np.all(np.isfinite(tf.den))
    info = linearize.step_info(system, 50)
    stable = linearize.is_stable(system)
    assert info["Stable"] == stable
    if not stable:
        assert np.isnan(info["SettlingTime"])
    assert np.isfinite(linearize.spectral_radius(system))


def test_affine_limits_match_the_closed_forms_of_gd_and_heavy_ball():
    """affine_limits on a batch of loops A0 + hD: gradient descent 1 - eta h ends its stable
    interval at 2/eta, heavy ball on (theta_t, theta_t-1) at (2 + 2 beta)/eta (Polyak)."""
    from gdyn_jax.linearize.limit import affine_limits

    etas = np.array([1e-3, 0.1, 3.0])
    gd = affine_limits(np.ones((3, 1, 1)), -etas[:, None, None])
    np.testing.assert_allclose(gd, 2 / etas, rtol=1e-9)
    beta = 0.9
    A0 = np.broadcast_to(np.array([[1 + beta, -beta], [1.0, 0.0]]), (3, 2, 2))
    D = np.zeros((3, 2, 2))
    D[:, 0, 0] = -etas
    np.testing.assert_allclose(affine_limits(A0, D), (2 + 2 * beta) / etas, rtol=1e-9)
    assert affine_limits(0.5 * np.eye(1), np.zeros((1, 1))) == np.inf  # never unstable
    # a rate of 0 (a warm-up's first step): the loop is the identity at every curvature
    assert affine_limits(np.eye(2), np.zeros((2, 2))) == np.inf
    assert affine_limits(2 * np.eye(1), np.zeros((1, 1))) == 0.0  # unstable at every curvature
    assert affine_limits(np.zeros((0, 2, 2)), np.zeros((0, 2, 2))).shape == (0,)

"""optimizers.robust_momentum against a numpy run of the published recursion (Cyrus, Hu, Van
Scoy, Lessard, ACC 2018) and its published rate, certified by the IQC side."""

import jax
import numpy as np
import optax
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers


def _published_run(H, x0, mu, L, lam, steps):
    """x_{k+1} = x_k + beta (x_k - x_{k-1}) - alpha grad f(y_k), y_k = x_k + gamma (x_k - x_{k-1}),
    x_{-1} = x_0, on f = 1/2 x^T H x (parameters typed from the paper, in float64)."""
    kappa = L / mu
    rho = lam * (1 - 1 / kappa) + (1 - lam) * (1 - 1 / np.sqrt(kappa))
    alpha = kappa * (1 - rho) ** 2 * (1 + rho) / L
    beta = kappa * rho**3 / (kappa - 1)
    gamma = rho**3 / ((kappa - 1) * (1 - rho) ** 2 * (1 + rho))
    x_old, x, ys = x0, x0, []
    for _ in range(steps):
        y = x + gamma * (x - x_old)
        ys.append(y)
        x_old, x = x, x + beta * (x - x_old) - alpha * (H @ y)
    return np.array(ys), x


@pytest.mark.parametrize("lam", [0.0, 0.2, 1.0])
def test_matches_the_published_recursion(lam):
    mu, L = 0.5, 4.0
    H = np.diag([0.5, 1.3, 4.0])
    x0 = np.array([1.0, -2.0, 0.5])
    ys, x_last = _published_run(H, x0, mu, L, lam, 25)
    with jax.enable_x64():
        opt = optimizers.robust_momentum(mu, L, lam)
        params = jax.numpy.asarray(x0)
        state = opt.init(params)
        for k in range(25):
            np.testing.assert_allclose(params, ys[k], rtol=1e-10, atol=1e-12)
            updates, state = opt.update(H @ params, state, params)
            params = optax.apply_updates(params, updates)
        x = optimizers.robust_momentum_output(params, state, mu, L, lam)
    np.testing.assert_allclose(x, x_last, rtol=1e-10, atol=1e-12)


def test_state_is_the_velocity_only_no_stuck_pole():
    opt = optimizers.robust_momentum(0.1, 1.0, 0.5)
    system = lz.linearize(opt, 0.5)
    assert system.exact and system.A.shape == (2, 2)  # parameter and velocity
    A, B, C = lz.iqc.open_loop_matrices(opt)
    assert np.sum(np.isclose(np.abs(np.linalg.eigvals(A)), 1.0)) == 1  # the integrator only
    assert optimizers.get("robust_momentum") is optimizers.robust_momentum


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5, 1.0])
def test_iqc_certifies_the_published_rate(lam):
    pytest.importorskip("cvxpy")
    mu, L = 0.1, 1.0  # kappa = 10
    kappa = L / mu
    rho = lam * (1 - 1 / kappa) + (1 - lam) * (1 - 1 / np.sqrt(kappa))
    r = lz.robust_rate(optimizers.robust_momentum(mu, L, lam), mu, L)
    assert r.outcome is lz.Outcome.PROVEN, r.reason
    assert r.rate == pytest.approx(rho, abs=1e-3)


@pytest.mark.parametrize(
    ("args", "word"),
    [((0.0, 1.0, 0.5), "mu"), ((1.0, 1.0, 0.5), "L"), ((0.1, 1.0, 1.5), "lam")],
)
def test_bad_input(args, word):
    with pytest.raises(ValueError, match=rf"^{word}"):
        optimizers.robust_momentum(*args)

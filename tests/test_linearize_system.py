"""The closed loop itself: input checks, bookkeeping state, exactness, the noise floor."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import linearize, optimizers
from gdyn_jax.linearize import grid as grid_module
from gdyn_jax.linearize import system as system_module


@pytest.mark.parametrize(
    "bad",
    [
        0.0,
        -1.0,
        float("nan"),
        float("inf"),
        [[1.0, 2.0], [0.0, 1.0]],
        [[1.0, 0.0]],
        [[-1.0, 0.0], [0.0, 1.0]],
        "abc",
        np.ones((2, 2, 2)),
    ],
)
def test_bad_hessian_names_the_argument(bad):
    with pytest.raises(ValueError, match="^hessian"):
        linearize.linearize(optimizers.sgd(0.1), bad)


def test_state_space_layout_for_heavy_ball():
    a, beta, h = 0.1, 0.9, 2.0
    system = linearize.linearize(optimizers.momentum(a, beta), h)
    # theta' = theta - a (beta v + h (theta - r)), v' = beta v + h (theta - r) + w
    np.testing.assert_allclose(system.A, [[1 - a * h, -a * beta], [h, beta]], atol=1e-15)
    np.testing.assert_allclose(system.B, [[a * h, -a], [-h, 1.0]], atol=1e-15)
    np.testing.assert_array_equal(system.C, [[1.0, 0.0]])
    np.testing.assert_array_equal(system.D, [[0.0, 0.0]])
    assert system.A.dtype == np.float64 and system.inputs == ("reference", "noise")
    np.testing.assert_allclose(np.poly(system.A), [1.0, -1.7, 0.9], atol=1e-14)


def test_bookkeeping_is_held_fixed():
    # inject_hyperparams stores lr/momentum as float leaves with identity dynamics, plus a
    # count: none of them may show up as a pole at z = 1.
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    system = linearize.linearize(injected, 2.0)
    assert system.A.shape == (2, 2) and system.exact
    np.testing.assert_allclose(np.poly(system.A), [1.0, -1.7, 0.9], atol=1e-14)
    adam = linearize.linearize(optax.adam(0.01), 1.0)
    assert adam.A.shape == (3, 3)  # theta, mu, nu; the int32 count is bookkeeping
    state = optax.inject_hyperparams(optax.adam)(learning_rate=0.01).init(jnp.zeros(1))
    assert sum(jax.tree.leaves(optimizers.dynamic_state_mask(state))) == 2


@pytest.mark.parametrize(
    "opt",
    [optimizers.adam(0.01), optimizers.rmsprop(0.01), optimizers.adagrad(0.1), optax.adam(0.1)],
)
def test_non_affine_rules_are_not_exact(opt):
    system = linearize.linearize(opt, 1.0)
    assert system.exact is False
    assert np.all(np.isfinite(system.A))


def test_affine_rules_are_exact_also_from_optax():
    for opt in [
        optax.sgd(0.1),
        optax.sgd(0.1, momentum=0.5, nesterov=True),
        optimizers.pid(0.1),
        optimizers.ema_momentum(0.2, 0.3),
    ]:
        assert linearize.linearize(opt, np.diag([1.0, 3.0])).exact is True


def test_linearisation_point_of_adam_matches_a_finite_difference():
    opt = optimizers.adam(0.05)
    params = jnp.array([0.3])
    state = opt.init(params)
    _, state = opt.update(jnp.array([0.7]), state, params)
    system = linearize.linearize(opt, 1.5, params=params, state=state, reference=jnp.array([1.0]))

    def step(theta):
        with jax.enable_x64(True):
            u, _ = opt.update(1.5 * (theta - 1.0), state, theta)
            return theta + u

    with jax.enable_x64(True):
        eps = 1e-6
        fd = (step(jnp.array([0.3 + eps])) - step(jnp.array([0.3 - eps]))) / (2 * eps)
    assert system.A[0, 0] == pytest.approx(float(fd[0]), rel=1e-5)


def test_stationary_covariance_matches_monte_carlo():
    hessian = np.diag([1.0, 4.0])
    a, beta, sigma = 0.05, 0.8, 0.3
    opt = optimizers.momentum(a, beta)
    system = linearize.linearize(opt, hessian)
    cov = linearize.stationary_covariance(system, sigma**2)
    excess = linearize.stationary_excess_loss(system, sigma**2)
    h = jnp.asarray(np.diag(hessian), jnp.float32)

    def run(key):
        def step(carry, k):
            theta, state = carry
            g = h * theta + sigma * jax.random.normal(k, (2,))
            u, state = opt.update(g, state, theta)
            return (theta + u, state), theta + u

        theta0 = jnp.zeros(2)
        keys = jax.random.split(key, 1500)
        _, thetas = jax.lax.scan(step, (theta0, opt.init(theta0)), keys)
        return thetas[500:]

    samples = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 256))
    samples = np.asarray(samples, np.float64).reshape(-1, 2)
    mc = samples.T @ samples / samples.shape[0]
    np.testing.assert_allclose(np.diag(mc), np.diag(cov), rtol=0.05)
    assert abs(mc[0, 1]) < 0.05 * np.sqrt(cov[0, 0] * cov[1, 1]) and abs(cov[0, 1]) < 1e-15
    assert excess == pytest.approx(0.5 * np.trace(hessian @ mc), rel=0.05)


def test_stationary_covariance_sgd_closed_form():
    # theta' = (1 - a h) theta - a w  =>  var = a^2 s^2 / (1 - (1 - a h)^2)
    a, h, s2 = 0.1, 3.0, 0.5
    cov = linearize.stationary_covariance(linearize.linearize(optimizers.sgd(a), h), s2)
    assert cov[0, 0] == pytest.approx(a**2 * s2 / (1 - (1 - a * h) ** 2), rel=1e-12)
    unstable = linearize.linearize(optimizers.sgd(1.0), 3.0)
    assert np.all(np.isinf(linearize.stationary_covariance(unstable, s2)))
    with pytest.raises(ValueError, match="^noise_cov"):
        linearize.stationary_covariance(unstable, -1.0)


def test_grid_functions_moved_to_grid_keep_their_old_path_one_release():
    with pytest.warns(DeprecationWarning, match="gdyn_jax.linearize.grid.grid_proof"):
        assert system_module.grid_proof is grid_module.grid_proof
    assert linearize.linearize_grid is grid_module.linearize_grid

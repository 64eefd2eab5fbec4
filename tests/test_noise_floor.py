"""gdyn_jax.measurements.noise and gdyn_jax.predictions.noise_floor against independent
references: every minibatch enumerated, and a Monte Carlo of minibatch SGD / heavy ball on a
quadratic with additive noise against the Lyapunov floor of linearize.stationary_covariance."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdyn_jax import linearize, measurements, optimizers, predictions


def test_projected_gradient_noise_equals_the_variance_over_every_minibatch():
    rng = np.random.default_rng(0)
    x, y, theta = rng.normal(size=(7, 3)), rng.normal(size=7), rng.normal(size=3)
    q = rng.normal(size=3)
    q /= np.linalg.norm(q)
    with jax.enable_x64(True):
        mean, variance = measurements.projected_gradient_noise(
            lambda t: 0.5 * (jnp.asarray(x) @ t - y) ** 2, jnp.asarray(theta), q, 3
        )
        mean, variance = float(mean), float(variance)
    d = ((x @ theta - y)[:, None] * x) @ q  # q . grad of each example's loss, by hand
    batches = [d[list(b)].mean() for b in itertools.combinations(range(7), 3)]
    np.testing.assert_allclose(mean, d.mean(), rtol=1e-12)
    np.testing.assert_allclose(variance, np.mean((np.array(batches) - d.mean()) ** 2), rtol=1e-10)
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer in \[1, 7\]"):
        measurements.projected_gradient_noise(lambda t: (jnp.asarray(x) @ t) ** 2, theta, q, 8)


@pytest.mark.parametrize(
    ("factory", "hp"),
    [
        (optimizers.sgd, {"learning_rate": 0.3}),
        (optimizers.momentum, {"learning_rate": 0.05, "beta": 0.8}),
    ],
    ids=["sgd", "momentum"],
)
def test_ensemble_variance_reaches_the_stationary_covariance(factory, hp):
    rng = np.random.default_rng(1)
    n, dim, b = 64, 4, 8
    h = np.diag([3.0, 1.0, 0.5, 0.2])
    xi = rng.normal(size=(n, dim))
    xi -= xi.mean(0)  # the full-batch gradient is H theta; example i adds -xi_i
    with jax.enable_x64(True):

        def example_losses(t, idx=slice(None)):
            return 0.5 * t @ (jnp.asarray(h) @ t) - jnp.asarray(xi)[idx] @ t

        q = np.eye(dim)[0]
        _, sigma2 = measurements.projected_gradient_noise(example_losses, jnp.zeros(dim), q, b)
        mean, variance = measurements.noise_ensemble(
            lambda t, idx: jnp.mean(example_losses(t, idx)),
            jnp.zeros(dim),
            factory(**hp),
            q,
            n,
            b,
            150,
            400,
            jax.random.key(0),
        )
        mean, variance, sigma2 = np.asarray(mean), np.asarray(variance), float(sigma2)
    floor = linearize.stationary_covariance(linearize.linearize(factory(**hp), h[0, 0]), sigma2)
    np.testing.assert_allclose(np.mean(variance[100:]), floor[0, 0], rtol=0.1)
    assert variance[0] == 0 and np.all(np.abs(mean[100:]) < 5 * np.sqrt(floor[0, 0] / 400))


def test_floor_test_finds_the_top_direction_and_its_floor():
    rng = np.random.default_rng(2)
    n, dim = 64, 4
    h = np.diag([0.2, 3.0, 1.0, 0.5])  # the top direction is the second coordinate
    xi = rng.normal(size=(n, dim))
    xi -= xi.mean(0)
    with jax.enable_x64(True):

        def example_losses(t, data):
            return 0.5 * t @ (jnp.asarray(h) @ t) - data @ t

        def batch_loss(t, data, idx):
            return jnp.mean(example_losses(t, data[idx]))

        kwargs = {"batch_size": 8, "steps": 120, "runs": 400, "key": jax.random.key(3)}
        test = predictions.floor_test(
            batch_loss,
            example_losses,
            jnp.zeros(dim),
            jnp.asarray(xi),
            optimizers.sgd,
            {"learning_rate": 0.3},
            lanczos_iters=4,
            **kwargs,
        )
    sigma2 = np.mean((xi[:, 1] - 0) ** 2) / 8 * (n - 8) / (n - 1)  # every batch mean, exactly
    assert test.curvature == pytest.approx(3.0, rel=1e-9)
    assert test.sigma2 == pytest.approx(sigma2, rel=1e-9)
    assert test.predicted == pytest.approx(0.3 * sigma2 / (3.0 * (2 - 0.9)), rel=1e-9)  # Mandt
    assert test.settle == 10 and test.spread.shape == (121,)
    assert abs(test.gradient) < 1e-12  # the runs start at the minimum
    assert test.measured == pytest.approx(test.predicted, rel=0.1)

"""gdyn_jax.measurements.modes and gdyn_jax.predictions.modes against independent references:
the real optax runs on an explicit quadratic, the closed-form responses and pole regions of GD
and heavy ball, numpy's least squares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import linearize, measurements, optimizers, predictions

RULES = [
    (optimizers.sgd, {}),
    (optimizers.momentum, {"beta": 0.5}),
    (optimizers.nesterov, {"beta": 0.9}),
]


def _quadratic(n=6, seed=0):
    """An explicit SPD Hessian, its loss on a parameter pytree and a non-zero minimum."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    h = q @ np.diag(np.geomspace(10.0, 0.5, n)) @ q.T
    star = rng.normal(size=n)

    def loss(p):
        d = jnp.concatenate([p["a"].ravel(), p["b"]]) - star
        return 0.5 * d @ (h @ d)

    params = {"a": jnp.asarray(star[:4].reshape(2, 2)), "b": jnp.asarray(star[4:])}
    return loss, params, h


@pytest.mark.parametrize(("factory", "fixed"), RULES, ids=lambda r: getattr(r, "__name__", ""))
def test_kicks_on_a_quadratic_are_the_predicted_responses(factory, fixed):
    with jax.enable_x64(True):
        loss, params, h = _quadratic()
        values, vectors = np.linalg.eigh(h)
        values, vectors = values[::-1][:3], vectors[:, ::-1][:, :3].T
        lrs = np.array([0.01, 0.15, 0.21])  # top mode damped .. unstable for SGD
        grid = {"learning_rate": lrs} | {k: np.full(3, v) for k, v in fixed.items()}
        measured = np.asarray(
            measurements.kick_responses(loss, params, factory, grid, vectors, 1e-3, 25)
        )
    assert measured.shape == (3, 3, 26)
    for j, lr in enumerate(lrs):
        predicted = predictions.predicted_kick_response(
            factory, values, 26, 1e-3, learning_rate=lr, **fixed
        )
        np.testing.assert_allclose(measured[j], predicted, rtol=1e-8, atol=1e-14)
        assert np.all(measurements.relative_error(measured[j], predicted) < 1e-8)
        if factory is optimizers.sgd:  # the closed form (1 - a lambda)^k
            closed = 1e-3 * (1 - lr * values[:, None]) ** np.arange(26)
            np.testing.assert_allclose(predicted, closed, rtol=1e-10, atol=1e-16)


def test_relative_error_is_the_l2_ratio():
    m, p = np.array([[1.0, 2.0, 2.0]]), np.array([[1.0, 2.0, 0.0]])
    np.testing.assert_allclose(measurements.relative_error(m, p), [2.0 / np.sqrt(5.0)])


def _heavy_ball_region(ah, beta):
    """Goh's regions of heavy ball from z^2 - (1 + beta - ah) z + beta (closed form)."""
    if ah >= 2 + 2 * beta:
        return "unstable"
    if ah > (1 + np.sqrt(beta)) ** 2:
        return "oscillating"
    return "underdamped" if ah > (1 - np.sqrt(beta)) ** 2 else "damped"


def test_regimes_match_the_closed_forms_of_gd_and_heavy_ball():
    ah = np.array([0.05, 0.5, 0.99, 1.01, 1.5, 1.99, 2.01, 3.0, 3.9, 4.1])
    gd = predictions.regimes_of(
        linearize.linearize_grid(optimizers.sgd, {"learning_rate": ah}, 1.0).A
    )
    expected = np.where(ah >= 2, "unstable", np.where(ah > 1, "oscillating", "damped"))
    np.testing.assert_array_equal(gd, expected)
    for beta in (0.3, 0.5, 0.9):
        grid = {"learning_rate": ah}
        hb = linearize.linearize_grid(optimizers.momentum, grid, 1.0, beta=beta)
        expected = [_heavy_ball_region(x, beta) for x in ah]
        np.testing.assert_array_equal(predictions.regimes_of(hb.A), expected)
        system = linearize.linearize(optimizers.momentum(ah[4], beta), 1.0)
        assert predictions.regime(system) == _heavy_ball_region(ah[4], beta)


def test_mode_loops_are_the_scalar_loops():
    loops = predictions.mode_loops(optimizers.momentum, [1.0, 4.0], learning_rate=0.1, beta=0.9)
    assert loops.batch_shape == (2,) and loops.exact
    for i, h in enumerate((1.0, 4.0)):
        one = linearize.linearize(optimizers.momentum(0.1, 0.9), h)
        np.testing.assert_allclose(loops.A[i], one.A, atol=1e-15)
        np.testing.assert_allclose(loops.B[i], one.B, atol=1e-15)


@pytest.mark.parametrize(("factory", "fixed"), RULES, ids=lambda r: getattr(r, "__name__", ""))
def test_regime_learning_rates_put_the_curvature_in_each_regime(factory, fixed):
    h = 7.0
    lrs = predictions.regime_learning_rates(factory, h, growth=100.0, steps=60, **fixed)
    expected = {"damped", "oscillating", "unstable"} | ({"underdamped"} if fixed else set())
    assert set(lrs) == expected
    for name, lr in lrs.items():
        system = linearize.linearize(factory(lr, **fixed), h)
        assert predictions.regime(system) == name
        if factory is optimizers.momentum:
            assert _heavy_ball_region(lr * h, fixed["beta"]) == name
    rho = linearize.spectral_radius(linearize.linearize(factory(lrs["unstable"], **fixed), h))
    assert abs(np.log(rho) * 60 - np.log(100.0)) < 0.1  # grows ~100-fold in 60 steps
    with pytest.raises(ValueError, match="^curvature: expected a finite value > 0"):
        predictions.regime_learning_rates(factory, -1.0, **fixed)


def test_predicted_kick_response_refuses_rules_it_does_not_describe():
    def decayed(learning_rate):
        return optax.chain(optax.add_decayed_weights(0.1), optax.sgd(learning_rate))

    with pytest.raises(ValueError, match="^factory: its update reads the parameters beyond"):
        predictions.predicted_kick_response(decayed, [1.0], 5, learning_rate=0.1)

    def averaged(learning_rate):
        return optax.contrib.schedule_free_sgd(learning_rate)

    with pytest.raises(ValueError, match="^factory: its initial state is not zero"):
        predictions.predicted_kick_response(averaged, [1.0], 5, learning_rate=0.1)


def test_minimize_reaches_the_least_squares_solution():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=30)
    with jax.enable_x64(True):

        def loss(w):
            return 0.5 * jnp.mean((jnp.asarray(x) @ w - y) ** 2)

        w, losses = measurements.minimize(loss, jnp.zeros(5), 50)
    np.testing.assert_allclose(w, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-8)
    assert losses.shape == (50,) and losses[-1] <= losses[0]


def test_kick_test_and_eigen_residuals_on_a_quadratic():
    with jax.enable_x64(True):
        loss, params, h = _quadratic()
        values, vectors = np.linalg.eigh(h)
        values, vectors = values[::-1][:2], vectors[:, ::-1][:, :2].T
        residual = measurements.eigen_residuals(loss, params, values, vectors)
        settings = [{"learning_rate": 0.05, "beta": 0.5}, {"learning_rate": 0.35, "beta": 0.5}]
        tests = predictions.kick_test(
            loss, params, optimizers.momentum, settings, values, vectors, 1e-4, 30
        )
        bent = measurements.eigen_residuals(loss, params, values, vectors + 0.01 * vectors[::-1])
    np.testing.assert_array_less(residual, 1e-13)
    np.testing.assert_allclose(bent, 0.01 * np.abs(values[::-1] - values) / values, rtol=1e-6)
    for t, hp in zip(tests, settings, strict=True):
        assert t.hparams == hp and t.measured.shape == t.predicted.shape == (2, 31)
        np.testing.assert_array_less(t.error, 1e-8)
        expected = [_heavy_ball_region(hp["learning_rate"] * v, 0.5) for v in values]
        np.testing.assert_array_equal(t.regimes, expected)
        np.testing.assert_allclose(t.growth, np.abs(t.predicted[:, -1]), rtol=1e-6, atol=1e-12)
    assert tests[1].regimes[0] == "unstable" and tests[1].growth[0] > 10

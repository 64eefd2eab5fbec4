"""gdyn_jax.measurements.curves and gdyn_jax.predictions.spectral against independent
references: loops written out in plain Python, the real optax trajectories, numpy roots of the
characteristic polynomials."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import optax
import pytest
import xarray as xr

from gdyn_jax import measurements, optimizers, predictions


def _scores():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.2, 0.9, size=(3, 2, 4))  # learning_rate × beta × seed
    values[2, 1, 0] = np.nan  # a diverged member reported as NaN
    values[2, 1, 1:] = 0.99  # the best surviving seeds
    diverged = np.zeros(values.shape, bool)
    diverged[0, 0, 3] = True  # a diverged member whose (stale) score is finite
    values[0, 0, :] = 0.95
    values[1, 0, :] = 0.8  # the best when a diverged member counts as 0
    coords = {"learning_rate": [0.01, 0.1, 1.0], "beta": [0.5, 0.9], "seed": range(4)}
    dims = ("learning_rate", "beta", "seed")
    return xr.DataArray(values, coords, dims), xr.DataArray(diverged, coords, dims)


def _reference_best(values, diverged, fill, maximize):
    best = None
    for i, j in itertools.product(range(values.shape[0]), range(values.shape[1])):
        total = 0.0
        for s in range(values.shape[2]):
            v = values[i, j, s]
            total += fill if (diverged[i, j, s] or not np.isfinite(v)) else v
        mean = total / values.shape[2]
        if best is None or (mean > best[0] if maximize else mean < best[0]):
            best = (mean, i, j)
    return best


@pytest.mark.parametrize(("fill", "maximize"), [(0.0, True), (1.0, True), (2.0, False)])
def test_best_setting_counts_diverged_members(fill, maximize):
    scores, diverged = _scores()
    best = measurements.best_setting(
        scores, diverged=diverged, diverged_score=fill, maximize=maximize
    )
    mean, i, j = _reference_best(scores.values, diverged.values, fill, maximize)
    assert best.index == {"learning_rate": i, "beta": j}
    assert best.setting == {
        "learning_rate": scores.learning_rate.values[i],
        "beta": scores.beta.values[j],
    }
    assert best.score == pytest.approx(mean)
    bad = diverged.values[i, j] | ~np.isfinite(scores.values[i, j])
    assert best.diverged == bad.sum()
    np.testing.assert_array_equal(np.isnan(best.scores), bad)


def test_best_setting_with_zero_for_accuracy_avoids_sometimes_diverging_settings():
    scores, diverged = _scores()
    best = measurements.best_setting(scores, diverged=diverged, diverged_score=0.0)
    # (1.0, 0.9) has the best surviving seeds but one NaN; (0.01, 0.5) one flagged member.
    assert best.setting == {"learning_rate": 0.1, "beta": 0.5}
    transposed = measurements.best_setting(
        scores.transpose("seed", "beta", "learning_rate"),
        diverged=diverged,
        diverged_score=0.0,
    )
    assert transposed.setting == best.setting and transposed.score == best.score
    with pytest.raises(ValueError, match="^seed_dim"):
        measurements.best_setting(scores, diverged_score=0.0, seed_dim="seeds")


def test_steps_to_target_is_the_first_crossing():
    steps = np.arange(0, 60, 10)
    curves = np.array(
        [
            [2.0, 1.5, 0.9, 1.2, 0.5, 0.4],
            [2.0, np.nan, np.nan, np.nan, np.nan, np.nan],
            [2.0, 1.9, 1.8, 1.7, 1.6, 1.5],
        ]
    )

    def reference(curve, below):
        for step, value in zip(steps, curve, strict=True):
            if np.isfinite(value) and (value <= 1.0 if below else value >= 1.0):
                return float(step)
        return np.inf

    for below in (True, False):
        got = measurements.steps_to_target(steps, curves, 1.0, below=below)
        np.testing.assert_array_equal(got, [reference(c, below) for c in curves])
    assert measurements.steps_to_target(steps, curves[0], 1.0) == 20.0
    with pytest.raises(ValueError, match="^curves"):
        measurements.steps_to_target(steps, curves[:, :3], 1.0)


def _run(opt, h, steps):
    """||theta_k|| of the real optax trajectory on f = 1/2 sum h theta^2 from theta = 1."""
    with jax.enable_x64(True):
        theta = jax.numpy.ones(len(h))
        state, norms = opt.init(theta), [1.0 * np.sqrt(len(h))]
        for _ in range(steps):
            updates, state = opt.update(jax.numpy.asarray(h) * theta, state, theta)
            theta = optax.apply_updates(theta, updates)
            norms.append(float(jax.numpy.linalg.norm(theta)))
    return np.asarray(norms)


def test_tail_rate_of_geometric_sequences_and_real_runs():
    k = np.arange(200)
    np.testing.assert_allclose(measurements.tail_rate(3.0 * 0.9**k), 0.9, rtol=1e-12)
    mixed = 0.95**k + 5.0 * 0.5**k  # the slower mode wins the tail
    np.testing.assert_allclose(measurements.tail_rate(mixed, skip=50), 0.95, rtol=1e-6)
    h, a, beta = np.array([1.0, 0.1]), 0.5, 0.6
    errors = _run(optimizers.momentum(a, beta), h, 400)
    radius = max(np.max(np.abs(np.roots([1.0, -(1 + beta - a * hi), beta]))) for hi in h)
    np.testing.assert_allclose(measurements.tail_rate(errors, skip=20), radius, rtol=5e-3)
    with pytest.raises(ValueError, match="^errors"):
        measurements.tail_rate([0.0, 1.0])


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ([5.0, 4.0, 3.0, 2.0], 0.0),  # monotone
        ([10.0, 4.0, 6.0, 2.0], 25.0),  # rebound 2 over a descent of 8
        ([1.0, 2.0, 3.0], 0.0),  # never descends
        ([3.0, np.nan, 1.0], np.inf),  # diverged
    ],
)
def test_curve_overshoot(curve, expected):
    assert measurements.curve_overshoot(curve) == expected


@pytest.mark.parametrize(
    ("factory", "hparams"),
    [
        (optimizers.sgd, {"learning_rate": [0.1, 0.5]}),
        (optimizers.momentum, {"learning_rate": [0.05, 0.3], "beta": [0.5, 0.9]}),
        (optimizers.nesterov, {"learning_rate": [0.2], "beta": [0.9]}),
    ],
)
def test_quadratic_model_loss_is_the_real_run(factory, hparams):
    """The loss change on L0 + g.d + 1/2 d'Hd along each node, from the real optax run."""
    nodes = np.array([3.0, 1.0, 0.2, 0.0, -0.4])
    weights = np.array([0.5, 0.2, 1.0, 0.3, 0.1])  # g_i^2
    steps = 40
    got = predictions.quadratic_model_loss(factory, hparams, nodes, weights, steps)
    assert got.shape == tuple(len(v) for v in hparams.values()) + (steps,)
    curvature = np.maximum(nodes, 0.0)  # negative curvature is taken as flat
    g = np.sqrt(weights)
    with jax.enable_x64(True):
        for index in itertools.product(*(range(len(v)) for v in hparams.values())):
            hp = {k: v[i] for (k, v), i in zip(hparams.items(), index, strict=True)}
            opt = factory(**hp)
            delta = jax.numpy.zeros(nodes.size)
            state, losses = opt.init(delta), []
            for _ in range(steps):
                losses.append(float(g @ delta + 0.5 * np.sum(curvature * delta**2)))
                grad = jax.numpy.asarray(g + curvature * delta)
                updates, state = opt.update(grad, state, delta)
                delta = optax.apply_updates(delta, updates)
            np.testing.assert_allclose(got[index], losses, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="^weights"):
        predictions.quadratic_model_loss(optimizers.sgd, {"learning_rate": [0.1]}, nodes, [1.0], 5)

"""The sweep's tracked batch sharpness against a direct computation with dense Hessians.

Full batch: the curvature of the training loss along its gradient, g^T H g / |g|^2, at every
evaluation of a plain gradient-descent run redone by hand. Mini-batches: the engine's Monte-Carlo
mean against the exact expectation over all C(8, 4) mini-batches, within its standard error.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gdyn_jax.sweep import Arrays, SweepConfig, make_train, setup, train


def _arrays(n):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1]) > 0).astype(np.int32)
    return Arrays(x, y, x[:4], y[:4], name="two-class")


def _dense(task, params, x, y):
    """(g^T H g / |g|^2) of the mean loss on (x, y), by a dense Hessian in float64."""
    flat, unravel = ravel_pytree(params)

    def loss(f):
        return train.mean_loss(task, unravel(f), {}, x, y)

    g = np.asarray(jax.grad(loss)(flat), np.float64)
    h = np.asarray(jax.hessian(loss)(flat), np.float64)
    return g @ h @ g / (g @ g)


def test_full_batch_tracks_the_curvature_along_the_full_gradient():
    config = SweepConfig(
        dataset=_arrays(32),
        model="logistic",
        optimizer="sgd",
        steps=3,
        batch_size=None,
        eval_every=1,
        track_batch_sharpness=True,
    )
    key = jax.random.key(0)
    out = jax.jit(make_train(config))({"learning_rate": 0.5}, key)
    assert out["batch_sharpness"].shape == (4,)

    task, data = setup.prepare(config)
    params = train.init(task, data, train.as_hparams({"learning_rate": 0.5}), key).params
    x, y = data.x_train, data.y_train
    grad = jax.jit(jax.grad(lambda p: train.mean_loss(task, p, {}, x, y)))
    for c in range(4):
        expected = _dense(task, params, x, y)
        np.testing.assert_allclose(out["batch_sharpness"][c], expected, rtol=1e-4)
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grad(params))


@pytest.mark.parametrize("batches", [4000])
def test_mini_batches_estimate_the_expectation_over_all_batches(batches):
    config = SweepConfig(
        dataset=_arrays(8),
        model="logistic",
        optimizer="sgd",
        steps=1,
        batch_size=4,
        eval_every=1,
        track_batch_sharpness=True,
        batch_sharpness_batches=batches,
    )
    key = jax.random.key(2)
    out = jax.jit(make_train(config))({"learning_rate": 0.1}, key)
    task, data = setup.prepare(config)
    params = train.init(task, data, train.as_hparams({"learning_rate": 0.1}), key).params
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    exact = np.array(
        [
            _dense(task, params, jnp.asarray(x[list(b)]), jnp.asarray(y[list(b)]))
            for b in itertools.combinations(range(8), 4)
        ]
    )
    standard_error = exact.std() / np.sqrt(batches)
    assert exact.std() > 0.01 * exact.mean()  # the batches do differ
    assert abs(float(out["batch_sharpness"][0]) - exact.mean()) < 4 * standard_error + 1e-5


def test_batch_sharpness_batches_is_checked():
    with pytest.raises(ValueError, match="^batch_sharpness_batches"):
        SweepConfig(track_batch_sharpness=True, batch_sharpness_batches=0).validate()

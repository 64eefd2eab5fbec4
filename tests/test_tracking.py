"""Warm-started curvature tracking: ``eigensolver.track_top`` and the sweep's tracked sharpness.

Against dense eigendecompositions (numpy): the tracked pair is an eigenpair within its residual
tolerance, warm starts take few products, a bad warm start restarts cold, and batched (vmap) it
agrees with one call per member. In the sweep: the warm-started sharpness along a real training
run against the dense Hessian's top eigenvalue, and against the cold Lanczos of
``sharpness_tol=0`` (today's method).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import eigensolver
from gdyn_jax.sweep import Arrays, SweepConfig, make_train, setup, train


def _matrix(n=80, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    values = np.concatenate([[10.0, 9.0, 8.5], rng.uniform(-4.0, 6.0, n - 3)])
    return (q * values) @ q.T, q, values


def _track(a, previous, key, **kw):
    a = jnp.asarray(a, jnp.float32)
    return jax.jit(lambda p, k: eigensolver.track_top(lambda v: a @ v, p, k, **kw))(previous, key)


def test_cold_then_warm_top_pair_against_numpy():
    a, q, values = _matrix()
    cold = _track(a, jnp.zeros(80), jax.random.key(0), iters=40, tol=1e-3)
    assert bool(cold.converged) and bool(cold.restarted)
    assert abs(float(cold.value) - 10.0) <= 1e-3 * 10.0 * 10  # within the residual bound
    residual = np.linalg.norm(a @ cold.vector - cold.value * cold.vector) / cold.value
    assert residual <= 1.5e-3
    # a nearby matrix (the next evaluation): warm from the old vector, few products
    b = a + 0.05 * np.outer(q[:, 1], q[:, 1])
    warm = _track(b, cold.vector, jax.random.key(1), iters=40, tol=1e-3)
    assert bool(warm.converged) and not bool(warm.restarted)
    assert int(warm.products) < int(cold.products)
    np.testing.assert_allclose(float(warm.value), np.linalg.eigvalsh(b)[-1], rtol=1e-4)
    assert float(jnp.vdot(warm.vector, cold.vector)) > 0.9  # signed like the previous


def test_a_failed_warm_start_restarts_cold():
    a, _, _ = _matrix()
    stuck = _track(a, jnp.asarray(np.ones(80), jnp.float32), jax.random.key(2), iters=2, tol=1e-6)
    assert bool(stuck.restarted)
    assert int(stuck.products) == 4  # two warm steps, then two cold ones


def test_batched_tracking_equals_one_call_per_member():
    a, _, _ = _matrix()
    a32 = jnp.asarray(a, jnp.float32)
    prev = jnp.stack([jnp.zeros(80), jnp.asarray(np.linspace(-1, 1, 80), jnp.float32)])
    keys = jax.random.split(jax.random.key(3), 2)

    def one(p, k):
        return eigensolver.track_top(lambda v: a32 @ v, p, k, iters=30, tol=1e-3)

    both = jax.jit(jax.vmap(one))(prev, keys)
    for i in range(2):
        alone = jax.jit(one)(prev[i], keys[i])
        np.testing.assert_allclose(both.value[i], alone.value, rtol=1e-5)
        assert int(both.products[i]) == int(alone.products)


def _arrays():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int32)
    return Arrays(x, y, x[:16], y[:16], name="two-class")


@pytest.fixture(scope="module")
def runs():
    config = SweepConfig(
        dataset=_arrays(),
        model="mlp",
        model_kwargs={"hidden_size": 12},
        optimizer="sgd",
        loss="mse",
        steps=60,
        batch_size=None,
        eval_every=10,
        track_sharpness=True,
        sharpness_subset=64,
        sharpness_iters=30,
    )
    key = jax.random.key(5)
    hp = {"learning_rate": 0.5}
    warm, state = jax.jit(make_train(config, return_state=True))(hp, key)
    cold = jax.jit(make_train(dataclasses.replace(config, sharpness_tol=0.0)))(hp, key)
    return config, key, hp, warm, cold, state


def test_the_tracked_sharpness_of_a_real_run_against_the_dense_hessian(runs):
    config, key, hp, warm, cold, state = runs
    task, data = setup.prepare(config)
    params = train.init(task, data, train.as_hparams(hp), key).params
    flat, unravel = ravel_pytree(params)
    x, y = data.x_train, data.y_train

    def loss(f):
        return train.mean_loss(task, unravel(f), {}, x, y)

    grad, hess = jax.jit(jax.grad(loss)), jax.jit(jax.hessian(loss))
    for c in range(config.num_evals):
        top = np.linalg.eigvalsh(np.asarray(hess(flat), np.float64))[-1]
        np.testing.assert_allclose(warm["sharpness"][c], top, rtol=1e-3)
        for _ in range(config.eval_every):
            flat = flat - 0.5 * grad(flat)
    np.testing.assert_allclose(warm["sharpness"], cold["sharpness"], rtol=1e-3)
    vector = state.eigenvectors["sharpness"]  # the last evaluation's, carried in the state
    assert vector.shape == flat.shape and abs(float(jnp.linalg.norm(vector)) - 1) < 1e-5

"""Hessian-vector products and top eigenvalues against the explicit Hessian (numpy eigvalsh),
and the sweep's sharpness / gradient-norm metrics against the same oracles."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import hessian


def _problem(seed: int = 0):
    """A small softmax regression (3 classes, 5 features: 18 parameters) at a random point."""
    k = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.normal(k[0], (64, 5))
    y = jax.random.randint(k[1], (64,), 0, 3)
    params = {"w": jax.random.normal(k[2], (5, 3)), "b": jax.random.normal(k[3], (3,))}

    def loss(p):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(
            jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0]
        )

    flat, unravel = ravel_pytree(params)
    explicit = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat), np.float64)
    return loss, params, explicit


def test_hvp_equals_explicit_hessian_product():
    loss, params, explicit = _problem()
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(jax.random.key(5), flat.shape)
    got = jax.jit(lambda p, u: ravel_pytree(hessian.hvp(loss, p, u))[0])(params, unravel(v))
    np.testing.assert_allclose(got, explicit @ np.asarray(v), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_iters", [8, 18, 30])
def test_lanczos_top_eigenvalue_equals_eigvalsh(num_iters):
    loss, params, explicit = _problem()
    top = np.linalg.eigvalsh(explicit)[-1]
    got = jax.jit(lambda p, k: hessian.top_eigenvalue(loss, p, k, num_iters))(
        params, jax.random.key(1)
    )
    # 18 parameters: 18 and more iterations span the whole space (30 runs past breakdown).
    np.testing.assert_allclose(got, top, rtol=1e-3 if num_iters < 18 else 1e-4)
    assert got <= top * (1 + 1e-4)  # Ritz values never exceed the top eigenvalue


def test_power_iteration_and_vmap():
    problems = [_problem(s) for s in range(2)]
    loss0, _, _ = problems[0]
    tops = [np.linalg.eigvalsh(h)[-1] for _, _, h in problems]
    # vmap over parameter points of the same loss structure: use each problem's own loss.
    for (loss, params, _), top in zip(problems, tops, strict=True):
        power = jax.jit(lambda p, k, f=loss: hessian.top_eigenvalue(f, p, k, 200, method="power"))
        got = power(params, jax.random.key(2))
        np.testing.assert_allclose(got, top, rtol=1e-3)
    loss, params, explicit = problems[0]
    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.jit(jax.vmap(lambda k: hessian.top_eigenvalue(loss, params, k, 18)))(keys)
    np.testing.assert_allclose(batched, np.linalg.eigvalsh(explicit)[-1], rtol=1e-4)
    del loss0


def test_bad_arguments():
    loss, params, _ = _problem()
    with pytest.raises(ValueError, match="^method: "):
        hessian.top_eigenvalue(loss, params, jax.random.key(0), method="arnoldi")
    with pytest.raises(ValueError, match="^num_iters: "):
        hessian.top_eigenvalue(loss, params, jax.random.key(0), 0)


def test_sweep_sharpness_and_grad_norm_at_initialisation(mnist1d_data_dir):
    """Full-batch square loss (Cohen et al.'s setting): the tracked metrics at step 0 equal the
    explicit Hessian's top eigenvalue and the gradient norm at the initial parameters."""
    from gdyn_jax import data, models
    from gdyn_jax.sweep import SweepConfig, make_train

    config = SweepConfig(
        model="logistic",
        optimizer="sgd",
        loss="mse",
        steps=4,
        batch_size=None,
        eval_every=2,
        train_subset=200,
        track_grad_norm=True,
        track_sharpness=True,
        sharpness_subset=100,
        sharpness_iters=40,
    )
    key = jax.random.key(7)
    out = jax.jit(make_train(config))({"learning_rate": 0.05}, key)
    x, y = data.load("mnist1d", "train")
    x, y = jnp.asarray(x[:200]), jnp.asarray(y[:200])
    model = models.get("logistic")
    params = model.init(jax.random.split(key, 3)[0], x[:1])["params"]  # as train initialises

    def loss(p, n):
        logits = model.apply({"params": p}, x[:n])
        return 0.5 * jnp.mean(jnp.sum((logits - jax.nn.one_hot(y[:n], 10)) ** 2, -1))

    flat, unravel = ravel_pytree(params)
    h = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f), 100)))(flat), np.float64)
    np.testing.assert_allclose(out["sharpness"][0], np.linalg.eigvalsh(h)[-1], rtol=1e-3)
    grad = ravel_pytree(jax.jit(jax.grad(loss), static_argnums=1)(params, 200))[0]
    np.testing.assert_allclose(out["grad_norm"][0], np.linalg.norm(grad), rtol=1e-4)
    initial_loss = jax.jit(loss, static_argnums=1)(params, 200)
    np.testing.assert_allclose(out["train_loss"][0], initial_loss, rtol=1e-5)
    assert out["sharpness"].shape == out["grad_norm"].shape == (3,)


def test_top_eigenpairs_equal_eigh():
    loss, params, explicit = _problem()
    values, vectors = np.linalg.eigh(explicit)
    got_values, got_vectors = jax.jit(
        lambda p, k: hessian.top_eigenpairs(loss, p, k, 3, num_iters=18)
    )(params, jax.random.key(3))
    np.testing.assert_allclose(got_values, values[::-1][:3], rtol=1e-4)
    # The same directions up to sign: |<x_i, q_i>| = 1, and orthonormal rows.
    overlap = np.abs(np.asarray(got_vectors, np.float64) @ vectors[:, ::-1][:, :3])
    np.testing.assert_allclose(overlap, np.eye(3), atol=2e-3)
    with pytest.raises(ValueError, match="^k: expected 1 <= k <= num_iters"):
        hessian.top_eigenpairs(loss, params, jax.random.key(0), 5, num_iters=4)
    with pytest.raises(ValueError, match="^num_iters: expected <= 18"):
        hessian.top_eigenpairs(loss, params, jax.random.key(0), 2, num_iters=19)


def test_spectral_measure_is_a_gauss_quadrature_of_the_gradient():
    """sum_j w_j theta_j^p = g' H^p g for p < 2m (numpy matrix powers of the explicit H)."""
    loss, params, explicit = _problem()
    g = jax.grad(loss)(params)
    flat = np.asarray(ravel_pytree(g)[0], np.float64)
    m = 5
    nodes, weights = jax.jit(lambda p, v: hessian.spectral_measure(loss, p, v, m))(params, g)
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    for p in range(2 * m):
        moment = flat @ np.linalg.matrix_power(explicit, p) @ flat
        np.testing.assert_allclose(np.sum(weights * nodes**p), moment, rtol=2e-4)
    values = np.linalg.eigvalsh(explicit)
    assert values[0] - 1e-4 <= nodes.min() and nodes.max() <= values[-1] + 1e-4
    with pytest.raises(ValueError, match="^num_iters: expected >= 1"):
        hessian.spectral_measure(loss, params, g, 0)

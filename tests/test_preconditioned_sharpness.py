"""Adam's preconditioned sharpness lambda_max(P^-1 H) against dense numpy computations: the
Lanczos operator, the frozen preconditioner, and the sweep engine's tracked metric along a real
optax.adam run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from gdyn_jax import optimizers
from gdyn_jax.measurements import hessian
from gdyn_jax.sweep import Arrays, SweepConfig, make_train, setup, train

B2, EPS = 0.99, 1e-3


def _dense_preconditioned_top(h: np.ndarray, p: np.ndarray) -> float:
    scale = 1 / np.sqrt(p)
    return float(np.linalg.eigvalsh(scale[:, None] * h * scale[None, :])[-1])


def test_preconditioned_top_eigenvalue_equals_dense_eig_of_p_inverse_h():
    k = jax.random.split(jax.random.key(0), 3)
    a = jax.random.normal(k[0], (12, 12))
    h = np.asarray(a @ a.T / 12, np.float64)
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(6)}
    p = {"w": jax.random.uniform(k[1], (3, 2), minval=0.01, maxval=2.0), "b": jnp.full(6, 0.3)}

    def loss(q):
        flat = ravel_pytree(q)[0]
        return 0.5 * flat @ (jnp.asarray(h, flat.dtype) @ flat)

    got = jax.jit(lambda q: hessian.top_eigenvalue(loss, params, k[2], 12, preconditioner=q))(p)
    flat_p = np.asarray(ravel_pytree(p)[0], np.float64)
    expected = np.max(np.linalg.eigvals(np.diag(1 / flat_p) @ h).real)  # P^-1 H, not symmetric
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    np.testing.assert_allclose(got, _dense_preconditioned_top(h, flat_p), rtol=1e-4)
    with pytest.raises(ValueError, match="^preconditioner: expected a pytree"):
        hessian.top_eigenvalue(loss, params, k[2], 12, preconditioner=jnp.ones(12))


def test_adam_preconditioner_is_the_bias_corrected_root_second_moment():
    opt = optax.adam(0.1, b2=B2, eps=EPS)  # optax's own Adam
    params = jnp.array([1.0, -2.0, 0.5])
    state = opt.init(params)
    grads = [jnp.array([0.3, -1.0, 2.0]), jnp.array([0.1, 0.5, -0.2]), jnp.array([1.0, 0.0, 3.0])]
    nu = np.zeros(3)
    for c, g in enumerate(grads, start=1):
        _, state = opt.update(g, state, params)
        nu = B2 * nu + (1 - B2) * np.asarray(g, np.float64) ** 2
        got = optimizers.adam_preconditioner(state, B2, EPS)
        np.testing.assert_allclose(got, np.sqrt(nu / (1 - B2**c)) + EPS, rtol=1e-5)
    with pytest.raises(ValueError, match="^state: expected one Adam second moment"):
        optimizers.adam_preconditioner(optax.sgd(0.1, momentum=0.9).init(params), B2, EPS)


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)
    return Arrays(x, y, x[:16], y[:16], name="three-class")


def test_sweep_tracks_the_preconditioned_sharpness_of_a_real_adam_run():
    config = SweepConfig(
        dataset=_arrays(),
        model="logistic",
        optimizer="adam",
        hparams={"eps": EPS},
        steps=3,
        batch_size=None,
        eval_every=1,
        track_preconditioned_sharpness=True,
        sharpness_subset=64,
        sharpness_iters=18,
    )
    key = jax.random.key(3)
    out = jax.jit(make_train(config))({"learning_rate": 0.05, "b2": B2}, key)
    assert np.isnan(out["preconditioned_sharpness"][0])  # no second moment at step 0

    # The same run by hand: the engine's initial parameters, then optax.adam, dense Hessians.
    task, data = setup.prepare(config)
    params = train.init(task, data, train.as_hparams({"learning_rate": 0.05}), key).params
    flat, unravel = ravel_pytree(params)

    def loss(f):
        return train.mean_loss(task, unravel(f), {}, data.x_train, data.y_train)

    opt = optax.adam(0.05, b2=B2, eps=EPS)
    grad, hess, update = jax.jit(jax.grad(loss)), jax.jit(jax.hessian(loss)), jax.jit(opt.update)
    state, nu = opt.init(flat), np.zeros(flat.size)
    for c in range(1, 4):
        g = grad(flat)
        nu = B2 * nu + (1 - B2) * np.asarray(g, np.float64) ** 2
        updates, state = update(g, state, flat)
        flat = optax.apply_updates(flat, updates)
        h = np.asarray(hess(flat), np.float64)
        expected = _dense_preconditioned_top(h, np.sqrt(nu / (1 - B2**c)) + EPS)
        np.testing.assert_allclose(out["preconditioned_sharpness"][c], expected, rtol=2e-3)


def test_preconditioned_sharpness_needs_an_adam_type_optimizer():
    config = SweepConfig(
        dataset=_arrays(),
        model="logistic",
        optimizer="momentum",
        steps=2,
        eval_every=1,
        batch_size=None,
        track_preconditioned_sharpness=True,
    )
    with pytest.raises(ValueError, match="^track_preconditioned_sharpness: needs an Adam-type"):
        make_train(config)

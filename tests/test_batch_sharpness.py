"""Batch sharpness (Andreyev & Beneventano, arXiv:2412.20553) against dense Hessians."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdyn_jax.measurements import batch_sharpness, directional_curvatures


def _setup(m=6, b=5, d=3, seed=0):
    kx, ky, kw = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (m, b, d))
    y = jax.random.normal(ky, (m, b))
    params = {"w": jax.random.normal(kw, (d, 4)), "v": jnp.ones(4) / 2}

    def loss(p, batch):
        xb, yb = batch
        return jnp.mean((jnp.tanh(xb @ p["w"]) @ p["v"] - yb) ** 2)

    return loss, params, (x, y)


def test_matches_dense_hessians():
    loss, params, batches = _setup()
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    ratios, quads, norms = [], [], []
    for i in range(batches[0].shape[0]):
        f = lambda w, i=i: loss(unravel(w), (batches[0][i], batches[1][i]))  # noqa: E731
        g, h = np.asarray(jax.grad(f)(flat)), np.asarray(jax.hessian(f)(flat))
        quads.append(g @ h @ g)
        norms.append(g @ g)
        ratios.append(g @ h @ g / (g @ g))
    np.testing.assert_allclose(batch_sharpness(loss, params, batches), np.mean(ratios), rtol=1e-4)
    np.testing.assert_allclose(
        batch_sharpness(loss, params, batches, ratio_of_means=True),
        np.sum(quads) / np.sum(norms),
        rtol=1e-4,
    )
    q, n = directional_curvatures(loss, params, batches)
    np.testing.assert_allclose(q, quads, rtol=1e-4)


def test_quadratic_closed_form():
    # L_B(w) = 1/2 w' D_B w with diagonal D_B: g = D w, g' D g / g' g = sum d^3 w^2 / sum d^2 w^2
    d = jnp.array([[1.0, 3.0], [2.0, 5.0]])
    w = jnp.array([1.0, -2.0])
    loss = lambda p, db: 0.5 * jnp.sum(db * p**2)  # noqa: E731
    expected = np.mean([np.sum(r**3 * w**2) / np.sum(r**2 * w**2) for r in np.asarray(d)])
    np.testing.assert_allclose(batch_sharpness(loss, w, d), expected, rtol=1e-6)
    assert jax.jit(lambda p: batch_sharpness(loss, p, d))(w).shape == ()


def test_bad_batches():
    loss, params, _ = _setup()
    with pytest.raises(ValueError, match="batches"):
        batch_sharpness(loss, params, (jnp.ones((3, 5, 3)), jnp.ones((4, 5))))

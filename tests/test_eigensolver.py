"""The warm-started block eigensolver against numpy's dense eigendecomposition."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdyn_jax.measurements import eigenpairs, lobpcg


def _matrix(n=120, top=(10.0, 9.0, 8.5), seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    lam = np.concatenate([top, rng.uniform(-4.0, 5.0, n - len(top))])
    return (q * lam) @ q.T


def test_top_eigenpairs_match_numpy():
    a = _matrix()
    with jax.enable_x64(True):
        start = jnp.asarray(np.random.default_rng(1).normal(size=(a.shape[0], 3)))
        values, vectors, res = lobpcg(lambda v: jnp.asarray(a) @ v, start, 300, 1e-10)
    ref_vals, ref_vecs = np.linalg.eigh(a)
    np.testing.assert_allclose(values, ref_vals[::-1][:3], rtol=1e-9)
    overlap = np.abs(np.asarray(vectors).T @ ref_vecs[:, ::-1][:, :3])
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-6)
    assert np.all(np.asarray(res) < 1e-8)


def test_warm_start_is_cheap_and_cold_start_rescues():
    a = _matrix()
    b = a + 1e-3 * _matrix(seed=2)  # the operator moved a little, as along a trajectory
    calls = []

    def counting(m):
        def matvec(v):
            calls.append(1)
            return jnp.asarray(m) @ v

        return matvec

    with jax.enable_x64(True):
        key = jax.random.key(0)
        first = eigenpairs(counting(a), jnp.asarray(np.eye(a.shape[0])[:, :3]), key, tol=1e-8)
        warm = eigenpairs(counting(b), first.vectors, key, iters=30, tol=1e-8)
        assert bool(warm.converged) and not bool(warm.restarted)
        np.testing.assert_allclose(warm.values, np.linalg.eigvalsh(b)[::-1][:3], rtol=1e-9)
        # a start near other eigenvectors and too few warm iterations: a cold start
        ref = np.linalg.eigh(a)[1][:, ::-1]
        bad = jnp.asarray(ref[:, 10:13] + 1e-2 * np.random.default_rng(3).normal(size=(120, 3)))
        cold = eigenpairs(lambda v: jnp.asarray(a) @ v, bad, key, iters=1, cold_iters=300, tol=1e-8)
        assert bool(cold.restarted) and bool(cold.converged)
        np.testing.assert_allclose(cold.values, [10.0, 9.0, 8.5], rtol=1e-8)


def test_jit_and_bad_block():
    a = jnp.asarray(_matrix(n=40), jnp.float32)
    solve = jax.jit(lambda p, k: eigenpairs(lambda v: a @ v, p, k, tol=1e-4))
    out = solve(jax.random.normal(jax.random.key(1), (40, 2)), jax.random.key(2))
    np.testing.assert_allclose(out.values, [10.0, 9.0], rtol=1e-4)
    with pytest.raises(ValueError, match="previous"):
        eigenpairs(lambda v: a @ v, jnp.ones(40), jax.random.key(0))

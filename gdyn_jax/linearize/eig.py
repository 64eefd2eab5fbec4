r"""Eigenvalues of batches of small real matrices, traceable in JAX on any backend.

For :math:`k \le 2` the roots of :math:`z^2 - \operatorname{tr}(A) z + \det A` are computed in
closed form (with the cancellation-free :math:`\lambda_2 = \det A / \lambda_1`); larger matrices
go to the host's ``numpy.linalg.eigvals`` through ``jax.pure_callback`` (non-symmetric ``eig``
has no GPU kernel in JAX, jax#25687).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["eigvals", "spectral_radius_of"]


def _host_eigvals(a) -> np.ndarray:
    return np.linalg.eigvals(np.asarray(a, dtype=np.float64)).astype(np.complex128)


def eigvals(A: jax.Array) -> jax.Array:
    """Complex eigenvalues of ``A`` with shape ``(..., k, k)`` -> ``(..., k)``."""
    A = jnp.asarray(A)
    k = A.shape[-1]
    cdtype = jnp.result_type(A.dtype, jnp.complex64)
    if k == 1:
        return A[..., 0].astype(cdtype)
    if k == 2:
        a, b, c, d = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
        half_tr = 0.5 * (a + d)
        det = a * d - b * c
        s = jnp.sqrt((half_tr * half_tr - det).astype(cdtype))
        q = half_tr + jnp.where(half_tr >= 0, s, -s)
        safe = jnp.where(jnp.abs(q) > 0, q, 1.0)
        other = jnp.where(jnp.abs(q) > 0, det / safe, 0.0)
        return jnp.stack([q, other], axis=-1)
    out = jax.ShapeDtypeStruct(A.shape[:-1], cdtype)
    return jax.pure_callback(
        lambda x: _host_eigvals(x).astype(cdtype), out, A, vmap_method="broadcast_all"
    )


def _spectral_radius_2x2(A):
    r"""Spectral radius of (..., 2, 2) matrices in real arithmetic (few kernels to compile).

    With :math:`h = \operatorname{tr}(A)/2`, :math:`d = \det A`, :math:`\Delta = h^2 - d`:
    real roots (:math:`\Delta \ge 0`) have moduli :math:`|h| + \sqrt\Delta` and
    :math:`|d| / (|h| + \sqrt\Delta)` (the same values :func:`eigvals` computes); a complex
    pair has :math:`|\lambda|^2 = \lambda\bar\lambda = d`. A numpy array is computed in numpy
    (no JAX dispatch: the fast path of one concrete system), anything else in ``jax.numpy``;
    the same formula, tested equal.
    """
    xp = np if isinstance(A, np.ndarray) else jnp
    a, b, c, d = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
    half_tr = 0.5 * (a + d)
    det = a * d - b * c
    disc = half_tr * half_tr - det
    q = xp.abs(half_tr) + xp.sqrt(xp.maximum(disc, 0.0))
    real = xp.maximum(q, xp.where(q > 0, xp.abs(det) / xp.where(q > 0, q, 1.0), 0.0))
    return xp.where(disc >= 0, real, xp.sqrt(xp.maximum(det, 0.0)))


def spectral_radius_of(A):
    r""":math:`\max_i |\lambda_i(A)|` over the last two axes (traceable; a numpy array of at
    most 2 x 2 matrices is computed in numpy)."""
    if isinstance(A, np.ndarray) and A.shape[-1] <= 2:
        return np.abs(A[..., 0, 0]) if A.shape[-1] == 1 else _spectral_radius_2x2(A)
    A = jnp.asarray(A)
    if A.shape[-1] == 1:
        return jnp.abs(A[..., 0, 0])
    if A.shape[-1] == 2:
        return _spectral_radius_2x2(A)
    return jnp.max(jnp.abs(eigvals(A)), axis=-1)

r"""The noise floor: stationary covariance of the parameters under gradient noise.

With white gradient noise :math:`w_k` of covariance :math:`Q` and the reference fixed, the
state deviation obeys :math:`x_{k+1} = A x_k + B_w w_k`; when :math:`\rho(A) < 1` its
covariance converges to the solution of the discrete Lyapunov equation

.. math:: \Sigma_x = A \Sigma_x A^\top + B_w Q B_w^\top,

and :math:`\Sigma_\theta = C \Sigma_x C^\top`. The stationary excess loss of the quadratic is
:math:`\mathbb E[f(\theta)] - f(r) = \tfrac12 \operatorname{tr}(H \Sigma_\theta)`
(e.g. Liu et al., NeurIPS 2018; Mandt, Hoffman, Blei, JMLR 2017 for SGD:
:math:`\Sigma = a Q / (2 - a h)/h` in one dimension).
"""

from __future__ import annotations

import numpy as np

from gdyn_jax import extras
from gdyn_jax.linearize.stability import spectral_radius
from gdyn_jax.linearize.system import LinearSystem, require_per_step, validate_hessian

__all__ = ["stationary_covariance", "stationary_excess_loss"]


def _noise_cov(noise_cov, n: int) -> np.ndarray:
    """``noise_cov`` as an (n, n) symmetric positive semi-definite matrix, or a ValueError."""
    try:
        q = np.asarray(noise_cov, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"noise_cov: expected a variance or an ({n}, {n}) matrix") from None
    if q.ndim == 0:
        if not np.isfinite(q) or q < 0:
            raise ValueError(f"noise_cov: expected a variance >= 0, got {float(q)}")
        return float(q) * np.eye(n)
    if q.shape != (n, n) or not np.all(np.isfinite(q)):
        raise ValueError(f"noise_cov: expected a variance or a finite ({n}, {n}) matrix")
    scale = max(1.0, float(np.max(np.abs(q))))
    if not np.allclose(q, q.T, rtol=0, atol=1e-12 * scale):
        raise ValueError("noise_cov: expected a symmetric matrix")
    if np.min(np.linalg.eigvalsh(0.5 * (q + q.T))) < -1e-12 * scale:
        raise ValueError("noise_cov: expected a positive semi-definite matrix (an eigenvalue < 0)")
    return 0.5 * (q + q.T)


def stationary_covariance(system: LinearSystem, noise_cov, *, full_state: bool = False):
    r"""Stationary covariance of :math:`\theta` (or of the whole state with ``full_state``).

    ``noise_cov`` is a variance (isotropic :math:`Q = \sigma^2 I`) or an (n, n) symmetric
    positive semi-definite covariance. Solved with ``scipy.linalg.solve_discrete_lyapunov``.
    For an unstable or marginal loop there is no stationary distribution: the result is filled
    with ``inf``. A lifted periodic system (``period = k``) gets independent noise at each of
    the k steps of a period, and the covariance is that at the sampling instants.
    """
    if system.batch_shape:
        raise ValueError("system: expected a single system, got a batch")
    require_per_step(system, "the stationary covariance")
    n = system.num_params
    q = np.kron(np.eye(system.period), _noise_cov(noise_cov, n))
    A = np.asarray(system.A)
    k = A.shape[0]
    size = k if full_state else n
    if spectral_radius(system) >= 1.0:
        return np.full((size, size), np.inf)
    bw = np.asarray(system.input_matrix("noise"))
    sigma = extras.scipy_linalg.solve_discrete_lyapunov(A, bw @ q @ bw.T)
    sigma = 0.5 * (sigma + sigma.T)
    if full_state:
        return sigma
    C = np.asarray(system.C)
    return C @ sigma @ C.T


def stationary_excess_loss(system: LinearSystem, noise_cov, hessian=None) -> float:
    r""":math:`\tfrac12 \operatorname{tr}(H \Sigma_\theta)`: the loss floor SGD-like noise leaves.

    ``hessian`` defaults to the one the system was built with.
    """
    h = system.hessian if hessian is None else validate_hessian(hessian)
    if h is None:
        raise ValueError("hessian: the system carries none; pass it explicitly")
    sigma = stationary_covariance(system, noise_cov)
    if not np.all(np.isfinite(sigma)):
        return float("inf")
    return float(0.5 * np.trace(np.asarray(h) @ sigma))

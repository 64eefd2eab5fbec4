r"""The matrices of a time-varying loop over a horizon, and the k-step (lifted) map of a period.

:func:`matrix_sequence` advances the rule's own clock and takes :math:`A_t, B_t` at every step
(one jitted ``lax.scan``); :func:`lift` composes k of them into the exact one-step-per-period
system :math:`x_{k(j+1)} = \Phi_k x_{kj} + \ldots` (Bittanti and Colaneri, *Periodic Systems*,
2009, ch. 6). :mod:`gdyn_jax.linearize.timevarying` builds its systems from them, and
:func:`~gdyn_jax.linearize.linearize` the lifted system it attaches to the per-step system of a
periodic rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.linearize.loop import ClosedLoop

__all__ = ["lift", "matrix_sequence"]


def matrix_sequence(loop: ClosedLoop, hessian, z0, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``A_t, B_t`` for t = 0 .. steps-1, advancing the rule's clock (one jitted scan)."""

    def run(h, z):
        def body(clock, _):
            A, B = loop.matrices(h, z, clock)
            return loop.advance(clock, h, z), (A, B)

        return jax.lax.scan(body, loop.clock0, None, length=steps)[1]

    A, B = jax.jit(run)(jnp.asarray(hessian), jnp.asarray(z0))
    return np.asarray(A), np.asarray(B)


def lift(A: np.ndarray, B: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The k-step map of :math:`x_{t+1} = A_t x_t + B^r_t r + B^w_t w_t`, t = 0 .. k-1.

    Returns :math:`\Phi_k = A_{k-1}\cdots A_0` and the input matrix
    :math:`[\sum_t \Phi(k,t+1) B^r_t,\ \Phi(k,1) B^w_0, \dots, B^w_{k-1}]`: the reference
    held over the period, one noise block per step.
    """
    k = A.shape[-1]
    M = np.eye(k)
    ref = np.zeros((k, n))
    noise = []
    for t in range(A.shape[0] - 1, -1, -1):  # M = Phi(k, t + 1)
        ref += M @ B[t][:, :n]
        noise.append(M @ B[t][:, n:])
        M = M @ A[t]
    return M, np.concatenate([ref, *reversed(noise)], axis=1)

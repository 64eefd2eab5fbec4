r"""Mini-batch SGD on the NTK loop: the expected loss curve, the mean curve plus each mode's floor.

A mini-batch of :math:`b` of the :math:`N` examples (drawn without replacement) gives the
gradient :math:`g_B = g + \xi`; along the parameter-space eigenvector :math:`v_i` of mode
:math:`i` the noise has variance

.. math::
    \sigma_i^2(k) = \frac{N-b}{b(N-1)}\,S_i^2(k),\quad
    S_i^2(k) = \frac1N\sum_j \bigl(d_{ij}(k) - \bar d_i(k)\bigr)^2,
    \qquad d_{ij} = (J_j v_i)^\top \nabla_f \ell_j ,

the per-example gradients projected on the mode (:math:`J v_i = \Theta H^{1/2} w_i/\sqrt{\mu_i}`,
:math:`\nabla_f \ell_j = N H_j^{1/2} \rho_j`: no parameter-sized vector is formed), read at the
predicted mean residual of step :math:`k` (the noise of a square loss shrinks with the residual;
at initialisation it is ``gdyn_jax.measurements.noise``'s projected gradient noise). The modes
decouple, so the mean residual follows the full-batch prediction and each mode's coordinate
:math:`x_i(k) = \sum_{t<k} h_i(k-1-t)\,\xi_i(t)` gains variance through the loop's impulse
response from its noise input (:func:`gdyn_jax.predictions.mode_loops`, the ``'noise'`` input
of ``linearize``; driven by white noise its variance tends to ``linearize.stationary_covariance``).
The sweep's batches are not independent: each epoch walks through one permutation, so the
noises of two steps of one epoch are anticorrelated, :math:`\mathrm{Cov}(\xi_s, \xi_t) =
-\frac{1}{N(N-1)}\sum_j e_j(s) e_j(t) \approx -S(s)S(t)/(N-1)` (:math:`e_j` the deviations
:math:`d_{ij} - \bar d_i`, :math:`S^2` their mean square, taken as unchanged within an epoch),
and an epoch's noise sums to zero. So

.. math::
    \mathrm{Var}\,x_i(k) = \frac{N-b}{b(N-1)}\sum_t h_t^2 S_t^2
    - \frac{1}{N-1}\sum_{\text{epochs}}\Bigl[\Bigl(\sum_{t\in\text{epoch}} h_t S_t\Bigr)^2
    - \sum_{t\in\text{epoch}} h_t^2 S_t^2\Bigr],\qquad
    \mathbb E L_k = \bar L_k + \tfrac12 \sum_i \mu_i\, \mathrm{Var}\,x_i(k)

(:math:`h_t = h_i(k-1-t)`). Neglected: the noise's own feedback on the noise (second order).
"""

from __future__ import annotations

import numpy as np

from gdyn_jax.errors import UsageError
from gdyn_jax.predictions.modes import mode_loops
from gdyn_jax.predictions.ntk_predict import NTKPrediction
from gdyn_jax.sweep.config import rule_of

__all__ = ["check_constant_rate", "mode_noise", "minibatch_loss"]


def mode_noise(prediction: NTKPrediction, batch_size: int) -> np.ndarray:
    r""":math:`S_i(k)`, (M, steps+1): the spread over examples of each mode's per-example
    gradient at the predicted mean residual of every step (module docstring)."""
    modes = prediction.modes
    n, c, _ = modes.sqrt_h.shape
    b = int(batch_size)
    if not 1 <= b <= n:
        raise UsageError(f"batch_size: expected an integer in [1, {n}], got {batch_size!r}")
    mu = modes.curvatures
    live = mu > 0
    s = np.sqrt(np.where(live, mu, 1.0))
    h = modes.sqrt_h
    hw = np.einsum("nij,njm->nim", h, modes.vectors.reshape(n, c, -1)).reshape(n * c, -1)
    jv = ((modes.kernel @ hw) / s * live).reshape(n, c, -1)  # J v_i
    rho = modes.vectors @ (modes.projections[:, None] * prediction.responses)  # (N*C, K)
    grad_f = n * np.einsum("nij,njk->nik", h, rho.reshape(n, c, -1))  # (N, C, K)
    out = np.empty((mu.size, rho.shape[1]))
    for k0 in range(0, rho.shape[1], 16):
        d = np.einsum("jcm,jck->mjk", jv, grad_f[:, :, k0 : k0 + 16])  # (M, N, block)
        out[:, k0 : k0 + 16] = np.std(d, axis=1)
    return out


def _impulse(prediction: NTKPrediction) -> np.ndarray:
    """Each mode loop's response of its coordinate to a unit noise input, (M, steps)."""
    rule = rule_of(prediction.config)
    loops = mode_loops(rule.factory, prediction.modes.curvatures, **prediction.hparams)
    A = np.asarray(loops.A, np.float64)
    x = np.asarray(loops.input_matrix("noise"), np.float64)[..., 0]  # (M, S)
    C = np.asarray(loops.C, np.float64)
    C = C[..., 0, :] if C.ndim == 3 else np.broadcast_to(C[0], x.shape)
    out = np.empty((A.shape[0], prediction.steps))
    for m in range(prediction.steps):
        out[:, m] = np.einsum("ms,ms->m", C, x)
        x = np.einsum("mst,mt->ms", A, x)
    return out


def check_constant_rate(schedule: str | None) -> None:
    """A one-line ``UsageError`` unless ``schedule`` is constant: the mini-batch expected curve
    is derived from the loop's time-invariant impulse response."""
    if schedule not in (None, "constant"):
        raise UsageError(
            "schedule: the mini-batch expected curve is derived for a constant learning rate "
            f"(the loop's impulse response), got schedule {schedule!r}"
        )


def minibatch_loss(prediction: NTKPrediction, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    r"""(expected loss :math:`\mathbb E L_k`, the noise's share :math:`\tfrac12\sum_i \mu_i
    \mathrm{Var}\,x_i(k)`), each (steps+1,), for mini-batches of ``batch_size`` drawn as the
    sweep draws them (module docstring)."""
    check_constant_rate(prediction.config.schedule)
    n = prediction.modes.sqrt_h.shape[0]
    b = int(batch_size)
    spread = mode_noise(prediction, b)[:, :-1]  # S_i(t), t = 0 .. steps-1
    h = _impulse(prediction)
    per_epoch = n // b
    epoch = np.arange(prediction.steps) // per_epoch
    var_scale, cross = (n - b) / (b * (n - 1)) if n > 1 else 0.0, 1.0 / max(n - 1, 1)
    var = np.zeros((spread.shape[0], prediction.steps + 1))
    for k in range(1, prediction.steps + 1):
        w = h[:, k - 1 :: -1][:, :k] * spread[:, :k]  # h_{k-1-t} S_t, t = 0 .. k-1
        own = np.sum(w**2, axis=1)
        sums = np.zeros((w.shape[0], int(epoch[k - 1]) + 1))
        np.add.at(sums.T, epoch[:k], w.T)
        var[:, k] = var_scale * own - cross * (np.sum(sums**2, axis=1) - own)
    floor = 0.5 * np.einsum("m,mk->k", prediction.modes.curvatures, var)
    return prediction.train_loss + floor, floor

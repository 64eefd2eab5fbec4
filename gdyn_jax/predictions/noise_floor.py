r"""The noise floor along the top Hessian eigenvector: predicted beside measured.

A rotation-equivariant linear rule (SGD, heavy ball, Nesterov) moves the coordinate
:math:`q^\top\theta` along an eigenvector :math:`q` of the Hessian (curvature :math:`\lambda`)
as its scalar closed loop driven by the minibatch gradient noise :math:`q^\top w`, white of
variance :math:`\sigma_q^2` (:func:`gdyn_jax.measurements.projected_gradient_noise`).
:func:`gdyn_jax.linearize.stationary_covariance` of the loop at :math:`h = \lambda` gives the
stationary variance of :math:`q^\top\theta` (the noise floor; Mandt, Hoffman, Blei, JMLR 2017
for SGD: :math:`a\sigma^2/(\lambda(2 - a\lambda))`); :func:`floor_test` sets it beside the
spread measured across minibatch runs
(:func:`gdyn_jax.measurements.noise_ensemble`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.measurements import hessian
from gdyn_jax.measurements.noise import noise_ensemble, projected_gradient_noise

__all__ = ["FloorTest", "floor_test"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class FloorTest:
    r"""The noise floor along the top Hessian eigenvector, predicted and measured.

    Attributes:
      curvature: :math:`\lambda_{\max}` (Lanczos) at the starting point.
      sigma2: :math:`\sigma_q^2`, the minibatch gradient variance along its eigenvector.
      predicted: ``stationary_covariance`` of the rule's loop at :math:`h = \lambda_{\max}`.
      measured: the variance across runs of :math:`q^\top\theta_k`, averaged over
        ``settle <= k <= steps`` (NaN when the loop does not settle within ``steps``).
      settle: steps until :math:`\rho^{2k} < 0.01` (the variance within 1% of its limit), at
        least 10.
      gradient: :math:`q^\top\nabla L / \sigma_q` at the start: how far from the bottom of
        the valley along :math:`q` the runs start, in units of the noise.
      spread: the variance across runs at every step, shape ``(steps + 1,)``.
    """

    curvature: float
    sigma2: float
    predicted: float
    measured: float
    settle: int
    gradient: float
    spread: np.ndarray


@functools.partial(
    jax.jit, static_argnames=("batch_loss", "example_losses", "factory", "sizes", "iters")
)
def _measure(batch_loss, example_losses, factory, sizes, iters, params, data, hparams, key):
    batch_size, steps, runs = sizes
    k1, k2 = jax.random.split(key)

    def full(p):
        return jnp.mean(example_losses(p, data))

    values, vectors = hessian.top_eigenpairs(full, params, k1, 1, iters)
    mean, sigma2 = projected_gradient_noise(
        lambda p: example_losses(p, data), params, vectors[0], batch_size
    )
    num_examples = jax.eval_shape(lambda: example_losses(params, data)).shape[0]
    _, spread = noise_ensemble(
        lambda p, idx: batch_loss(p, data, idx),
        params,
        factory(**hparams),
        vectors[0],
        num_examples,
        batch_size,
        steps,
        runs,
        k2,
    )
    return values[0], mean, sigma2, spread


def floor_test(
    batch_loss: Callable[[PyTree, Any, jax.Array], jax.Array],
    example_losses: Callable[[PyTree, Any], jax.Array],
    params: PyTree,
    data: Any,
    factory: Callable[..., optax.GradientTransformation],
    hparams: Mapping[str, float],
    *,
    batch_size: int,
    steps: int,
    runs: int,
    key: jax.Array,
    lanczos_iters: int = 30,
) -> FloorTest:
    r"""The noise floor of ``factory(**hparams)`` along the top Hessian eigenvector at ``params``.

    Lanczos (``lanczos_iters``) on the loss ``mean(example_losses(params, data))`` gives
    :math:`(\lambda_{\max}, q)`; :func:`~gdyn_jax.measurements.projected_gradient_noise` gives
    :math:`\sigma_q^2` for batches of ``batch_size``; :func:`~gdyn_jax.measurements.noise_ensemble`
    (``runs`` runs of ``steps`` steps on ``batch_loss(params, data, indices)``) the measured
    spread, and :func:`gdyn_jax.linearize.stationary_covariance` the prediction. ``data`` is a
    pytree passed through to the losses: with the same ``batch_loss``, ``example_losses`` and
    ``factory`` objects, one compiled program serves every ``params``, ``data`` and ``hparams``
    of the same shapes.
    """
    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    sizes = (int(batch_size), int(steps), int(runs))
    lam, mean, sigma2, spread = _measure(
        batch_loss, example_losses, factory, sizes, int(lanczos_iters), params, data, hp, key
    )
    lam, sigma2, spread = float(lam), float(sigma2), np.asarray(spread, np.float64)
    loop = linearize.linearize(factory(**hparams), max(lam, 1e-12))
    rho = float(linearize.spectral_radius(loop))
    settle = max(10, int(np.ceil(np.log(0.01) / (2 * np.log(rho))))) if rho < 1 else steps + 1
    measured = float(np.mean(spread[settle:])) if settle <= steps else float("nan")
    predicted = float(linearize.stationary_covariance(loop, sigma2)[0, 0])
    gradient = float(mean) / np.sqrt(sigma2) if sigma2 > 0 else float("nan")
    return FloorTest(lam, sigma2, predicted, measured, settle, gradient, spread)

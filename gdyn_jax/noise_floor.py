r"""The noise floor along a Hessian eigenvector, measured on a real loss.

Minibatch training near a point :math:`\theta_0` sees the gradient :math:`g_B = g + w`, with
:math:`w` the sampling noise. Along an eigenvector :math:`q` of the Hessian (curvature
:math:`\lambda`), a rotation-equivariant linear rule (SGD, heavy ball, Nesterov) moves the
coordinate :math:`q^\top\theta` as its scalar closed loop driven by :math:`q^\top w`; with
minibatches drawn independently at every step that drive is white, of variance

.. math::
    \sigma_q^2 = \frac{S^2}{b}\,\frac{N - b}{N - 1}, \qquad
    S^2 = \frac1N \sum_i (d_i - \bar d)^2, \quad d_i = q^\top \nabla \ell_i(\theta_0),

for batches of :math:`b` of the :math:`N` examples drawn without replacement, and
:func:`gdyn_jax.linearize.stationary_covariance` of the loop at :math:`h = \lambda` gives the
stationary variance of :math:`q^\top\theta` (the noise floor; Mandt, Hoffman, Blei, JMLR 2017
for SGD: :math:`a\sigma^2/(\lambda(2 - a\lambda))`).

:func:`projected_gradient_noise` measures :math:`\bar d` and :math:`\sigma_q^2` exactly (one
``jax.jvp`` of the per-example losses along :math:`q`); :func:`noise_ensemble` measures the
spread of :math:`q^\top\theta_k` across independent minibatch runs from :math:`\theta_0` (the
deterministic drift that all runs share drops out of the variance across runs).
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
from jax.flatten_util import ravel_pytree

from gdyn_jax.modes import projected_trajectory

__all__ = ["FloorTest", "floor_test", "noise_ensemble", "projected_gradient_noise"]
PyTree = Any


def projected_gradient_noise(
    example_losses: Callable[[PyTree], jax.Array],
    params: PyTree,
    direction: jax.Array,
    batch_size: int,
) -> tuple[jax.Array, jax.Array]:
    r"""The full-batch gradient along ``direction`` and the variance of a minibatch's around it.

    Args:
      example_losses: ``example_losses(params) -> (N,)``, the loss of every training example.
      params: the point :math:`\theta_0` (a pytree).
      direction: :math:`q`, a vector in the order of ``ravel_pytree(params)``.
      batch_size: :math:`b`, examples per minibatch (drawn without replacement), ``1 <= b <= N``.

    Returns:
      ``(mean, variance)``: :math:`\bar d = q^\top g` and :math:`\sigma_q^2` (module docstring).
    """
    flat, unravel = ravel_pytree(params)
    tangent = unravel(jnp.asarray(direction, flat.dtype))
    _, d = jax.jvp(example_losses, (params,), (tangent,))
    n = d.shape[0]
    if not 1 <= int(batch_size) <= n:
        raise ValueError(f"batch_size: expected an integer in [1, {n}], got {batch_size!r}")
    spread = jnp.mean((d - jnp.mean(d)) ** 2)
    scale = 0.0 if n == 1 else (n - batch_size) / (batch_size * (n - 1))
    return jnp.mean(d), spread * scale


def noise_ensemble(
    batch_loss: Callable[[PyTree, jax.Array], jax.Array],
    params: PyTree,
    opt: optax.GradientTransformation,
    direction: jax.Array,
    num_examples: int,
    batch_size: int,
    steps: int,
    runs: int,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    r"""Mean and variance across ``runs`` minibatch runs of :math:`q^\top\theta_k`, k = 0..steps.

    Every run starts at ``params`` with ``opt.init(params)``; at every step it draws
    ``batch_size`` example indices uniformly without replacement, independently of its other
    steps and of the other runs (white sampling noise), and steps on
    ``batch_loss(params, indices)``. Pure (a ``vmap`` over runs): ``jax.jit`` takes it.

    Returns:
      ``(mean, variance)``, each of shape ``(steps + 1,)`` (variance with ``ddof=1``).
    """
    if int(runs) < 2:
        raise ValueError(f"runs: expected an integer >= 2, got {runs!r}")
    if not 1 <= int(batch_size) <= int(num_examples):
        raise ValueError(
            f"batch_size: expected an integer in [1, {num_examples}], got {batch_size!r}"
        )
    vectors = jnp.asarray(direction)[None, :]

    def run(run_key):
        keys = jax.random.split(run_key, steps)
        # a uniform b-subset: where the b largest of N i.i.d. uniforms are (a sort-free draw)
        draw = jax.vmap(
            lambda k: jax.lax.top_k(jax.random.uniform(k, (num_examples,)), batch_size)[1]
        )
        return projected_trajectory(batch_loss, params, opt, vectors, steps, draw(keys))[:, 0]

    paths = jax.vmap(run)(jax.random.split(key, runs))
    return jnp.mean(paths, axis=0), jnp.var(paths, axis=0, ddof=1)


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
    from gdyn_jax.measurements import hessian

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
    :math:`(\lambda_{\max}, q)`; :func:`projected_gradient_noise` gives :math:`\sigma_q^2`
    for batches of ``batch_size``; :func:`noise_ensemble` (``runs`` runs of ``steps`` steps on
    ``batch_loss(params, data, indices)``) the measured spread, and
    :func:`gdyn_jax.linearize.stationary_covariance` the prediction. ``data`` is a pytree
    passed through to the losses: with the same ``batch_loss``, ``example_losses`` and
    ``factory`` objects, one compiled program serves every ``params``, ``data`` and
    ``hparams`` of the same shapes.
    """
    from gdyn_jax import linearize

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

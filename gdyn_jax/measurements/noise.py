r"""Minibatch gradient noise along a Hessian eigenvector, measured on a real loss.

Minibatch training near a point :math:`\theta_0` sees the gradient :math:`g_B = g + w`, with
:math:`w` the sampling noise. Along a direction :math:`q` (an eigenvector of the Hessian, say)
the drive :math:`q^\top w` of a run whose minibatches are drawn independently at every step is
white, of variance

.. math::
    \sigma_q^2 = \frac{S^2}{b}\,\frac{N - b}{N - 1}, \qquad
    S^2 = \frac1N \sum_i (d_i - \bar d)^2, \quad d_i = q^\top \nabla \ell_i(\theta_0),

for batches of :math:`b` of the :math:`N` examples drawn without replacement.
:func:`projected_gradient_noise` measures :math:`\bar d` and :math:`\sigma_q^2` exactly (one
``jax.jvp`` of the per-example losses along :math:`q`); :func:`noise_ensemble` measures the
spread of :math:`q^\top\theta_k` across independent minibatch runs from :math:`\theta_0` (the
deterministic drift that all runs share drops out of the variance across runs). The noise floor
these are set beside, the stationary variance of the rule's closed loop driven by that noise,
is :func:`gdyn_jax.predictions.floor_test`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements.modes import projected_trajectory

__all__ = ["noise_ensemble", "projected_gradient_noise"]

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

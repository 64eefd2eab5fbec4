r"""Kicks along Hessian eigenvectors, measured on a real loss.

Near a minimum :math:`\theta^*` the loss is :math:`L(\theta^* + \delta) \approx L^* +
\tfrac12 \delta^\top H \delta`, and along an eigenvector :math:`q_i` (:math:`H q_i = \lambda_i
q_i`) a rule whose update reads the parameters only through the gradient moves the coordinate
:math:`p_i = q_i^\top \delta` on its own. :func:`minimize` finds a minimum to kick from,
:func:`projected_trajectory` follows :math:`V\theta_t` along a run of an optimizer,
:func:`kick_responses` measures :math:`p_i(k)` after a kick :math:`\delta_0 = c\, q_i` (the
kicked run minus an unkicked run from the same point, so a residual gradient cancels to first
order), and :func:`eigen_residuals` says how exact the eigenpairs used are. The prediction to
set beside these, :math:`p_i(k) = c\,(1 - y_k(\lambda_i))` from the rule's exact closed loop,
is :func:`gdyn_jax.predictions.predicted_kick_response`.

References: Wu, Jing, Du, Chen, Sci. China Inf. Sci. 64(5):150102, 2021 (optimizers as control
systems); Cohen et al., ICLR 2021 (the top Hessian direction at the stability limit).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import hessian

__all__ = [
    "eigen_residuals",
    "kick_responses",
    "minimize",
    "projected_trajectory",
    "relative_error",
]

PyTree = Any


def minimize(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, steps: int, memory_size: int = 20
) -> tuple[PyTree, jax.Array]:
    """``steps`` full-batch L-BFGS steps (``optax.lbfgs`` with its zoom line search) from
    ``params``: a minimum to kick from. Returns ``(params, losses)`` (the loss before each step).
    """
    opt = optax.lbfgs(memory_size=memory_size)
    value_and_grad = optax.value_and_grad_from_state(loss_fn)

    def step(carry, _):
        p, s = carry
        value, grad = value_and_grad(p, state=s)
        u, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=loss_fn)
        return (optax.apply_updates(p, u), s), value

    run = jax.jit(lambda p: jax.lax.scan(step, (p, opt.init(p)), None, length=steps))
    (params, _), losses = run(params)
    return params, losses


def projected_trajectory(
    loss_fn: Callable[..., jax.Array],
    params: PyTree,
    opt: optax.GradientTransformation,
    vectors: jax.Array,
    steps: int,
    batches: Any = None,
) -> jax.Array:
    r""":math:`V \operatorname{vec}(\theta_t)`, t = 0 .. ``steps``, along a run of ``opt``.

    The run starts at ``params`` with ``opt.init(params)`` and takes ``steps`` steps on
    ``loss_fn(params)`` (full batch) or, with ``batches`` (a pytree with a leading axis of
    ``steps``), on ``loss_fn(params, batch_t)``. ``vectors`` are rows in the order of
    ``ravel_pytree(params)`` (as :func:`~gdyn_jax.measurements.top_eigenpairs` gives them).
    Pure: ``jax.jit`` and ``jax.vmap`` take it (over starting points or hyperparameters).

    Returns shape ``(steps + 1, len(vectors))``.
    """

    def project(p):
        return vectors @ ravel_pytree(p)[0]

    def step(carry, batch):
        p, s = carry
        g = jax.grad(loss_fn)(p) if batch is None else jax.grad(loss_fn)(p, batch)
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), project(p)

    _, path = jax.lax.scan(step, (params, opt.init(params)), batches, length=steps)
    return jnp.concatenate([project(params)[None], path])


def kick_responses(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    factory: Callable[..., optax.GradientTransformation],
    hparams: Mapping[str, Any],
    vectors: jax.Array,
    amplitude: float,
    steps: int,
) -> jax.Array:
    r"""Measured :math:`p_i(k)`: the run kicked by ``amplitude * vectors[i]`` minus the unkicked.

    For each setting ``s`` (``hparams``: name -> array of shape ``(S,)``, the optimizer built as
    ``factory(**hparams[s])``) and each direction ``i``, ``opt`` runs full batch for ``steps``
    steps from :math:`\theta^* + c\, v_i` and from :math:`\theta^*` (both from
    ``opt.init``), and the coordinate :math:`v_i^\top(\theta^{(i)}_k - \theta_k)` is recorded.
    All ``S * (k + 1)`` runs are one ``jit(vmap)`` program.

    Returns shape ``(S, k, steps + 1)`` (the kick itself at ``k = 0``).
    """
    flat, unravel = ravel_pytree(params)
    vectors = jnp.asarray(vectors, flat.dtype)
    kicks = jnp.concatenate([jnp.zeros((1, flat.size), flat.dtype), amplitude * vectors])

    def run(hp, kick):
        opt = factory(**hp)
        return projected_trajectory(loss_fn, unravel(flat + kick), opt, vectors, steps)

    hp = {k: jnp.asarray(v, flat.dtype) for k, v in hparams.items()}
    paths = jax.jit(jax.vmap(jax.vmap(run, (None, 0)), (0, None)))(hp, kicks)  # (S, k+1, T, k)
    diagonal = jnp.diagonal(paths[:, 1:] - paths[:, :1], axis1=1, axis2=3)  # (S, T, k)
    return jnp.swapaxes(diagonal, 1, 2)


def relative_error(measured, predicted) -> np.ndarray:
    r""":math:`\|m - p\|_2 / \|p\|_2` along the last axis (time)."""
    measured = np.asarray(measured, np.float64)
    predicted = np.asarray(predicted, np.float64)
    return np.linalg.norm(measured - predicted, axis=-1) / np.linalg.norm(predicted, axis=-1)


def eigen_residuals(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, values, vectors):
    r""":math:`\|H q_i - \lambda_i q_i\| / |\lambda_i|` for eigenpairs of the Hessian of ``loss_fn``
    (``vectors`` as rows in ``ravel_pytree`` order): how far each is from an exact pair."""
    flat, unravel = ravel_pytree(params)
    hq = jax.vmap(lambda q: ravel_pytree(hessian.hvp(loss_fn, params, unravel(q)))[0])(
        jnp.asarray(vectors, flat.dtype)
    )
    values = np.asarray(values, np.float64)
    return np.linalg.norm(np.asarray(hq) - values[:, None] * np.asarray(vectors), axis=1) / np.abs(
        values
    )

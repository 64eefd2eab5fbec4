r"""The sharpness along gradient flow, against flow time: where progressive sharpening goes.

Below its stability limit a rule's iterates follow gradient flow
:math:`\dot\theta = -\nabla L(\theta)` at the rule's effective step
:math:`\eta_{\rm eff}` (its loop gain at :math:`z = 1`: :math:`\eta` for gradient descent,
:math:`\eta/(1-\beta)` for heavy ball and Nesterov), so after :math:`t` steps it sits near the
flow at time :math:`\tau = \eta_{\rm eff} t`, and so does its sharpness, until that reaches
the rule's limit (Cohen et al., ICLR 2021: runs of gradient descent at different step sizes
share one sharpness curve in :math:`\eta t` until each meets its :math:`2/\eta`; Cohen et al.,
ICLR 2025, central flows). One measurement of the flow's sharpness
:math:`S(\tau)` therefore times the edge of stability of every rule and step size: the first
step at which :math:`S(\eta_{\rm eff} t)` reaches the limit.

The flow is integrated by gradient descent with the step :math:`h = f / S` (:math:`f` =
``fraction``: the integrator's own limit is :math:`f = 2`, and at :math:`f = 1` no mode
oscillates), :math:`S` re-measured every ``check_every`` steps by Lanczos
warm-started from the previous top eigenvector (``hessian.tracked_top_eigenvalue``). It stops
once :math:`S` reaches ``until_sharpness``, the flow time reaches ``until_time``, or after
``max_steps`` steps; one ``lax.while_loop``, pure, so ``jax.vmap`` runs several
initialisations at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gdyn_jax.measurements import hessian

__all__ = ["SharpnessFlow", "sharpness_along_flow"]

PyTree = Any


class SharpnessFlow(NamedTuple):
    """The flow's sharpness at its checks: ``time`` and ``sharpness``, ``(K + 1,)`` with
    ``K = ceil(max_steps / check_every)`` (NaN after the last check); ``steps`` the gradient
    steps taken; ``checks`` the checks made after the start."""

    time: jax.Array
    sharpness: jax.Array
    steps: jax.Array
    checks: jax.Array


def check_flow_options(max_steps: Any, check_every: Any, fraction: Any) -> None:
    """A one-line ``ValueError`` naming the first bad option of :func:`sharpness_along_flow`."""
    for name, value in (("max_steps", max_steps), ("check_every", check_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if not 0.0 < float(fraction) < 2.0:
        raise ValueError(f"fraction: expected a number in (0, 2), got {fraction!r}")


def sharpness_along_flow(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    key: jax.Array,
    *,
    until_sharpness: float | jax.Array,
    until_time: float | jax.Array,
    max_steps: int,
    check_every: int = 20,
    fraction: float = 1.0,
    iters: int = 20,
) -> SharpnessFlow:
    r"""The sharpness of ``loss_fn`` along its gradient flow from ``params`` (module doc)."""
    check_flow_options(max_steps, check_every, fraction)
    flat, unravel = ravel_pytree(params)

    def loss(p):
        return loss_fn(unravel(p))

    grad = jax.grad(loss)
    checks = -(-int(max_steps) // int(check_every))

    def top(p, previous):
        return hessian.tracked_top_eigenvalue(loss, p, previous, key, iters)

    def chunk(p, h):
        return jax.lax.fori_loop(0, int(check_every), lambda _, q: q - h * grad(q), p)

    start = top(flat, jnp.zeros_like(flat))
    times = jnp.full((checks + 1,), jnp.nan, flat.dtype).at[0].set(0.0)
    values = times.at[0].set(start.value)

    def cond(c):
        k, _, _, tau, s, *_ = c
        going = (s < until_sharpness) & (tau < until_time) & jnp.isfinite(s) & (s > 0)
        return (k < checks) & going

    def body(c):
        k, p, vector, tau, s, times, values = c
        h = fraction / s
        p = chunk(p, h)
        tracked = top(p, vector)
        tau = tau + check_every * h
        times, values = times.at[k + 1].set(tau), values.at[k + 1].set(tracked.value)
        return k + 1, p, tracked.vector, tau, tracked.value, times, values

    zero = jnp.zeros((), flat.dtype)
    init = (jnp.int32(0), flat, start.vector, zero, start.value, times, values)
    k, *_, times, values = jax.lax.while_loop(cond, body, init)
    return SharpnessFlow(times, values, k * int(check_every), k)

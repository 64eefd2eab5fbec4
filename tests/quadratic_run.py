"""The reference the linearize tests compare against: the real optax run on a quadratic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def real_run(opt, h: float, steps: int, *, params=None, state=None) -> np.ndarray:
    """θ_t, t = 0 .. steps-1, of ``opt`` on ½ h (θ - 1)² from θ_0 = 0 (the step response).

    The gradient is taken where the rule says (``.fast`` of ``optax.LookaheadParams``); one
    jitted ``lax.scan`` in float64, as the linear systems are computed.
    """
    with jax.enable_x64(True):
        p = jnp.zeros(1) if params is None else params
        s = opt.init(p) if state is None else state

        def view(q):
            return q.fast if isinstance(q, optax.LookaheadParams) else q

        def body(carry, _):
            q, st = carry
            theta = view(q)
            updates, st = opt.update(h * (theta - 1.0), st, q)
            return (optax.apply_updates(q, updates), st), theta[0]

        run = jax.jit(lambda: jax.lax.scan(body, (p, s), None, length=steps)[1])
        return np.asarray(run())

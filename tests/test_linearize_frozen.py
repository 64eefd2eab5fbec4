"""Adam with its preconditioner frozen: an exact linear loop in (θ, m), limits from its code.

With ``nu`` and ``count`` frozen at c, Adam steps by -η m̂ / P with m̂ = m / (1 - β1^c) and
P = √(ν / (1 - β2^c)) + ε: EMA momentum with gain η(1-β1)/(P(1-β1^c)), whose stability limit
(Jury's criterion on its characteristic polynomial, as for ema_momentum) is
P (2 + 2β1)(1 - β1^c) / (η (1 - β1)): 38/η at β1 = 0.9, P = 1 and a late count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers

ETA, B1, B2, EPS = 0.01, 0.9, 0.999, 1e-8


def _frozen_state(opt, P: float, count: int):
    """Adam's state with the preconditioner sqrt(nu_hat) + eps equal to P at this count."""
    with jax.enable_x64(True):
        state = opt.init(jnp.zeros(1))
        nu = (P - EPS) ** 2 * (1 - B2**count)
        adam = state[0]._replace(count=jnp.asarray(count, jnp.int32), nu=jnp.full(1, nu))
        return (adam, *state[1:])


@pytest.mark.parametrize("make", [optax.adam, optimizers.adam], ids=["optax", "gdyn"])
@pytest.mark.parametrize("P", [1.0, 3.0, 0.25])
def test_frozen_preconditioner_limit(make, P):
    opt = make(ETA, B1, B2, EPS)
    state = _frozen_state(opt, P, 10_000)  # late: 1 - 0.9^10000 == 1 in float64
    system = lz.linearize(opt, 1.0, state=state, freeze=("nu", "count"))
    assert system.exact is True and system.reason == ()
    assert system.frozen == ("[0].count", "[0].nu") and system.A.shape == (2, 2)
    limit = lz.max_stable_curvature(opt, state=state, freeze=("nu", "count"))
    assert limit == pytest.approx(P * (2 + 2 * B1) / (ETA * (1 - B1)), rel=1e-9)
    if P == 1.0:
        assert limit == pytest.approx(38 / ETA, rel=1e-9)


def test_the_frozen_count_is_the_bias_correction_the_step_uses():
    opt = optax.adam(ETA, B1, B2, EPS)
    count = 3
    state = _frozen_state(opt, 1.0, count)
    limit = lz.max_stable_curvature(opt, state=state, freeze=("nu", "count"))
    expected = (2 + 2 * B1) * (1 - B1**count) / (ETA * (1 - B1))
    assert limit == pytest.approx(expected, rel=1e-9)


def test_the_frozen_loop_is_the_real_adam_step_with_nu_held():
    # one step of the frozen system equals optax's adam update with the new nu replaced by the
    # held one, computed here by hand from the update equations
    opt = optax.adam(ETA, B1, B2, EPS)
    state = _frozen_state(opt, 2.0, 50)
    with jax.enable_x64(True):
        mu = jnp.array([0.3])
        state = (state[0]._replace(mu=mu), *state[1:])
        theta, h, r = 0.4, 1.5, 1.0
        system = lz.linearize(
            opt, h, params=jnp.array([theta]), state=state, freeze=("nu", "count")
        )
    g = h * (theta - r)
    m_new = B1 * 0.3 + (1 - B1) * g
    P = np.sqrt(float(state[0].nu[0]) / (1 - B2**50)) + EPS
    theta_new = theta - ETA * m_new / (1 - B1**50) / P
    x = np.array([theta, 0.3])
    assert (system.A @ x + system.B @ np.array([r, 0.0]))[0] == pytest.approx(theta_new, rel=1e-13)


def test_without_freezing_adam_is_not_exact():
    opt = optax.adam(ETA)
    state = _frozen_state(opt, 1.0, 10_000)
    assert lz.linearize(opt, 1.0, state=state).reason == ("nonlinear", "time-varying")


def test_freeze_errors_name_the_argument():
    opt = optax.adam(ETA)
    with pytest.raises(ValueError, match="^freeze: \\['preconditioner'\\]"):
        lz.linearize(opt, 1.0, freeze=("preconditioner",))
    with pytest.raises(ValueError, match="^freeze"):
        lz.linearize(opt, 1.0, freeze=3)
    # a pytree of bools shaped like the state works as well as names
    with jax.enable_x64(True):
        state = opt.init(jnp.zeros(1))
    mask = jax.tree.map(lambda _: False, state)
    mask = (mask[0]._replace(nu=True, count=True), *mask[1:])
    state = _frozen_state(opt, 1.0, 10_000)
    assert lz.linearize(opt, 1.0, state=state, freeze=mask).exact is True

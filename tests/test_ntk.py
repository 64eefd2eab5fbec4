"""The NTK loop: the kernel against J Jᵀ, the mode responses against linearize, the prediction
against the linearised network trained by optax, and the continuous baseline against
neural-tangents' closed forms (written here: neural-tangents 0.6.5, archived, imports
tensorflow through jax2tf at import time, so it is not installable with this project's JAX
without TensorFlow)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.linalg

from gdyn_jax import linearize, models, optimizers
from gdyn_jax.measurements import ntk
from gdyn_jax.predictions import mode_loops, ntk_loop, predicted_kick_response
from gdyn_jax.sweep import losses


def _net(widths=(24, 16), activation="relu", n=10, seed=0):
    module = models.get("fc", 4, widths=widths, activation=activation)
    x = jax.random.normal(jax.random.key(seed), (n, 7))
    variables = module.init(jax.random.key(seed + 1), x[:1])
    return module, variables, x


def _apply(module):
    return lambda p, x: module.apply({"params": p}, x)


def test_structured_kernel_is_the_jacobian_product():
    module, variables, x = _net()
    x2 = jax.random.normal(jax.random.key(5), (6, 7))
    assert ntk.structured_layers(module, variables, x[:1])
    direct = np.asarray(ntk.ntk_direct(_apply(module), variables["params"], x, x2))
    got = ntk.empirical_ntk(module, variables, x, x2)
    assert got.shape == (40, 24)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-5 * np.abs(direct).max())
    square = ntk.empirical_ntk(module, variables, x)
    np.testing.assert_allclose(square, square.T, atol=1e-5 * np.abs(square).max())


class _Normed(nn.Module):
    """A dense layer and a LayerNorm (its scale and bias are not dense parameters)."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.LayerNorm()(nn.tanh(nn.Dense(8)(x))))


def test_blocked_jvps_are_the_fallback_and_agree():
    module = _Normed()
    x = jax.random.normal(jax.random.key(0), (9, 5))
    variables = module.init(jax.random.key(1), x[:1])
    assert not ntk.structured_layers(module, variables, x[:1])
    direct = np.asarray(ntk.ntk_direct(_apply(module), variables["params"], x))
    got = ntk.empirical_ntk(module, variables, x, block=4)  # 27 columns: padded blocks
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-5 * np.abs(direct).max())


@pytest.mark.parametrize(
    "name,hp",
    [
        ("sgd", {"learning_rate": 0.3}),
        ("momentum", {"learning_rate": 0.2, "beta": 0.9}),
        ("nesterov", {"learning_rate": 0.2, "beta": 0.9}),
    ],
)
def test_mode_responses_are_linearize_free_responses(name, hp):
    factory = optimizers.get(name)
    mu = np.array([0.05, 1.0, 3.0, 9.5])  # the last beyond GD's limit 2/0.3
    got = ntk_loop.mode_responses(factory, hp, mu, 40)
    want = predicted_kick_response(factory, mu, 41, 1.0, **hp)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    table = ntk_loop.mode_table(factory, hp, mu, got)
    rho = np.max(np.abs(np.linalg.eigvals(np.asarray(mode_loops(factory, mu, **hp).A))), -1)
    np.testing.assert_allclose(table["pole_modulus"], rho, rtol=1e-12)
    limit = float(linearize.max_stable_curvature(factory(**hp)))
    np.testing.assert_array_equal(table["regime"] == "unstable", mu > limit)


def test_lookahead_response_is_the_lifted_loop():
    hp = {"learning_rate": 0.1, "sync_period": 3, "slow_step_size": 0.5}
    mu = np.array([0.5, 2.0, 15.0])
    lookahead_sgd = optimizers.get("lookahead_sgd")
    r = ntk_loop.mode_responses(lookahead_sgd, hp, mu, 30)
    for i, h in enumerate(mu):  # one period of the lifted loop: 1 - a + a (1 - eta h)^3
        lifted = linearize.linearize_periodic(lookahead_sgd(**hp), float(h))
        per_period = 1 - 0.5 + 0.5 * (1 - 0.1 * h) ** 3
        np.testing.assert_allclose(r[i, 3::3], per_period ** np.arange(1, 11), rtol=1e-9)
        np.testing.assert_allclose(linearize.spectral_radius(lifted), abs(per_period), rtol=1e-9)
    table = ntk_loop.mode_table(lookahead_sgd, hp, mu)  # one lift on diag(mu), cut in blocks
    per_step = np.abs(1 - 0.5 + 0.5 * (1 - 0.1 * mu) ** 3) ** (1 / 3)
    np.testing.assert_allclose(table["pole_modulus"], per_step, rtol=1e-9)
    assert ntk_loop.effective_step(lookahead_sgd, hp) == pytest.approx(0.05, rel=1e-6)
    assert ntk_loop.effective_step(optimizers.momentum, {"learning_rate": 0.1, "beta": 0.9}) == (
        pytest.approx(1.0, rel=1e-6)
    )


def _linear_model_run(module, variables, x, y, opt, steps):
    """optax on the linearised network f0 + J (theta - theta0), square loss: the mean loss."""
    params0 = variables["params"]

    def outputs(p):
        delta = jax.tree.map(jnp.subtract, p, params0)
        f0, change = jax.jvp(lambda q: _apply(module)(q, x), (params0,), (delta,))
        return f0 + change

    def loss(p):
        return jnp.mean(losses.mse(outputs(p), y))

    return optax_losses(loss, params0, opt, steps)


def optax_losses(loss, params0, opt, steps: int) -> np.ndarray:
    """The loss at steps 0 .. ``steps`` of the plain optax loop of ``opt`` on ``loss``."""
    state, p, out = opt.init(params0), params0, []
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    for _ in range(steps + 1):
        value, grad = value_and_grad(p)
        out.append(float(value))
        updates, state = opt.update(grad, state, p)
        p = optax.apply_updates(p, updates)
    return np.array(out)


@pytest.mark.parametrize("name", ["sgd", "nesterov"])
def test_prediction_is_the_linearised_network_trained_by_optax(name):
    module, variables, x = _net(widths=(32,), n=12)
    y = jnp.arange(12) % 4
    loss = losses.mse
    modes = ntk_loop.ntk_modes(module, variables, x, y, loss, exact=True)
    hp = {"learning_rate": 0.9 / float(modes.curvatures[0])}
    if name == "nesterov":
        hp["beta"] = 0.9
    factory = optimizers.get(name)
    predicted = modes.loss(ntk_loop.mode_responses(factory, hp, modes.curvatures, 60))
    measured = _linear_model_run(module, variables, x, y, factory(**hp), 60)
    np.testing.assert_allclose(predicted, measured, rtol=2e-4)


def test_outputs_through_the_kernel_match_the_linear_model():
    module, variables, x = _net(widths=(16,), n=8)
    y = jnp.arange(8) % 4
    modes = ntk_loop.ntk_modes(module, variables, x, y, losses.mse)
    eta = 1.0 / float(modes.curvatures[0])
    r = ntk_loop.mode_responses(optimizers.sgd, {"learning_rate": eta}, modes.curvatures, 20)
    change = modes.displacement(r)  # (21, N*C)
    # gradient descent on the linear model in function space: f <- f - eta/N Theta (f - y)
    theta = ntk.ntk_direct(_apply(module), variables["params"], x)
    f = modes.outputs.reshape(-1)
    target = np.asarray(jax.nn.one_hot(y, 4)).reshape(-1)
    for k in range(21):
        np.testing.assert_allclose(f, modes.outputs.reshape(-1) + change[k], atol=2e-5)
        f = f - eta / 8 * np.asarray(theta) @ (f - target)


def test_continuous_baselines_are_neural_tangents_closed_forms():
    """Gradient flow f_t = y + expm(-eta Theta t / N)(f_0 - y) (nt.predict.gradient_descent_mse)
    and the momentum ODE of nt.predict.gradient_descent in units of sqrt(eta)."""
    module, variables, x = _net(widths=(16,), n=6)
    y = jnp.arange(6) % 4
    modes = ntk_loop.ntk_modes(module, variables, x, y, losses.mse)
    theta = np.asarray(ntk.ntk_direct(_apply(module), variables["params"], x), np.float64) / 6
    f0 = modes.outputs.reshape(-1)
    target = np.asarray(jax.nn.one_hot(y, 4), np.float64).reshape(-1)
    eta, beta, ks = 0.5 / float(modes.curvatures[0]), 0.9, np.arange(0, 41, 5)

    def loss_of(f):
        return 0.5 * np.sum((f - target) ** 2) / 6

    flow = [loss_of(target + scipy.linalg.expm(-eta * theta * k) @ (f0 - target)) for k in ks]
    got = modes.loss(ntk_loop.continuous_responses(modes.curvatures, 40, eta))[ks]
    np.testing.assert_allclose(got, flow, rtol=1e-6)

    dt, m = np.sqrt(eta), (beta - 1.0) / np.sqrt(eta)  # neural-tangents' ODE, time in steps * dt

    def rhs(_, state):
        f, q = state[: f0.size], state[f0.size :]
        return np.concatenate([q, m * q - theta @ (f - target)])

    sol = scipy.integrate.solve_ivp(
        rhs,
        (0, ks[-1] * dt),
        np.concatenate([f0, 0 * f0]),
        t_eval=ks * dt,
        rtol=1e-10,
        atol=1e-12,
    )
    ode = [loss_of(sol.y[: f0.size, i]) for i in range(ks.size)]
    got = modes.loss(ntk_loop.continuous_responses(modes.curvatures, 40, eta, beta))[ks]
    np.testing.assert_allclose(got, ode, rtol=1e-6)


def test_cross_entropy_is_an_approximation_and_exact_refuses_it():
    module, variables, x = _net(widths=(16,), n=8)
    y = jnp.arange(8) % 4
    modes = ntk_loop.ntk_modes(module, variables, x, y, losses.cross_entropy)
    assert not modes.exact
    out = np.asarray(module.apply(variables, x))
    np.testing.assert_allclose(modes.loss0, np.mean(losses.cross_entropy(out, y)), rtol=1e-6)
    # the Gauss-Newton model's loss at step 0 is the loss itself
    r = np.ones((modes.curvatures.size, 1))
    np.testing.assert_allclose(modes.loss(r)[0], modes.loss0, rtol=1e-9)
    with pytest.raises(ValueError, match="exact: the loss is not quadratic"):
        ntk_loop.ntk_modes(module, variables, x, y, losses.cross_entropy, exact=True)


def test_a_rule_that_is_not_affine_is_refused_with_linearize_reason():
    with pytest.raises(ValueError, match="optimizer: not an affine rule.*nonlinear"):
        ntk_loop.check_affine(optimizers.adam, {"learning_rate": 0.1}, 1.0)
    clipped = lambda learning_rate: optax.chain(  # noqa: E731
        optax.clip_by_global_norm(1.0), optax.sgd(learning_rate)
    )
    with pytest.raises(ValueError, match="not an affine rule"):
        ntk_loop.check_affine(clipped, {"learning_rate": 0.1}, 1.0)


def test_settling_steps():
    r = np.array(
        [[1, 0.5, 0.01, 0.03, 0.01, 0.0], [1, 0.5, 0.3, 0.2, 0.1, 0.05], [0, 0, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(ntk_loop.settling_steps(r), [4, -1, 0])


def test_lookahead_sgd_period_is_a_whole_number_of_steps():
    lookahead_sgd = optimizers.get("lookahead_sgd")
    with pytest.raises(ValueError, match=r"^sync_period: expected a whole number of steps >= 1"):
        lookahead_sgd(0.1, sync_period=2.5)
    with pytest.raises(ValueError, match=r"^slow_step_size: expected a value in \[0, 1\]"):
        lookahead_sgd(0.1, slow_step_size=1.5)


@pytest.mark.parametrize("name", ["sgd", "momentum"])
def test_scheduled_prediction_is_the_linearised_network_trained_by_optax(name):
    """A learning-rate schedule makes each mode's loop time-varying: the prediction equals the
    linearised network trained by optax's own optimizer with optax's own schedule."""
    module, variables, x = _net(widths=(32,), n=12)
    y = jnp.arange(12) % 4
    modes = ntk_loop.ntk_modes(module, variables, x, y, losses.mse, exact=True)
    peak, steps = 0.9 / float(modes.curvatures[0]), 60
    unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, steps)
    hp = {"learning_rate": peak} | ({"beta": 0.9} if name == "momentum" else {})
    factory = optimizers.get(name)
    predicted = modes.loss(ntk_loop.mode_responses(factory, hp, modes.curvatures, steps, unit))
    momentum = hp.get("beta")
    reference = optax.sgd(lambda k: peak * unit(k), momentum=momentum)
    measured = _linear_model_run(module, variables, x, y, reference, steps)
    np.testing.assert_allclose(predicted, measured, rtol=2e-4)
    constant = modes.loss(ntk_loop.mode_responses(factory, hp, modes.curvatures, steps))
    assert np.max(np.abs(constant - measured) / measured) > 0.05  # the schedule matters


def test_scheduled_continuous_baselines_integrate_the_odes():
    """Gradient flow at a scheduled step is exp(-eta mu sum s); the momentum ODE with a step
    held over each unit of time against scipy's integrator; a constant schedule is the closed
    form."""
    mu, steps, eta = np.array([3.0, 0.4, 0.02, 0.0]), 40, 0.5
    s = np.asarray(optax.cosine_decay_schedule(1.0, steps)(np.arange(steps)), np.float64)
    flow = ntk_loop.continuous_responses(mu, steps, eta, schedule=s)
    np.testing.assert_allclose(flow[:, -1], np.exp(-eta * mu * s.sum()), rtol=1e-12)
    ode = ntk_loop.continuous_responses(mu, steps, eta, 0.9, schedule=s)

    def rhs(t, z, m):
        return [z[1], -0.1 * z[1] - eta * s[min(int(t), steps - 1)] * m * z[0]]

    for i, m in enumerate(mu):
        ref = scipy.integrate.solve_ivp(
            rhs,
            (0, steps),
            [1.0, 0.0],
            args=(m,),
            t_eval=np.arange(steps + 1),
            rtol=1e-10,
            atol=1e-12,
            max_step=0.05,
        )
        np.testing.assert_allclose(ode[i], ref.y[0], atol=1e-6)
    for beta in (None, 0.9):
        np.testing.assert_allclose(
            ntk_loop.continuous_responses(mu, steps, eta, beta, schedule=np.ones(steps)),
            ntk_loop.continuous_responses(mu, steps, eta, beta),
            atol=1e-12,
        )

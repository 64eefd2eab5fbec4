"""Time-varying and periodic loops against the real optax runs, sympy and python-control.

Every rule is built inside ``jax.enable_x64`` so that its constants and accumulators are
float64, as the linear systems are: the step responses then equal the real runs to rounding.
"""

from __future__ import annotations

import control as ct
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sympy as sp
from quadratic_run import real_run

from gdyn_jax import linearize as lz

H = 2.0
STEPS = 60


def _x64(make):
    with jax.enable_x64(True):
        return make()


# name -> (a maker of the rule, the tag linearize gives it)
TIME_VARYING = {
    "exponential_decay": (lambda: optax.sgd(optax.exponential_decay(0.1, 10, 0.5)), "time-varying"),
    "exponential_decay+momentum": (
        lambda: optax.sgd(optax.exponential_decay(0.1, 10, 0.5), momentum=0.9),
        "time-varying",
    ),
    "cosine": (lambda: optax.sgd(optax.cosine_decay_schedule(0.3, 50)), "time-varying"),
    "inject_hyperparams(linear_schedule)": (
        lambda: optax.inject_hyperparams(optax.sgd)(
            learning_rate=optax.linear_schedule(0.1, 0.01, 30), momentum=0.9
        ),
        "time-varying",
    ),
    "warmup_cosine": (
        lambda: optax.sgd(optax.warmup_cosine_decay_schedule(0.0, 0.2, 10, 60), momentum=0.5),
        "time-varying",
    ),
    "schedule_free_sgd": (lambda: optax.contrib.schedule_free_sgd(0.1, b1=0.9), "time-varying"),
    "lookahead": (lambda: optax.lookahead(optax.sgd(0.1), 3, 0.5), "periodic"),
    "lookahead(momentum)": (
        lambda: optax.lookahead(optax.sgd(0.05, momentum=0.8), 5, 0.6),
        "periodic",
    ),
    "MultiSteps": (
        lambda: optax.MultiSteps(optax.sgd(0.1), 3, accumulator_dtype=jnp.float64),
        "periodic",
    ),
}


@pytest.mark.parametrize("name", list(TIME_VARYING))
def test_time_varying_step_response_is_the_real_run(name):
    make, tag = TIME_VARYING[name]
    opt = _x64(make)
    assert lz.linearize(opt, H).reason == (tag,)
    tv = lz.linearize_time_varying(opt, H, STEPS)  # plain params, even for lookahead
    assert tv.exact is True and tv.reason == () and tv.A.shape[0] == STEPS
    synced = _x64(lambda: optax.LookaheadParams.init_synced(jnp.zeros(1)))
    reference = real_run(opt, H, STEPS, params=synced if name.startswith("lookahead") else None)
    np.testing.assert_allclose(lz.step_response(tv), reference, rtol=0, atol=1e-14)


def test_lookahead_params_and_plain_params_give_the_same_loop():
    opt = _x64(lambda: optax.lookahead(optax.sgd(0.1, momentum=0.5), 4, 0.3))
    synced = _x64(lambda: optax.LookaheadParams.init_synced(jnp.zeros(1)))
    plain = lz.linearize_time_varying(opt, H, 40)
    given = lz.linearize_time_varying(opt, H, 40, params=synced)
    np.testing.assert_array_equal(plain.A, given.A)
    np.testing.assert_allclose(
        lz.step_response(given), real_run(opt, H, 40, params=synced), atol=1e-14
    )


def test_noisy_sgd_is_random_and_time_varying_never_silently_exact():
    opt = _x64(lambda: optax.noisy_sgd(0.1, eta=0.01, key=jax.random.key(0)))
    system = lz.linearize(opt, H)
    assert system.exact is False and system.reason == ("random", "time-varying")
    assert "rng_key" in system.notes[0] and "count" in system.notes[1]
    tv = lz.linearize_time_varying(opt, H, 20)
    assert tv.exact is False and tv.reason == ("random",)
    # the model is the noise-free SGD loop; the real run is not (the draw is not modelled)
    assert np.max(np.abs(lz.step_response(tv) - real_run(opt, H, 20))) > 1e-4


def test_time_varying_sgd_matches_the_sympy_recursion():
    # theta_{t+1} = theta_t - a_t h (theta_t - r): A_t = d theta_{t+1} / d theta_t, and the
    # step response is r (1 - prod_s (1 - a_s h)), both derived symbolically, with the exact
    # a_t = 0.1 * 0.5^(t/3) (a float64 schedule: optax's exponential_decay works in float32).
    opt = optax.sgd(lambda count: 0.1 * 0.5 ** (jnp.asarray(count, jnp.float64) / 3))
    steps = 8
    a = sp.symbols(f"a0:{steps}")
    theta, r, h = sp.Symbol("theta"), sp.Symbol("r"), sp.Rational(2)
    step = [theta - a[t] * h * (theta - r) for t in range(steps)]
    response, value = [], sp.Integer(0)
    for t in range(steps):
        response.append(value)
        value = sp.expand(step[t].subs(theta, value))
    values = {
        a[t]: sp.Rational(1, 10) * sp.Rational(1, 2) ** sp.Rational(t, 3) for t in range(steps)
    }
    tv = lz.linearize_time_varying(opt, float(h), steps)
    for t in range(steps):
        assert tv.A[t, 0, 0] == pytest.approx(
            float(sp.diff(step[t], theta).subs(values)), abs=1e-15
        )
    expected = [float(y.subs(values).subs(r, 1)) for y in response]
    np.testing.assert_allclose(lz.step_response(tv), expected, atol=1e-15)
    # the per-step views: spectral radius |1 - a_t h| and stability limit 2 / a_t
    lrs = np.array([float(values[a[t]]) for t in range(steps)])
    np.testing.assert_allclose(lz.spectral_radius(tv), np.abs(1 - lrs * 2), atol=1e-15)
    np.testing.assert_allclose(lz.max_stable_curvature(opt, steps=steps), 2 / lrs, rtol=1e-9)


def test_per_step_limit_of_heavy_ball_under_a_schedule():
    schedule = _x64(lambda: optax.cosine_decay_schedule(0.2, 20, alpha=0.1))
    opt = _x64(lambda: optax.sgd(schedule, momentum=0.9))
    with jax.enable_x64(True):
        lrs = np.array([float(schedule(jnp.asarray(t, jnp.int32))) for t in range(6)])
    np.testing.assert_allclose(lz.max_stable_curvature(opt, steps=6), 3.8 / lrs, rtol=1e-9)
    with pytest.raises(ValueError, match="^steps"):
        lz.max_stable_curvature(opt)


def test_transition_contraction_is_the_state_transition_of_the_real_run():
    # For SGD the transition over [t, t + w) is prod (1 - a_s h): the real run from theta_t = 1
    # with r = 0 gives it; the window's per-step contraction is its |.|^(1/w).
    opt = _x64(lambda: optax.sgd(optax.exponential_decay(1.6, 5, 0.5)))
    tv = lz.linearize_time_varying(opt, H, 30)
    window = 5
    contraction = lz.transition_contraction(tv, window)
    decay = 1.0 - real_run(opt, H, 31)  # r - theta_t: the product of the factors up to t
    expected = np.abs(decay[window:] / decay[:-window]) ** (1 / window)
    # rtol: 1 - theta_t cancels digits as theta_t -> 1 (down to ~1e-6 here)
    np.testing.assert_allclose(contraction, expected[: contraction.size], rtol=1e-9)
    # expanding over the first window (a h from 3.2 down), contracting once a_t h < 1
    assert contraction[0] > 1 > contraction[-1]


def test_schedule_free_has_no_false_pole_and_converges():
    opt = _x64(lambda: optax.contrib.schedule_free_sgd(0.1, b1=0.9))
    system = lz.linearize(opt, H)
    assert system.A.shape == (2, 2)  # theta and z: b1, weight_sum, max_lr are clock
    tv = lz.linearize_time_varying(opt, H, 400)
    assert lz.transition_contraction(tv, 399)[0] < 1  # the state shrinks over the horizon
    error = np.abs(1.0 - lz.step_response(tv))
    assert error[-1] < 1e-3 and np.all(error[[100, 200, 399]] < error[[50, 100, 200]])
    # per-step limits: at t = 0 the averaging weight is 1 and the step is SGD's, 2/a; as it
    # falls (1/(t+1)) x freezes and z' = z - a h (1 - b1) z + ...: the limit tends to
    # 2/(a (1 - b1)) = 200 (through the marginal averaging pole, not stopped by it)
    limits = lz.max_stable_curvature(opt, steps=1000)
    assert limits[0] == pytest.approx(20.0, rel=1e-9) and np.all(np.diff(limits) > 0)
    assert 0.99 * 200 < limits[-1] < 200


# --------------------------------------------------------------------------- periodic


def _lookahead_lifted_sympy(k: int):
    """The k-step map of lookahead(sgd(a), k, alpha) on h, composed from its update equations.

    Per step: fast' = fast - a h (fast - r); at the step that ends a period (the k-th) the
    slow weights move, slow' = slow + alpha (fast' - slow), and fast' = slow'.
    """
    a, alpha, h, r = sp.symbols("a alpha h r")
    fast, slow = sp.symbols("fast slow")
    state = [fast, slow]
    for t in range(k):
        f_new = state[0] - a * h * (state[0] - r)
        if t == k - 1:
            s_new = state[1] + alpha * (f_new - state[1])
            state = [s_new, s_new]
        else:
            state = [f_new, state[1]]
    state = [sp.expand(x) for x in state]
    Phi = sp.Matrix([[sp.diff(x, v) for v in (fast, slow)] for x in state])
    b = sp.Matrix([sp.diff(x, r) for x in state])
    return Phi, b, (a, alpha, h)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_lifted_lookahead_equals_the_sympy_derivation(k):
    a, alpha, h = 0.1, 0.5, 2.0
    opt = _x64(lambda: optax.lookahead(optax.sgd(a), k, alpha))
    lifted = lz.linearize_periodic(opt, h)
    assert lifted.period == k and lifted.exact is True
    Phi, b, syms = _lookahead_lifted_sympy(k)
    values = dict(zip(syms, (a, alpha, h), strict=True))
    np.testing.assert_allclose(lifted.A, np.array(Phi.subs(values), float), atol=1e-14)
    np.testing.assert_allclose(
        lifted.input_matrix("reference"), np.array(b.subs(values), float), atol=1e-14
    )
    # reference -> fast weights at the sync instants: alpha (1 - q^k) / (z - 1 + alpha - alpha q^k)
    q = 1 - a * h
    tf = lz.transfer_function(lifted)
    np.testing.assert_allclose(tf.den, [1.0, -(1 - alpha + alpha * q**k)], atol=1e-14)
    np.testing.assert_allclose(tf.num, [alpha * (1 - q**k)], atol=1e-14)
    rho = abs(1 - alpha + alpha * q**k)
    assert lz.spectral_radius(lifted) == pytest.approx(rho, rel=1e-12)
    assert lz.spectral_radius(lifted, per_step=True) == pytest.approx(rho ** (1 / k), rel=1e-12)


def test_lifted_step_response_is_the_real_run_at_sync_instants_and_control_agrees():
    opt = _x64(lambda: optax.lookahead(optax.sgd(0.1, momentum=0.6), 4, 0.5))
    synced = _x64(lambda: optax.LookaheadParams.init_synced(jnp.zeros(1)))
    lifted = lz.linearize_periodic(opt, H, params=synced)
    periods = 15
    ours = lz.step_response(lifted, periods)
    reference = real_run(opt, H, 4 * periods, params=synced)[::4]
    np.testing.assert_allclose(ours, reference, atol=1e-14)
    ss = ct.ss(lifted.A, lifted.input_matrix("reference"), lifted.C, 0, dt=1)
    theirs = ct.forced_response(ss, np.arange(periods), np.ones(periods)).outputs
    np.testing.assert_allclose(ours, theirs, atol=1e-13)


def test_multisteps_lifted_is_sgd_on_the_mean_gradient():
    a, k = 0.1, 3
    opt = _x64(lambda: optax.MultiSteps(optax.sgd(a), k, accumulator_dtype=jnp.float64))
    lifted = lz.linearize_periodic(opt, H)
    assert lifted.period == k
    tf = lz.transfer_function(lifted)  # theta <- theta - a h (theta - r) once per period
    np.testing.assert_allclose(tf.den, [1.0, -(1 - a * H)], atol=1e-14)
    np.testing.assert_allclose(tf.num, [a * H], atol=1e-14)
    np.testing.assert_allclose(lz.step_response(lifted, 10), real_run(opt, H, 30)[::3], atol=1e-14)
    assert lz.max_stable_curvature(opt) == pytest.approx(2 / a, rel=1e-9)


def test_lookahead_stability_limit_is_the_lifted_pole_crossing():
    # lifted pole 1 - alpha + alpha (1 - a h)^k crosses -1 at (1 - a h)^k = 1 - 2/alpha
    a, k, alpha = 0.1, 3, 0.5
    opt = _x64(lambda: optax.lookahead(optax.sgd(a), k, alpha))
    q = sp.Symbol("q", real=True)
    (root,) = sp.solve(sp.Eq(q**k, 1 - 2 / sp.Rational(1, 2)), q)
    expected = (1 - float(root)) / a
    assert lz.max_stable_curvature(opt) == pytest.approx(expected, rel=1e-9)


def test_stationary_covariance_of_a_lifted_loop_matches_monte_carlo():
    a, k, sigma = 0.1, 2, 0.5
    opt = _x64(lambda: optax.MultiSteps(optax.sgd(a), k, accumulator_dtype=jnp.float64))
    lifted = lz.linearize_periodic(opt, H)
    var = lz.stationary_covariance(lifted, sigma**2)[0, 0]
    # at the sync instants theta' = (1 - a h) theta - a mean(w): var = a^2 s^2/k / (1 - q^2)
    q = 1 - a * H
    assert var == pytest.approx(a**2 * sigma**2 / k / (1 - q**2), rel=1e-12)


def test_period_errors_name_the_argument():
    sgd_exp = _x64(lambda: optax.sgd(optax.exponential_decay(0.1, 10, 0.5)))
    with pytest.raises(ValueError, match="^period: the rule is not periodic"):
        lz.linearize_periodic(sgd_exp, H)
    lookahead = _x64(lambda: optax.lookahead(optax.sgd(0.1), 3, 0.5))
    with pytest.raises(ValueError, match="^period: .* every 3 steps"):
        lz.linearize_periodic(lookahead, H, period=4)
    assert lz.linearize_periodic(lookahead, H, period=6).period == 6
    with pytest.raises(ValueError, match="^steps"):
        lz.linearize_time_varying(sgd_exp, H, 0)
    with pytest.raises(ValueError, match="^window"):
        lz.transition_contraction(lz.linearize_time_varying(sgd_exp, H, 5), 6)


# ---------------------------------------------------------- per-step numbers of a periodic rule

PERIODIC = {
    "lookahead": lambda: optax.lookahead(optax.sgd(0.1), 3, 0.5),
    "lookahead(momentum)": lambda: optax.lookahead(optax.sgd(0.05, momentum=0.8), 5, 0.6),
    "MultiSteps": lambda: optax.MultiSteps(optax.sgd(0.1), 3, accumulator_dtype=jnp.float64),
}


@pytest.mark.parametrize("name", list(PERIODIC))
def test_per_step_rate_of_a_periodic_rule_is_the_lifted_one_and_the_real_runs(name):
    """linearize of a periodic rule (the clock frozen at one phase) answered rho = 1; its per-step
    rate is rho(Phi_k)^(1/k), the decay per step of the real run over whole periods."""
    opt = _x64(PERIODIC[name])
    per_step = lz.linearize(opt, H)
    assert per_step.reason == ("periodic",) and per_step.lifted.period >= 3
    lifted = lz.linearize_periodic(opt, H)
    rho = lz.spectral_radius(per_step)
    assert rho == lz.spectral_radius(lifted, per_step=True) < 1.0
    k, periods, window = lifted.period, 30, 6
    synced = _x64(lambda: optax.LookaheadParams.init_synced(jnp.zeros(1)))
    params = synced if name.startswith("lookahead") else None
    errors = np.abs(real_run(opt, H, k * periods, params=params) - 1.0)[::k]  # to r = 1
    # the envelope over a window of periods (a complex pair of lifted poles oscillates)
    early, late = errors[window : 2 * window].max(), errors[-window:].max()
    measured = (late / early) ** (1 / (k * (periods - 2 * window)))
    assert measured == pytest.approx(rho, rel=2e-2)
    assert lz.is_stable(per_step) and lz.decide_stable(per_step).outcome == "proven"


@pytest.mark.parametrize(
    ("analysis", "what"),
    [
        (lambda s: lz.transfer_function(s), "the transfer function"),
        (lambda s: lz.step_response(s, 5), "the step response"),
        (lambda s: lz.impulse_response(s, 5), "the impulse response"),
        (lambda s: lz.frequency_response(s), "the frequency response"),
        (lambda s: lz.step_info(s), "step_info"),
        (lambda s: lz.default_steps(s), "default_steps"),
        (lambda s: lz.damping(s), "damping"),
        (lambda s: lz.stationary_covariance(s, 1.0), "the stationary covariance"),
    ],
)
def test_per_step_analyses_of_a_periodic_rule_point_to_the_lifted_system(analysis, what):
    per_step = lz.linearize(_x64(PERIODIC["lookahead"]), H)
    with pytest.raises(ValueError) as info:
        analysis(per_step)
    message = str(info.value)
    assert message.startswith(f"system: {what} of a periodic rule (period 3)")
    assert "linearize_periodic(opt, hessian)" in message and "\n" not in message

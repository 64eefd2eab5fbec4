"""gdyn_jax.optimizers against optax's aliases, a numpy PID oracle, and under jit / vmap.

One jitted trajectory function per optimizer (hyperparameters as traced arguments) is
compiled once for the module and reused by the comparison, loop and trace-count tests.
"""

from __future__ import annotations

import doctest
import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import optimizers
from gdyn_jax.optimizers import _triple_momentum

NAMES = optimizers.names()
STEPS = 30

# Hyperparameters used in the trajectory tests: away from the defaults where a default
# would hide a term (weight decay, eps_root, initial scales), and in range.
SETTINGS: dict[str, dict[str, float]] = {
    "sgd": dict(learning_rate=0.1),
    "momentum": dict(learning_rate=0.05, beta=0.8),
    "ema_momentum": dict(learning_rate=0.2, beta=0.7),
    "nesterov": dict(learning_rate=0.05, beta=0.85),
    "pid": dict(learning_rate=0.01, beta=0.9, ki=2.0, kd=3.0),
    "triple_momentum": dict(mu=0.2, L=2.0),  # the problem's curvatures lie in [0.2, 1.8]
    "robust_momentum": dict(mu=0.2, L=2.0, lam=0.5),  # numpy oracle: test_robust_momentum.py
    "adagrad": dict(learning_rate=0.1, initial_accumulator_value=0.2, eps=1e-6),
    "rmsprop": dict(learning_rate=0.01, decay=0.8, eps=1e-6, initial_scale=0.1),
    "adadelta": dict(learning_rate=0.5, rho=0.8, eps=1e-4, weight_decay=0.01),
    "adam": dict(learning_rate=0.01, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8),
    "adamw": dict(learning_rate=0.01, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8, weight_decay=0.1),
    "amsgrad": dict(learning_rate=0.01, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8),
    "lars": dict(
        learning_rate=0.5, weight_decay=0.01, trust_coefficient=0.02, eps=1e-6, momentum=0.8
    ),
    # a period whose scaled values below (x 0.9, 0.8, 0.7, 0.55) are whole numbers of steps
    "lookahead_sgd": dict(learning_rate=0.1, sync_period=20, slow_step_size=0.4),
}
NUMPY_ORACLE = ("pid", "triple_momentum", "robust_momentum")  # no optax alias: numpy oracles below


def _optax_equivalent(name: str, hp: dict[str, Any]) -> optax.GradientTransformation:
    """optax's alias of the same name, or the stated equivalent."""
    if name == "sgd":
        return optax.sgd(hp["learning_rate"])
    if name == "momentum":
        return optax.sgd(hp["learning_rate"], momentum=hp["beta"])
    if name == "ema_momentum":
        return optax.sgd(hp["learning_rate"] * (1 - hp["beta"]), momentum=hp["beta"])
    if name == "nesterov":
        return optax.sgd(hp["learning_rate"], momentum=hp["beta"], nesterov=True)
    if name == "lookahead_sgd":
        return _on_plain_params(
            optax.lookahead(optax.sgd(hp["learning_rate"]), hp["sync_period"], hp["slow_step_size"])
        )
    return getattr(optax, name)(**hp)


def _on_plain_params(lookahead: optax.GradientTransformation) -> optax.GradientTransformation:
    """optax.lookahead on plain parameters (the fast ones), its slow ones kept in the state."""

    def init(params):
        return params, lookahead.init(params)

    def update(grads, state, params):
        both = optax.LookaheadParams(fast=params, slow=state[0])
        updates, inner = lookahead.update(grads, state[1], both)
        moved = optax.apply_updates(both, updates)
        return jax.tree.map(jnp.subtract, moved.fast, params), (moved.slow, inner)

    return optax.GradientTransformation(init, update)


# ---------------------------------------------------------------------------------------
# A small pytree problem with parameter-dependent, non-linear gradients.

PARAMS0 = {
    "w": jnp.linspace(-1.0, 1.5, 12, dtype=jnp.float32).reshape(3, 4),
    "b": jnp.array([0.3, -0.7, 1.1, 0.0, 2.0], jnp.float32),
}
CURV = jax.tree.map(lambda p: 0.5 + jnp.abs(jnp.cos(3.0 * p)), PARAMS0)
TARGET = jax.tree.map(lambda p: 0.2 * jnp.sin(5.0 * p), PARAMS0)


def grad_fn(params):
    """Gradient of sum(h/2 (p - r)^2 + 0.3 sin p)."""
    return jax.tree.map(lambda p, h, r: h * (p - r) + 0.3 * jnp.cos(p), params, CURV, TARGET)


def trajectory(opt: optax.GradientTransformation, params=PARAMS0, steps: int = STEPS):
    """Params after each of `steps` steps, stacked along a leading axis."""

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return path


def assert_trees_close(actual, expected, rtol=1e-5, atol=1e-6):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol),
        actual,
        expected,
    )


def _as_f32(hp: dict[str, float]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in hp.items()}


TRACES: dict[str, int] = {}


@functools.cache
def runner(name: str):
    """(jit(hparams -> trajectory) counting its traces in TRACES[name], the plain function)."""

    def run(hp):
        return trajectory(optimizers.get(name)(**hp))

    def counted(hp):
        TRACES[name] = TRACES.get(name, 0) + 1
        return run(hp)

    return jax.jit(counted), run


@functools.cache
def reference_paths(name: str) -> dict[str, Any]:
    """Trajectories of optax's equivalent and of ours inside optax.inject_hyperparams.

    Both in one jitted program (one compilation per optimizer for the module).
    """
    hp = SETTINGS[name]

    def paths():
        out = {"injected": trajectory(optax.inject_hyperparams(optimizers.get(name))(**hp))}
        if name not in NUMPY_ORACLE:  # optax has no such alias; see the numpy oracles below
            out["optax"] = trajectory(_optax_equivalent(name, hp))
        return out

    return jax.jit(paths)()


# ---------------------------------------------------------------------------------------
# Registry.


def test_names_and_get():
    assert set(NAMES) == set(SETTINGS)
    for name in NAMES:
        assert callable(optimizers.get(name))
    with pytest.raises(ValueError, match="^optimizer: unknown optimizer 'adamx'"):
        optimizers.get("adamx")


def test_hyperparameters_of_momentum_family():
    assert optimizers.hyperparameters("sgd") == {"learning_rate": None}
    for name in ("momentum", "ema_momentum", "nesterov"):
        assert optimizers.hyperparameters(name) == {"learning_rate": None, "beta": 0.9}
    assert optimizers.hyperparameters("pid") == {
        "learning_rate": None,
        "beta": 0.9,
        "ki": 5.0,
        "kd": 10.0,
    }


OPTAX_NAMED = ("adagrad", "rmsprop", "adadelta", "adam", "adamw", "amsgrad", "lars")


@pytest.mark.parametrize("name", OPTAX_NAMED)
def test_signature_matches_optax_alias(name):
    ours = inspect.signature(optimizers.get(name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert set(ours) == set(theirs)
    for arg, param in theirs.items():
        assert ours[arg].default == param.default, arg
    numeric = optimizers.hyperparameters(name)
    assert set(numeric) == set(SETTINGS[name])
    for arg, default in numeric.items():
        expected = theirs[arg].default
        assert default == (None if expected is inspect.Parameter.empty else expected)


# ---------------------------------------------------------------------------------------
# Trajectories against the references.


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NUMPY_ORACLE])
def test_trajectory_matches_optax(name):
    hp = SETTINGS[name]
    ours = runner(name)[0](_as_f32(hp))
    ref = reference_paths(name)["optax"]
    rtol = 1e-4 if name == "ema_momentum" else 1e-5  # a(1-b) v vs a v': rounding differs
    assert_trees_close(ours, ref, rtol=rtol)
    assert not np.allclose(ours["w"][-1], PARAMS0["w"])  # it moved


def pid_numpy(params, hp, steps=STEPS):
    """An et al.'s rule written out in float64 numpy (zero initial buffers)."""
    lr, beta, ki, kd = (hp[k] for k in ("learning_rate", "beta", "ki", "kd"))
    theta = {k: np.asarray(v, np.float64) for k, v in params.items()}
    curv = {k: np.asarray(v, np.float64) for k, v in CURV.items()}
    target = {k: np.asarray(v, np.float64) for k, v in TARGET.items()}
    integral = {k: np.zeros_like(v) for k, v in theta.items()}
    deriv = {k: np.zeros_like(v) for k, v in theta.items()}
    prev = {k: np.zeros_like(v) for k, v in theta.items()}
    path = {k: [] for k in theta}
    for _ in range(steps):
        for k in theta:
            g = curv[k] * (theta[k] - target[k]) + 0.3 * np.cos(theta[k])
            integral[k] = beta * integral[k] + g
            deriv[k] = beta * deriv[k] + (1 - beta) * (g - prev[k])
            prev[k] = g
            theta[k] = theta[k] - lr * (g + ki * integral[k] + kd * deriv[k])
            path[k].append(theta[k].copy())
    return {k: np.stack(v) for k, v in path.items()}


@pytest.mark.parametrize(
    "hp",
    [
        SETTINGS["pid"],
        dict(learning_rate=0.005, beta=0.5, ki=5.0, kd=10.0),
        dict(learning_rate=0.02, beta=0.7, ki=3.0, kd=0.0),
    ],
    ids=["setting", "default-gains", "no-derivative"],
)
def test_pid_matches_numpy_oracle(hp):
    ours = runner("pid")[0](_as_f32(hp))
    assert_trees_close(ours, pid_numpy(PARAMS0, hp), rtol=1e-4, atol=1e-5)


def triple_momentum_numpy(params, mu, L, steps=STEPS):
    """Van Scoy et al.'s published recursion in float64 numpy: y_k (the gradient points) and
    x_k (the outputs), with xi_{-1} = xi_0 = theta_0."""
    rho = 1 - np.sqrt(mu / L)
    alpha, beta = (1 + rho) / L, rho**2 / (2 - rho)
    gamma, delta = rho**2 / ((1 + rho) * (2 - rho)), rho**2 / (1 - rho**2)
    xi = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xi_prev = {k: v.copy() for k, v in xi.items()}
    curv = {k: np.asarray(v, np.float64) for k, v in CURV.items()}
    target = {k: np.asarray(v, np.float64) for k, v in TARGET.items()}
    ys, xs = {k: [] for k in xi}, {k: [] for k in xi}
    for _ in range(steps):
        for k in xi:
            y = (1 + gamma) * xi[k] - gamma * xi_prev[k]
            g = curv[k] * (y - target[k]) + 0.3 * np.cos(y)
            xi[k], xi_prev[k] = (1 + beta) * xi[k] - beta * xi_prev[k] - alpha * g, xi[k]
            ys[k].append((1 + gamma) * xi[k] - gamma * xi_prev[k])
            xs[k].append((1 + delta) * xi[k] - delta * xi_prev[k])
    return {k: np.stack(v) for k, v in ys.items()}, {k: np.stack(v) for k, v in xs.items()}


@pytest.mark.parametrize("hp", [SETTINGS["triple_momentum"], dict(mu=1.0, L=50.0)])
def test_triple_momentum_matches_published_recursion(hp):
    ys, xs = triple_momentum_numpy(PARAMS0, **hp)
    assert_trees_close(runner("triple_momentum")[0](_as_f32(hp)), ys, rtol=1e-4, atol=1e-5)
    opt = optimizers.triple_momentum(**hp)
    params, state = PARAMS0, opt.init(PARAMS0)
    for _ in range(STEPS):
        updates, state = opt.update(grad_fn(params), state, params)
        params = optax.apply_updates(params, updates)
    out = optimizers.triple_momentum_output(params, state, **hp)
    assert_trees_close(out, jax.tree.map(lambda x: x[-1], xs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("gamma", "nesterov"), [(0.0, False), (0.7, True)])
def test_triple_momentum_family_contains_heavy_ball_and_nesterov(gamma, nesterov):
    """gamma = 0 is optax's heavy ball, gamma = beta optax's Nesterov (LRP 2016, eq. (6.1))."""
    ours = optax.chain(optimizers.scale_by_triple_momentum(0.7, gamma), optax.scale(-0.05))
    ref = optax.sgd(0.05, momentum=0.7, nesterov=nesterov)
    assert_trees_close(
        jax.jit(lambda: trajectory(ours))(), jax.jit(lambda: trajectory(ref))(), rtol=1e-5
    )


def test_triple_momentum_docstring_example():
    result = doctest.testmod(_triple_momentum, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_triple_momentum_range_checks():
    with pytest.raises(ValueError, match=r"^L: expected a value >= mu = 2, got 1$"):
        optimizers.triple_momentum(2.0, 1.0)
    optimizers.triple_momentum(1.0, 1.0)  # kappa = 1: one gradient step of 1/L


def test_pid_without_gains_is_sgd():
    lr = SETTINGS["sgd"]["learning_rate"]
    ours = runner("pid")[0](_as_f32(dict(learning_rate=lr, beta=0.9, ki=0.0, kd=0.0)))
    ref = runner("sgd")[0](_as_f32(dict(learning_rate=lr)))
    assert_trees_close(ours, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_learning_rate_schedule(name):
    hp = dict(SETTINGS[name])
    hp["learning_rate"] = optax.linear_schedule(hp["learning_rate"], 0.0, STEPS)
    ours = jax.jit(lambda: trajectory(optimizers.get(name)(**hp)))()
    ref = jax.jit(lambda: trajectory(_optax_equivalent(name, hp)))()
    assert_trees_close(ours, ref)


# ---------------------------------------------------------------------------------------
# jit, vmap and traces.

FACTORS = np.array([1.0, 0.8, 0.55], np.float32)  # <= 1 keeps every range valid


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_hyperparameters_equals_loop(name):
    """vmap over all numeric hyperparameters at once (each its own batch of values)."""
    jitted, run = runner(name)
    batched = {k: jnp.asarray(v * FACTORS, jnp.float32) for k, v in SETTINGS[name].items()}
    vmapped = jax.jit(jax.vmap(run))(batched)
    for i in range(len(FACTORS)):
        single = jitted({k: v[i] for k, v in batched.items()})
        member = jax.tree.map(lambda x, i=i: x[i], vmapped)
        assert_trees_close(member, single, rtol=2e-5, atol=1e-6)
    # Every hyperparameter matters: the three members differ.
    assert not np.allclose(vmapped["b"][0], vmapped["b"][-1])


@pytest.mark.parametrize("name", NAMES)
def test_one_trace_per_shape(name):
    jitted, _ = runner(name)
    for factor in (1.0, 0.9, 0.7):
        hp = {k: v * factor for k, v in SETTINGS[name].items()}
        jax.block_until_ready(jitted(_as_f32(hp)))
    assert TRACES[name] == 1


@pytest.mark.parametrize("name", NAMES)
def test_inside_inject_hyperparams(name):
    hp = SETTINGS[name]
    injected = optax.inject_hyperparams(optimizers.get(name))(**hp)
    direct = runner(name)[0](_as_f32(hp))
    assert_trees_close(reference_paths(name)["injected"], direct, rtol=2e-5)
    state = injected.init(PARAMS0)
    assert set(state.hyperparams) == set(hp)


# ---------------------------------------------------------------------------------------
# Argument checks.

BAD_VALUES = {
    "learning_rate": (-0.1, ">= 0"),
    "beta": (1.5, "in [0, 1)"),
    "decay": (1.0, "in [0, 1)"),
    "rho": (-0.2, "in [0, 1)"),
    "b1": (1.0, "in [0, 1)"),
    "b2": (2.0, "in [0, 1)"),
    "momentum": (1.2, "in [0, 1)"),
    "ki": (-1.0, ">= 0"),
    "mu": (0.0, "> 0"),
    "L": (-1.0, "> 0"),
    "kd": (float("nan"), ">= 0"),
    "eps_root": (-1e-3, ">= 0"),
    "initial_accumulator_value": (-1.0, ">= 0"),
    "initial_scale": (-1.0, ">= 0"),
    "weight_decay": (-0.1, ">= 0"),
    "trust_coefficient": (-1.0, ">= 0"),
    "lam": (1.5, "in [0, 1]"),
    "sync_period": (0.0, ">= 1"),
    "slow_step_size": (1.5, "in [0, 1]"),
}


def _bad_cases():
    for name in NAMES:
        for hp in SETTINGS[name]:
            if hp == "eps":
                yield name, hp, (-1.0 if name == "lars" else 0.0)
            else:
                yield name, hp, BAD_VALUES[hp][0]


@pytest.mark.parametrize(("name", "hp", "value"), list(_bad_cases()))
def test_bad_value_rejected(name, hp, value):
    kwargs = dict(SETTINGS[name])
    kwargs[hp] = value
    with pytest.raises(ValueError, match=rf"^{hp}: expected a value "):
        optimizers.get(name)(**kwargs)
    # numpy scalars are concrete too
    kwargs[hp] = np.float32(value)
    with pytest.raises(ValueError, match=rf"^{hp}: expected"):
        optimizers.get(name)(**kwargs)


def test_error_message_format():
    with pytest.raises(ValueError) as info:
        optimizers.momentum(0.1, beta=1.5)
    assert str(info.value) == "beta: expected a value in [0, 1), got 1.5"
    with pytest.raises(ValueError, match=r"^eps: expected a value > 0, got 0"):
        optimizers.adam(0.1, eps=0)
    with pytest.raises(ValueError, match=r"^momentum: expected a value in \[0, 1\)"):
        optimizers.rmsprop(0.1, momentum=1.0)


def test_traced_values_are_not_checked():
    """No Python branch on a traced value: an out-of-range tracer builds fine."""

    def build(beta):
        opt = optimizers.momentum(0.1, beta)
        return opt.update(PARAMS0, opt.init(PARAMS0))[0]

    out = jax.jit(build)(jnp.float32(1.5))
    assert_trees_close(out, jax.tree.map(lambda g: -0.1 * g, PARAMS0))


# Types: every hyperparameter of every constructor is a real number, whatever its range.
WRONG_TYPES = [
    ("a string", "0.1", r"got str '0.1'$"),
    ("a bool", True, r"got bool True$"),
    ("a complex", 0.1 + 0j, r"got complex \(0.1\+0j\)$"),
    ("a list", [0.1], r"got list \[0.1\]$"),
    ("a bool array", np.array(True), r"got a numpy array of dtype bool and shape \(\)$"),
    ("a JAX bool", jnp.asarray(False), r"got a JAX array of dtype bool and shape \(\)$"),
]


def _type_cases():
    for name in NAMES:
        for hp in SETTINGS[name]:
            for label, value, tail in WRONG_TYPES:
                yield pytest.param(name, hp, value, tail, id=f"{name}-{hp}-{label}")


@pytest.mark.parametrize(("name", "hp", "value", "tail"), list(_type_cases()))
def test_wrong_type_refused_at_construction(name, hp, value, tail):
    kwargs = dict(SETTINGS[name])
    kwargs[hp] = value
    with pytest.raises(ValueError, match=rf"^{hp}: expected a real number .*{tail}") as info:
        optimizers.get(name)(**kwargs)
    assert "\n" not in str(info.value)


def test_pid_string_gain_names_the_argument():
    with pytest.raises(ValueError) as info:
        optimizers.pid(0.1, ki="5")
    assert str(info.value) == (
        "ki: expected a real number (int, float or a real-valued array), got str '5'"
    )
    with pytest.raises(ValueError, match=r"^learning_rate: expected .* or an optax schedule, got"):
        optimizers.sgd("0.1")


def test_a_schedule_only_where_the_rule_takes_one():
    schedule = optax.constant_schedule(0.1)
    optimizers.sgd(schedule)
    optimizers.adamw(0.1, weight_decay=schedule)
    with pytest.raises(ValueError, match=r"^beta: expected a real number .*got the callable"):
        optimizers.momentum(0.1, beta=schedule)


@pytest.mark.parametrize(("name", "hp", "value"), list(_bad_cases()))
def test_concrete_jax_arrays_are_range_checked(name, hp, value):
    """A JAX array that is not a tracer is checked like the number it holds."""
    kwargs = dict(SETTINGS[name])
    kwargs[hp] = jnp.asarray(value, jnp.float32)
    with pytest.raises(ValueError, match=rf"^{hp}: expected a value "):
        optimizers.get(name)(**kwargs)


def test_negative_jax_learning_rate_refused_like_a_float():
    with pytest.raises(ValueError) as info:
        optimizers.sgd(jnp.asarray(-0.1))
    assert str(info.value) == "learning_rate: expected a value >= 0, got -0.1"
    with pytest.raises(ValueError, match=r"^learning_rate: expected a value >= 0, got a JAX array"):
        optimizers.sgd(jnp.array([0.1, -0.1]))  # one bad entry is enough


def test_traced_hyperparameters_under_vmap_and_jit():
    """Tracers pass the range check (the caller's business) and give the rule's updates;
    their dtype is still checked (static, no branch on a value)."""

    def step(lr, beta, ki):
        opt = optimizers.pid(lr, beta=beta, ki=ki, kd=0.0)
        return opt.update(PARAMS0, opt.init(PARAMS0))[0]["b"]

    lrs, betas, kis = jnp.array([0.1, 0.2]), jnp.array([0.5, 0.9]), jnp.array([0.0, 2.0])
    out = jax.jit(jax.vmap(step))(lrs, betas, kis)
    expected = -(lrs * (1 + kis))[:, None] * PARAMS0["b"][None]  # I_1 = g, D_1 = (1-beta) g - 0
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"^ki: expected a real number .*traced value of dtype bool"
    ):
        jax.jit(step)(0.1, 0.5, jnp.asarray(True))


def test_boundary_values_accepted():
    optimizers.momentum(0.0, beta=0.0)
    optimizers.pid(0.0, beta=0.0, ki=0.0, kd=0.0)
    optimizers.lars(0.1, eps=0.0, weight_decay=0.0)
    optimizers.adadelta(None)
    optimizers.rmsprop(0.1, momentum=0.9, centered=True)


# ---------------------------------------------------------------------------------------
# State masks and sizes.


def test_mask_adam_state():
    state = optimizers.adam(0.1).init(PARAMS0)
    mask = optimizers.dynamic_state_mask(state)
    assert jax.tree.structure(mask) == jax.tree.structure(state)
    adam_mask = mask[0]
    assert adam_mask.count is False
    assert all(jax.tree.leaves(adam_mask.mu)) and all(jax.tree.leaves(adam_mask.nu))


def test_mask_inject_hyperparams_state():
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.8)
    state = opt.init(PARAMS0)
    mask = optimizers.dynamic_state_mask(state)
    assert jax.tree.structure(mask) == jax.tree.structure(state)
    assert mask.count is False
    assert not any(jax.tree.leaves(mask.hyperparams))
    assert len(jax.tree.leaves(mask.hyperparams)) == len(state.hyperparams) > 0
    inner = mask.inner_state[0]
    assert inner.count is False and all(jax.tree.leaves((inner.mu, inner.nu)))
    # and on shapes only (what state_bytes_per_param uses)
    shaped = optimizers.dynamic_state_mask(jax.eval_shape(opt.init, PARAMS0))
    assert jax.tree.leaves(shaped) == jax.tree.leaves(mask)


@pytest.mark.parametrize("name", NAMES)
def test_mask_of_every_optimizer(name):
    state = optimizers.get(name)(**SETTINGS[name]).init(PARAMS0)
    mask = optimizers.dynamic_state_mask(state)
    for leaf, dynamic in zip(jax.tree.leaves(state), jax.tree.leaves(mask), strict=True):
        assert isinstance(dynamic, bool)
        if dynamic:  # dynamics are float arrays shaped like a parameter
            assert jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim >= 1
        else:
            assert leaf.ndim == 0  # only scalar bookkeeping here


class _ScaledState(NamedTuple):
    trace: Any
    scale: Any  # a float, bookkeeping


def test_register_bookkeeping():
    state = _ScaledState(trace=jnp.zeros(3), scale=jnp.float32(2.0))
    assert optimizers.dynamic_state_mask(state) == _ScaledState(True, True)
    optimizers.register_bookkeeping(_ScaledState, ["scale"])
    assert optimizers.dynamic_state_mask(state) == _ScaledState(True, False)
    assert optimizers.dynamic_state_mask((state, {"count": 1.0})) == (
        _ScaledState(True, False),
        {"count": False},
    )
    assert optimizers.registered_bookkeeping(_ScaledState) == {"scale"}
    with pytest.raises(ValueError, match="fields"):
        optimizers.register_bookkeeping(_ScaledState, ["nope"])
    with pytest.raises(TypeError, match="state_class"):
        optimizers.register_bookkeeping(dict, [])


STATE_BYTES = {
    "sgd": 0,
    "momentum": 4,
    "ema_momentum": 4,
    "nesterov": 4,
    "pid": 12,
    "triple_momentum": 4,
    "robust_momentum": 4,  # the velocity
    "adagrad": 4,
    "rmsprop": 4,
    "adadelta": 8,
    "adam": 8,
    "adamw": 8,
    "amsgrad": 12,
    "lars": 4,
    "lookahead_sgd": 4,  # the slow weights
}


@pytest.mark.parametrize("name", NAMES)
def test_state_bytes_per_param(name):
    assert optimizers.state_bytes_per_param(name) == STATE_BYTES[name]


def test_state_bytes_of_any_transform():
    assert optimizers.state_bytes_per_param(optax.sgd(0.1)) == 0
    assert optimizers.state_bytes_per_param(optax.adam(0.1), jnp.bfloat16) == 4
    injected = optax.inject_hyperparams(optimizers.adam)(learning_rate=0.1)
    assert optimizers.state_bytes_per_param(injected) == 8
    assert optimizers.state_bytes_per_param(optimizers.rmsprop(0.1, momentum=0.9)) == 8


def test_lookahead_refuses_a_sync_period_its_int32_step_count_cannot_hold():
    with pytest.raises(ValueError, match=r"^sync_period: expected at most 2147483647 steps"):
        optimizers.get("lookahead_sgd")(learning_rate=0.1, sync_period=2**40)

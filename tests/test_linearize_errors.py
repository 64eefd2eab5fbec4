"""Bad input: a one-line ValueError naming the argument, before any expensive work."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers


def _raises(name: str, fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError, match=f"^{name}") as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "call",
    [
        lambda opt: lz.linearize(opt, 1.0),
        lambda opt: lz.linearize_time_varying(opt, 1.0, 5),
        lambda opt: lz.linearize_periodic(opt, 1.0),
        lambda opt: lz.max_stable_curvature(opt),
        lambda opt: lz.open_loop(opt),
    ],
)
def test_not_a_gradient_transformation(call):
    assert "'sgd'" in _raises("opt", call, "sgd")


def _transform(update):
    return optax.GradientTransformation(lambda p: {"v": jnp.zeros_like(p)}, update)


def test_updates_with_another_structure_or_shape():
    tupled = _transform(lambda g, s, p=None: ((g, g), s))
    assert "tree structure" in _raises("opt", lz.linearize, tupled, 1.0)
    reshaped = _transform(lambda g, s, p=None: (jnp.concatenate([g, g]), s))
    _raises("opt", lz.linearize, reshaped, 1.0)


def test_a_state_that_changes_shape_between_steps():
    growing = _transform(lambda g, s, p=None: (-g, {"v": jnp.concatenate([s["v"], g])}))
    assert "changes structure or shape" in _raises("opt", lz.linearize, growing, 1.0)
    _raises("state", lz.linearize, optimizers.momentum(0.1), 1.0, state=({"v": 1.0},))


def test_update_that_fails_is_reported_on_the_rule():
    broken = _transform(lambda g, s, p=None: (g @ jnp.ones((7, 7)), s))
    _raises("opt", lz.linearize, broken, 1.0)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"points": 2}, "points"),
        ({"points": 2.5}, "points"),
        ({"lower": 1.0, "upper": 1.0}, "upper"),
        ({"lower": 10.0, "upper": 1.0}, "upper"),
        ({"lower": -1.0}, "lower"),
        ({"lower": 0.0}, "lower"),
        ({"rtol": 0.0}, "rtol"),
        ({"steps": 0}, "steps"),
    ],
)
def test_curvature_search_that_cannot_bracket(kwargs, name):
    _raises(name, lz.max_stable_curvature, optimizers.sgd(0.1), **kwargs)


@pytest.mark.parametrize(
    "noise",
    [[[1.0, 0.5], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]], [[1.0, 2.0], [2.0, 1.0]], -1.0, "x"],
)
def test_noise_covariance_not_symmetric_psd(noise):
    system = lz.linearize(optimizers.sgd(0.1), np.diag([1.0, 2.0]))
    _raises("noise_cov", lz.stationary_covariance, system, noise)


def test_optimal_hyperparameters_bounds_and_grid():
    message = _raises(
        "bounds",
        lz.optimal_hyperparameters,
        optimizers.sgd,
        1.0,
        100.0,
        bounds={"learning_rate": (-1.0, 0.1)},
    )
    assert "learning_rate" in message  # the factory's own check, relayed
    _raises(
        "bounds",
        lz.optimal_hyperparameters,
        optimizers.momentum,
        1.0,
        100.0,
        bounds={"beta": (0.0, 1.5)},
    )
    _raises(
        "bounds",
        lz.optimal_hyperparameters,
        optimizers.sgd,
        1.0,
        100.0,
        bounds={"learning_rate": (0.2, 0.1)},
    )
    _raises("grid_size", lz.optimal_hyperparameters, optimizers.sgd, 1.0, 100.0, grid_size=2)
    _raises("names", lz.optimal_hyperparameters, optimizers.sgd, 1.0, 100.0, names=("beta",))


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"SettlingTimeThreshold": 0.0}, "SettlingTimeThreshold"),
        ({"SettlingTimeThreshold": 1.5}, "SettlingTimeThreshold"),
        ({"RiseTimeLimits": (0.9, 0.1)}, "RiseTimeLimits"),
        ({"RiseTimeLimits": (0.0, 0.9)}, "RiseTimeLimits"),
        ({"RiseTimeLimits": (0.1, 1.0)}, "RiseTimeLimits"),
        ({"RiseTimeLimits": 0.5}, "RiseTimeLimits"),
    ],
)
def test_step_info_thresholds_outside_the_unit_interval(kwargs, name):
    system = lz.linearize(optimizers.sgd(0.1), 1.0)
    _raises(name, lz.step_info, system, 50, **kwargs)
    _raises(name, lz.step_info_from_response, np.linspace(0, 1, 20), 1.0, **kwargs)


@pytest.mark.parametrize("zero", [0.0, [[0.0]], np.zeros((1, 1))])
def test_a_zero_curvature_is_one_case_however_written(zero):
    message = _raises("hessian", lz.linearize, optimizers.sgd(0.1), zero)
    assert message == "hessian: expected a finite curvature > 0, got 0.0"


def test_params_that_do_not_match_the_hessian():
    _raises("params", lz.linearize, optimizers.sgd(0.1), np.eye(2), params=np.zeros(3))

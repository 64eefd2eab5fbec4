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


@pytest.mark.parametrize(
    ("hessian", "expected"),
    [
        (np.array([[2.0 + 1.0j]]), "hessian: expected a real matrix, got a complex one"),
        (np.diag([1.0, 2.0]).astype(complex), "hessian: expected a real matrix, got a complex one"),
        (True, "hessian: expected real numbers, got booleans (True)"),
        (np.eye(2, dtype=bool), "hessian: expected real numbers, got booleans"),
        ("2", "hessian: expected a number or a square matrix, got '2'"),
    ],
)
def test_complex_and_boolean_hessians_are_refused(hessian, expected):
    """A complex Hessian lost its imaginary part and True was read as the curvature 1."""
    for call in (lz.linearize, lz.validate_hessian):
        args = (optimizers.sgd(0.1), hessian) if call is lz.linearize else (hessian,)
        assert _raises("hessian", call, *args).startswith(expected)


@pytest.mark.parametrize(
    ("hessian", "reference", "expected"),
    [
        (np.eye(2), np.ones(3), "reference: expected shape (2,) (the Hessian is 2x2), got"),
        (1.0, np.ones((2, 2)), "reference: expected a number or shape (1,) (the Hessian is 1x1), "),
        (np.eye(2), np.ones((2, 1)), "reference: expected shape (2,) (the Hessian is 2x2), got "),
        (np.eye(2), [1.0, np.nan], "reference: expected finite values"),
    ],
)
def test_a_reference_of_the_wrong_shape_says_the_shapes(hessian, reference, expected):
    message = _raises("reference", lz.linearize, optimizers.sgd(0.1), hessian, reference=reference)
    assert message.startswith(expected)
    assert "got shape (3,)" in _raises(
        "reference", lz.linearize, optimizers.sgd(0.1), np.eye(2), reference=np.ones(3)
    )
    assert lz.linearize(optimizers.sgd(0.1), np.eye(2), reference=[1.0, 2.0]).A.shape == (2, 2)


def test_shape_errors_show_the_shapes_not_tree_definitions():
    tupled = _transform(lambda g, s, p=None: ((g, g), s))
    message = _raises("opt", lz.linearize, tupled, np.eye(2))
    assert "PyTreeDef" not in message
    assert message.endswith("(updates {[0] (2,), [1] (2,)}, parameters (2,))")
    message = _raises("state", lz.linearize, optimizers.momentum(0.1), 1.0, state=({"v": 1.0},))
    assert "PyTreeDef" not in message and "[0].velocity (1,)" in message and "['v'] ()" in message
    growing = _transform(lambda g, s, p=None: (-g, {"v": jnp.concatenate([s["v"], g])}))
    message = _raises("opt", lz.linearize, growing, 1.0)
    assert message.endswith("({['v'] (1,)} -> {['v'] (2,)})")

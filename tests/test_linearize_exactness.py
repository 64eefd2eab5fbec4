"""What `exact` means: leaves classified by what they do, affinity proven and cross-checked,
time-invariance and determinism, with the reasons on the system."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.core import Primitive
from jax.interpreters import ad, batching
from quadratic_run import real_run

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers
from gdyn_jax.linearize import exactness


def _x64(make):
    with jax.enable_x64(True):
        return make()


# rule -> the reasons linearize must give (empty: exact)
CASES = {
    "sgd": (lambda: optimizers.sgd(0.1), ()),
    "pid": (lambda: optimizers.pid(0.1), ()),
    "optax nesterov": (lambda: optax.sgd(0.1, momentum=0.5, nesterov=True), ()),
    "inject_hyperparams constants": (
        lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9),
        (),
    ),
    "constant_schedule": (lambda: optax.sgd(optax.constant_schedule(0.1)), ()),
    "add_decayed_weights": (
        lambda: optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.1)),
        (),
    ),
    "apply_if_finite": (lambda: optax.apply_if_finite(optax.sgd(0.1), 3), ()),
    "zero_nans": (lambda: optax.chain(optax.zero_nans(), optax.sgd(0.1)), ()),
    "clip": (lambda: optax.chain(optax.clip(3.0), optax.sgd(0.01)), ("nonlinear",)),
    "clip_by_global_norm": (
        lambda: optax.chain(optax.clip_by_global_norm(1e10), optax.sgd(0.01)),
        ("nonlinear",),
    ),
    "rmsprop": (lambda: optimizers.rmsprop(0.01), ("nonlinear",)),
    "adam": (lambda: optax.adam(0.01), ("nonlinear", "time-varying")),
    "exponential_decay": (
        lambda: optax.sgd(optax.exponential_decay(0.1, 10, 0.5)),
        ("time-varying",),
    ),
    "schedule_free_sgd": (lambda: optax.contrib.schedule_free_sgd(0.1, b1=0.9), ("time-varying",)),
    "lookahead": (lambda: optax.lookahead(optax.sgd(0.1), 3, 0.5), ("periodic",)),
    "MultiSteps": (lambda: optax.MultiSteps(optax.sgd(0.1), 4), ("periodic",)),
    "noisy_sgd": (
        lambda: optax.noisy_sgd(0.1, key=jax.random.key(1)),
        ("random", "time-varying"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_and_reasons(name):
    make, reasons = CASES[name]
    system = lz.linearize(_x64(make), 2.0)
    assert system.reason == reasons
    assert system.exact is (not reasons)
    assert len(system.notes) == len(reasons)
    for tag, note in zip(reasons, system.notes, strict=True):
        assert note.startswith(f"{tag}: ")


def test_clip_is_not_exact_and_the_loop_shows_why():
    # the example: a step of size 10 ends at 1.47 where the linear model says 3.89
    opt = optax.chain(optax.clip(3.0), optax.sgd(0.01))
    system = lz.linearize(opt, 1.0)
    assert system.exact is False and "max" in system.notes[0]
    with jax.enable_x64(True):
        state = opt.init(jnp.zeros(1))
        u, _ = opt.update(jnp.array([-1000.0]), state, jnp.zeros(1))  # r = 1000 at h = 1
    predicted = system.A[0, 0] * 0.0 + system.B[0, 0] * 1000.0
    assert float(u[0]) == pytest.approx(0.03) and predicted == pytest.approx(10.0)


def test_a_time_varying_dependence_that_is_numerically_constant_is_still_not_exact():
    system = lz.linearize(_x64(lambda: optax.sgd(optax.exponential_decay(0.1, 10, 1.0))), 2.0)
    assert system.reason == ("time-varying",)
    assert "numerically the same A, B after 1, 10, 1000 steps" in system.notes[0]


class _DecayState(NamedTuple):
    count: Any  # despite the name: a trace of gradients, a dynamic state
    velocity: Any  # despite the name: a constant gain, never changed


def _named_against_type() -> optax.GradientTransformation:
    """v <- 0.5 v + g ; u = -gain v : the fields' names say the opposite of what they do."""

    def init(params):
        return _DecayState(count=jnp.zeros_like(params), velocity=jnp.asarray(0.1, params.dtype))

    def update(g, state, params=None):
        trace = 0.5 * state.count + g
        return -state.velocity * trace, _DecayState(count=trace, velocity=state.velocity)

    return optax.GradientTransformation(init, update)


def test_leaves_are_classified_by_what_they_do_not_by_their_names():
    opt = _named_against_type()
    system = lz.linearize(opt, 2.0)
    assert system.exact is True and system.A.shape == (2, 2)
    np.testing.assert_allclose(np.poly(system.A), np.poly([[0.8, -0.05], [2.0, 0.5]]), atol=1e-14)
    with jax.enable_x64(True):
        params = jnp.zeros(3)
        state = opt.init(params)
        by_behaviour = optimizers.dynamic_state_mask(state, opt, params=params)
    assert by_behaviour == _DecayState(count=True, velocity=False)
    assert optimizers.dynamic_state_mask(state) == _DecayState(count=False, velocity=True)
    np.testing.assert_allclose(lz.step_response(lz.linearize(opt, 2.0), 30), real_run(opt, 2.0, 30))


class _CountingState(NamedTuple):
    big: Any  # int32: how many gradient entries exceeded 1 so far


def _counting(read: bool) -> optax.GradientTransformation:
    """SGD with an integer counter of large gradients, used by the step (``read``) or not."""

    def init(params):
        return _CountingState(jnp.zeros((), jnp.int32))

    def update(g, state, params=None):
        big = state.big + jnp.sum(jnp.abs(g) > 1).astype(jnp.int32)
        scale = 0.1 / (1 + big) if read else 0.1
        return -scale * g, _CountingState(big)

    return optax.GradientTransformation(init, update)


def test_an_integer_leaf_that_depends_on_the_gradient():
    # it cannot be linearised: it is held at its value; harmless when the step ignores it,
    # a discrete function of the gradient inside the loop (not affine) when it reads it
    assert lz.linearize(_counting(read=False), 2.0).exact is True
    system = lz.linearize(_counting(read=True), 2.0)
    assert system.reason == ("nonlinear",)
    assert "integer leaf .big depends on the gradient or parameters" in system.notes[0]


def test_schedule_free_bookkeeping_is_clock_not_false_poles():
    opt = _x64(lambda: optax.contrib.schedule_free_sgd(0.1, b1=0.9))
    with jax.enable_x64(True):
        state = opt.init(jnp.zeros(2))
        mask = optimizers.dynamic_state_mask(state, opt, params=jnp.zeros(2))
    assert [name for name in mask._fields if getattr(mask, name) is True] == ["z"]
    assert lz.linearize(opt, 2.0).A.shape == (2, 2)


@pytest.mark.parametrize("name", optimizers.names())
def test_state_bytes_by_behaviour_equal_the_registry(name):
    # the structural mask gives the same bytes as the name-based one for every registered rule
    params = {
        "a": jax.ShapeDtypeStruct((3, 5), jnp.float32),
        "b": jax.ShapeDtypeStruct((7,), jnp.float32),
    }
    hp = {k: (0.1 if v is None else v) for k, v in optimizers.hyperparameters(name).items()}
    if "L" in hp:  # rules tuned for a class S(mu, L) need L > mu
        hp["L"] = 1.0
    opt = optimizers.get(name)(**hp)
    state = jax.eval_shape(opt.init, params)
    mask = optimizers.dynamic_state_mask(state, opt, params=params)
    total = sum(
        int(np.prod(leaf.shape)) * leaf.dtype.itemsize
        for leaf, dynamic in zip(jax.tree.leaves(state), jax.tree.leaves(mask), strict=True)
        if dynamic
    )
    assert total / 22 == optimizers.state_bytes_per_param(name)


def _user_primitive():
    """A primitive the affinity tables cannot know (a user's own): x -> 2 x."""
    double = Primitive("users_double")
    double.def_impl(lambda x: 2.0 * x)
    double.def_abstract_eval(lambda x: x)
    ad.defjvp(double, lambda t, x: double.bind(t))
    batching.primitive_batchers[double] = lambda args, dims: (double.bind(*args), dims[0])
    return double


def test_an_unknown_primitive_is_not_proven_affine():
    double = _user_primitive()
    opt = optax.chain(optax.stateless(lambda g, p: jax.tree.map(double.bind, g)), optax.sgd(0.05))
    system = lz.linearize(opt, 2.0)
    assert system.reason == ("nonlinear",)
    assert "users_double" in system.notes[0] and "unknown" in system.notes[0]
    assert system.A[0, 0] == pytest.approx(0.8)  # numerically it is SGD; unproven all the same


def test_the_numerical_cross_check_spans_scales():
    # a map that is exactly the identity up to 1e6 and saturates beyond (a clip): only the
    # points at scale 1e8 can see it
    z0 = np.array([0.0, 1.0, 0.0])
    zs = exactness.probe_points(z0)
    saturating = np.clip(zs, -1e6, 1e6)
    jac = np.stack([np.diag((np.abs(z) < 1e6).astype(float)) for z in zs])
    assert re.search(r"scale \de\+0[78]$", exactness._affine_failure(zs, saturating, jac, 1e-9))
    small = np.max(np.abs(zs), axis=1) < 1e6
    assert exactness._affine_failure(zs[small], saturating[small], jac[small], 1e-9) is None
    affine = zs @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]]).T
    jacs = np.broadcast_to([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 1.0]], jac.shape)
    assert exactness._affine_failure(zs, affine, jacs, 1e-9) is None
    assert "offset" in exactness._affine_failure(zs, affine + 1.0, jacs, 1e-9)
    assert np.max(np.abs(zs)) > 1e7 and np.min(np.abs(zs[1][zs[1] != 0])) < 1e-6


def test_inject_hyperparams_count_advances_but_nothing_reads_it():
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    system = lz.linearize(opt, 2.0)
    assert system.exact is True and system.A.shape == (2, 2)
    np.testing.assert_allclose(np.poly(system.A), [1.0, -1.7, 0.9], atol=1e-14)


def test_grids_carry_the_structural_proof():
    grid = lz.linearize_grid(optimizers.momentum, {"learning_rate": [0.1, 0.2], "beta": [0.5]}, 2.0)
    assert grid.exact is True and grid.reason == ()

    def scheduled(learning_rate):
        return optax.sgd(optax.exponential_decay(learning_rate, 10, 0.5))

    grid = lz.linearize_grid(scheduled, {"learning_rate": [0.1, 0.2]}, 2.0)
    assert grid.exact is False and grid.reason == ("time-varying",)
    with pytest.raises(ValueError, match="^factory: the rule is not time-invariant"):
        lz.convergence_rate(scheduled, {"learning_rate": [0.1, 0.2]}, [1.0])
    adam = lz.linearize_grid(optimizers.adam, {"learning_rate": [0.01]}, 1.0)
    assert adam.reason == ("nonlinear", "time-varying")

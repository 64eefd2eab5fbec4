"""The optimizer registry for users' factories: register, get, hyperparameters; and the
``learning_rate=None`` rule (refused everywhere; adadelta's None is a unit descent step)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax import optimizers
from gdyn_jax.optimizers import registry


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry, "_CONSTRUCTORS", dict(registry._CONSTRUCTORS))


def every_kind(
    learning_rate,
    beta=0.9,
    mask=None,
    flag=True,
    label="x",
    *args,
    nu: float = 0.5,
    k: int = 3,
    nesterov: bool = False,
    dtype=None,
    **kwargs,
):
    return optax.sgd(learning_rate)


def test_hyperparameters_read_off_any_signature():
    # positional-or-keyword: all, a real default -> float, anything else (required, None, a
    # bool, text) -> None; keyword-only: only real (non-bool) defaults; *args, **kwargs never.
    expected = {
        "learning_rate": None,
        "beta": 0.9,
        "mask": None,
        "flag": None,
        "label": None,
        "nu": 0.5,
        "k": 3.0,
    }
    assert optimizers.hyperparameters(every_kind) == expected
    assert optimizers.required_hyperparameters(every_kind) == ("learning_rate",)
    partial = functools.partial(optimizers.momentum, beta=0.5)  # beta becomes keyword-only
    assert optimizers.hyperparameters(partial) == {"learning_rate": None, "beta": 0.5}
    assert optimizers.hyperparameters(f"{__name__}:every_kind") == expected
    # the package's own: keyword-only options (rmsprop's momentum=None, flags) left out
    assert set(optimizers.hyperparameters("rmsprop")) == {
        "learning_rate",
        "decay",
        "eps",
        "initial_scale",
    }
    assert optimizers.hyperparameters("adadelta")["learning_rate"] is None
    assert optimizers.required_hyperparameters("adadelta") == ()


def test_register_and_get(scratch_registry):
    optimizers.register("every_kind", every_kind)
    assert optimizers.get("every_kind") is every_kind
    assert optimizers.names()[-1] == "every_kind"
    optimizers.register("every_kind", every_kind)  # the same object again: fine
    with pytest.raises(ValueError, match="^name: optimizer 'sgd' is already registered"):
        optimizers.register("sgd", every_kind)
    optimizers.register("sgd", every_kind, overwrite=True)
    assert optimizers.get("sgd") is every_kind
    with pytest.raises(ValueError, match="^name: expected an identifier"):
        optimizers.register("my:rule", every_kind)
    with pytest.raises(ValueError, match="^factory: expected a callable"):
        optimizers.register("rule", 3.0)
    assert optimizers.get(every_kind) is every_kind
    assert optimizers.get(f"{__name__}:every_kind") is every_kind
    with pytest.raises(
        ValueError, match="^optimizer: cannot import module 'no_such_pkg.rules' \\(No module"
    ):
        optimizers.get("no_such_pkg.rules:qhm")
    with pytest.raises(ValueError, match="^optimizer: .* is not callable"):
        optimizers.get(f"{__name__}:math")


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in optimizers.names()
        if n != "adadelta" and "learning_rate" in optimizers.hyperparameters(n)
    ],
)
def test_learning_rate_none_is_refused(name):
    with pytest.raises(ValueError, match=r"^learning_rate: expected a number >= 0 .* got None"):
        optimizers.get(name)(learning_rate=None)


def test_optax_reads_none_as_an_ascent_step():
    # Why None is refused: optax's sgd(None) returns +g, a step up the gradient.
    g = {"w": jnp.array([1.0, -2.0])}
    tx = optax.sgd(None)
    np.testing.assert_array_equal(tx.update(g, tx.init(g))[0]["w"], g["w"])


def test_adadelta_none_is_a_unit_descent_step():
    r"""f(θ) = ½ h θ², θ = 1, h = 2: g = 2. Zeiler's first step with E[g²] = (1-ρ) g² and
    E[Δ²] = 0 is Δθ = -√ε / √((1-ρ) g² + ε) · g: downhill (negative here), of that size."""
    rho, eps, h = 0.9, 1e-6, 2.0
    theta = jnp.array([1.0])
    g = h * theta
    expected = -math.sqrt(eps) / math.sqrt((1 - rho) * 4.0 + eps) * 2.0
    ours = optimizers.adadelta(None, rho=rho, eps=eps)
    update = ours.update(g, ours.init(theta), theta)[0]
    np.testing.assert_allclose(update, [expected], rtol=1e-6)
    assert float(update[0]) < 0  # descent: against the gradient
    unit = optax.adadelta(1.0, rho=rho, eps=eps)
    np.testing.assert_array_equal(update, unit.update(g, unit.init(theta), theta)[0])
    theirs = optax.adadelta(None, rho=rho, eps=eps)  # optax's None: the same step, uphill
    np.testing.assert_array_equal(-update, theirs.update(g, theirs.init(theta), theta)[0])

    # Over 50 steps on the quadratic, ours decreases the loss at every step.
    def run(opt):
        def step(carry, _):
            th, s = carry
            u, s = opt.update(h * th, s, th)
            return (th + u, s), 0.5 * h * jnp.sum((th + u) ** 2)

        return jax.lax.scan(step, (theta, opt.init(theta)), None, length=50)[1]

    losses = run(ours)
    assert bool(jnp.all(jnp.diff(losses) < 0)) and float(losses[-1]) < 0.5 * h

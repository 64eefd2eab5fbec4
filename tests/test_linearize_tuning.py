"""optimal_hyperparameters tunes a factory's own hyperparameters (its signature)."""

from __future__ import annotations

import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers
from gdyn_jax.linearize import stability, tuning


def test_sgd_without_names_tunes_its_learning_rate():
    # GD: max(|1 - a mu|, |1 - a L|) is smallest where both are equal, a = 2 / (mu + L)
    hp, rate = lz.optimal_hyperparameters(optimizers.sgd, 1, 100)
    assert set(hp) == {"learning_rate"}
    assert hp["learning_rate"] == pytest.approx(2 / 101, rel=1e-6)
    assert rate == pytest.approx(99 / 101, rel=1e-7)


def test_fixed_hyperparameters_are_not_tuned():
    # momentum with beta fixed at 0 is GD again
    hp, rate = lz.optimal_hyperparameters(optimizers.momentum, 1, 100, beta=0.0)
    assert set(hp) == {"learning_rate"} and rate == pytest.approx(99 / 101, rel=1e-7)


def test_hyperparameters_of_any_factory_from_its_signature():
    def rule(learning_rate, beta=0.5, *, gain=2, nesterov=False, mask=None):
        return optimizers.momentum(learning_rate, beta)

    assert optimizers.hyperparameters(rule) == {"learning_rate": None, "beta": 0.5, "gain": 2.0}
    assert optimizers.hyperparameters(optimizers.pid) == optimizers.hyperparameters("pid")


def test_old_path_in_stability_forwards_with_a_warning():
    with pytest.warns(DeprecationWarning, match="gdyn_jax.linearize.tuning"):
        assert stability.optimal_hyperparameters is tuning.optimal_hyperparameters
    assert lz.optimal_hyperparameters is tuning.optimal_hyperparameters

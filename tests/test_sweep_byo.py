"""Bring your own optimizer, model, data and loss: all defined in this file, none registered.

A quasi-hyperbolic momentum factory, a Flax regression network, float regression targets and
a squared-error loss go through ``run_sweep`` and ``make_train`` as objects and through
``gdyn sweep`` as import paths; a member is checked against a plain optax loop written out
here, and the two ways in give the same numbers.
"""

from __future__ import annotations

import json
import sys
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gdyn_jax.cli import main
from gdyn_jax.sweep import Arrays, SweepConfig, load_results, make_train, run_sweep

HERE = __name__  # the import path of this module, as pytest imported it


class QHMState(NamedTuple):
    momentum: optax.Updates


def qhm(learning_rate, beta=0.9, nu=0.7):
    """Quasi-hyperbolic momentum (Ma & Yarats 2019): a step along (1 - nu) g + nu m."""
    if isinstance(nu, float) and not 0.0 <= nu <= 1.0:
        raise ValueError(f"nu: expected a value in [0, 1], got {nu}")

    def init(params):
        return QHMState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        m = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, state.momentum, grads)
        step = jax.tree.map(lambda g, m: -learning_rate * ((1 - nu) * g + nu * m), grads, m)
        return step, QHMState(m)

    return optax.GradientTransformation(init, update)


class Net(nn.Module):
    width: int = 8
    outputs: int = 2

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.outputs)(jnp.tanh(nn.Dense(self.width)(x)))


def squared_error(outputs, targets):
    return 0.5 * jnp.sum((outputs - targets) ** 2, axis=-1)


def regression_data() -> Arrays:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2))
    x = rng.normal(size=(96, 3)).astype(np.float32)
    y = (np.sin(x @ w) + 0.05 * rng.normal(size=(96, 2))).astype(np.float32)
    return Arrays(x[:64], y[:64], x[64:], y[64:], name="sine regression")


DATA = regression_data()
GRID = {"learning_rate": [0.1, 0.3], "nu": [0.0, 0.7]}
STEPS, EVAL_EVERY = 20, 10


def config(**changes) -> SweepConfig:
    settings = dict(
        dataset=DATA,
        model=Net(),
        optimizer=qhm,
        loss=squared_error,
        steps=STEPS,
        batch_size=None,
        eval_every=EVAL_EVERY,
        hparams={"beta": 0.8},
    )
    return SweepConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def swept():
    return run_sweep(config(), GRID, 2, progress=False)


def plain_optax_loop(lr: float, nu: float, seed: int) -> list[float]:
    """Full-batch training written out with optax: the train loss at each evaluation."""
    x, y = jnp.asarray(DATA.x_train), jnp.asarray(DATA.y_train)
    model = Net()
    init_key = jax.random.split(jax.random.key(seed), 3)[0]  # as the sweep splits a key
    params = model.init(init_key, x[:1])["params"]
    tx = qhm(lr, beta=0.8, nu=nu)
    state = tx.init(params)

    def loss(p):
        return jnp.mean(squared_error(model.apply({"params": p}, x), y))

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    out = [float(loss(params))]
    for t in range(1, STEPS + 1):
        params, state = step(params, state)
        if t % EVAL_EVERY == 0:
            out.append(float(loss(params)))
    return out


def test_objects_sweep_like_a_plain_optax_loop(swept):
    assert swept["train_loss"].dims == ("learning_rate", "nu", "seed", "step")
    assert "test_accuracy" not in swept  # regression targets: losses only
    assert np.all(swept["diverged_at"].values == -1)
    for lr in GRID["learning_rate"]:
        for nu in GRID["nu"]:
            for seed in (0, 1):
                member = swept["train_loss"].sel(learning_rate=lr, nu=nu, seed=seed)
                np.testing.assert_allclose(member, plain_optax_loop(lr, nu, seed), rtol=1e-5)


def test_make_train_takes_the_same_objects(swept):
    out = jax.jit(make_train(config()))({"learning_rate": 0.3, "nu": 0.7}, jax.random.key(1))
    member = swept.sel(learning_rate=0.3, nu=0.7, seed=1)
    for name in ("train_loss", "test_loss"):
        np.testing.assert_allclose(out[name], member[name], rtol=2e-5, atol=1e-7)
    assert set(out) == {"train_loss", "test_loss", "diverged_at"}


def test_results_record_the_objects_by_path(swept):
    record = json.loads(swept.attrs["config"])
    assert record["optimizer"] == f"{HERE}:qhm"
    assert record["loss"] == f"{HERE}:squared_error"
    assert record["model"] == f"{HERE}:Net"
    assert record["model_kwargs"] == {"width": 8, "outputs": 2}
    assert record["dataset"]["arrays"] == "sine regression"
    assert record["dataset"]["sha256"] == regression_data().sha256
    # The record rebuilds the same sweep: every object in it is importable.
    rebuilt = SweepConfig.from_dict({**record, "dataset": f"{HERE}:regression_data"})
    again = run_sweep(rebuilt, GRID, 2, progress=False)
    np.testing.assert_array_equal(again["train_loss"], swept["train_loss"])


def test_cli_import_paths_give_the_python_api_numbers(swept, tmp_path, capsys):
    argv = [
        "sweep",
        "--dataset",
        f"{HERE}:regression_data",
        "--model",
        f"{HERE}:Net",
        "--optimizer",
        f"{HERE}:qhm",
        "--loss",
        f"{HERE}:squared_error",
        "--batch-size",
        "full",
        "--steps",
        str(STEPS),
        "--eval-every",
        str(EVAL_EVERY),
        "--hp",
        "beta=0.8",
        "--grid",
        "learning_rate=0.1,0.3",
        "--grid",
        "nu=0.0,0.7",
        "--seeds",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    assert "best final test loss" in capsys.readouterr().out
    ds = load_results(tmp_path)
    for name in ("train_loss", "test_loss", "diverged_at"):
        np.testing.assert_array_equal(ds[name], swept[name])


def test_cli_puts_the_working_directory_on_sys_path(mnist1d_data_dir, tmp_path, monkeypatch):
    (tmp_path / "my_rules.py").write_text(
        "import optax\n\n\ndef descent(learning_rate):\n    return optax.sgd(learning_rate)\n"
    )
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    argv = ["sweep", "--model", "logistic", "--optimizer", "my_rules:descent", "--steps", "2"]
    argv += ["--eval-every", "1", "--train-subset", "100", "--grid", "learning_rate=0.1"]
    assert main([*argv, "--no-progress", "--out", str(tmp_path / "out")]) == 0
    assert sys.path == before  # put there for the command only
    record = json.loads(load_results(tmp_path / "out").attrs["config"])
    assert record["optimizer"] == "my_rules:descent"


@pytest.mark.parametrize(
    ("changes", "grid", "match"),
    [
        (
            {},
            {"nu": [0.5, 2.0], "learning_rate": [0.1]},
            "grid: optimizer '.*:qhm' rejects nu=2.0, ",
        ),
        ({}, {"learning_rate": [0.1], "mu": [0.5]}, "^mu: not a numeric hyperparameter"),
        ({}, {"nu": [0.5]}, "^learning_rate: required by optimizer"),
        ({"loss": "cross_entropy"}, {"learning_rate": [0.1]}, "^loss: 'cross_entropy' needs"),
        ({"loss": lambda o, y: o}, {"learning_rate": [0.1]}, r"^loss: expected per-example"),
        ({"model": Net(), "model_kwargs": {"width": 3}}, {"learning_rate": [0.1]}, "^model_kwargs"),
        ({"dataset": "pkg_that_is_not_there:data"}, {"learning_rate": [0.1]}, "^dataset: cannot"),
        ({"optimizer": f"{HERE}:nothing"}, {"learning_rate": [0.1]}, "^optimizer: module"),
    ],
)
def test_bad_objects_are_one_line_errors(changes, grid, match):
    with pytest.raises(ValueError, match=match) as info:
        run_sweep(config(**changes), grid, 1, progress=False)
    assert "\n" not in str(info.value)


def test_a_flax_layer_is_a_model_too():
    ds = run_sweep(config(model=nn.Dense(2)), {"learning_rate": [0.1]}, 1, progress=False)
    loss = ds["train_loss"].values.ravel()
    assert loss.shape == (3,) and loss[-1] < loss[0]


def test_registered_names_work_like_objects(swept, monkeypatch):
    from gdyn_jax import models, optimizers
    from gdyn_jax.optimizers import registry

    monkeypatch.setattr(registry, "_CONSTRUCTORS", dict(registry._CONSTRUCTORS))
    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))
    optimizers.register("qhm", qhm)
    models.register("sine_net", Net())
    assert optimizers.hyperparameters("qhm") == {"learning_rate": None, "beta": 0.9, "nu": 0.7}
    with pytest.raises(ValueError, match="^name: optimizer 'qhm' is already registered"):
        optimizers.register("qhm", lambda learning_rate: optax.sgd(learning_rate))
    ds = run_sweep(config(optimizer="qhm", model="sine_net"), GRID, 2, progress=False)
    np.testing.assert_array_equal(ds["train_loss"], swept["train_loss"])
    assert json.loads(ds.attrs["config"])["optimizer"] == "qhm"


def test_models_get_takes_instances_classes_factories_and_paths():
    from gdyn_jax import models

    net = Net(width=4)
    assert models.get(net) is net
    assert models.get(net, width=6) == Net(width=6)  # fields replaced through clone
    assert models.get(f"{HERE}:Net", outputs=3) == Net(outputs=3)
    assert models.get(lambda num_classes: Net(outputs=num_classes), num_classes=5) == Net(outputs=5)
    assert models.get("logistic", 4).num_classes == 4
    with pytest.raises(ValueError, match="^depth: not an argument of model"):
        models.get(Net, depth=2)
    with pytest.raises(ValueError, match="^model: .* returned int, not a flax Module"):
        models.get(lambda: 3)

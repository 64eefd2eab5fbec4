"""The task check: data, model and loss that do not fit are refused before training.

Every misfit a new user met (issue 21: a model whose outputs do not match the classes, labels
out of range or unseen in training, NaN inputs, a loss that is NaN at the start, a plain
function passed as a model) is a one-line ``UsageError`` naming the dataset, model or loss
and the numbers: through ``check_task`` itself, ``run_sweep``, ``make_train`` and
``gdyn sweep`` (exit 2, no traceback), with the user's own pieces given by import paths into
this module. Never a run reported as "diverged", and refused before the training program
is traced or compiled. A valid task passes, and its initial loss equals one computed here
with flax and optax directly.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sweep_fixtures import cli_command, environment

from gdyn_jax import models
from gdyn_jax.cli import main
from gdyn_jax.errors import UsageError
from gdyn_jax.sweep import Arrays, SweepConfig, TaskCheck, check_task, make_train, run_sweep, train
from gdyn_jax.sweep.task_check import CHECK_BATCH

HERE = __name__  # the import path of this module, as pytest imported it

# --- the user's own pieces, importable as f"{HERE}:name" -------------------------------------

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 5)).astype(np.float32)
Y = (np.arange(96) % 3).astype(np.int32)  # three classes, each in both splits


def arrays(x=X, y=Y, **kwargs) -> Arrays:
    return Arrays(x[:64], y[:64], x[64:], y[64:], **kwargs)


def good() -> Arrays:
    return arrays(name="three classes")


def negative_label() -> Arrays:
    y = Y.copy()
    y[3] = -1
    return arrays(y=y)


def label_3_in_test() -> Arrays:  # declared 3 classes, a test label 3
    y = Y.copy()
    y[70] = 3
    return arrays(y=y, num_outputs=3)


def unseen_test_label() -> Arrays:  # labels 0..2 in training, 5 in the test split
    y = Y.copy()
    y[[70, 80]] = 5
    return arrays(y=y)


def float_test_labels() -> Arrays:
    return Arrays(X[:64], Y[:64], X[64:], Y[64:].astype(np.float32))


def nan_input() -> Arrays:
    x = X.copy()
    x[10, 2] = np.nan
    return arrays(x=x)


def inf_test_input() -> Arrays:
    x = X.copy()
    x[90, 0] = -np.inf
    return arrays(x=x)


class Five(nn.Module):
    """Five outputs, whatever the data."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(5)(x)


class Scalar(nn.Module):
    """One number per example, shape (batch,)."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)[:, 0]


class LogOfInputs(nn.Module):
    """NaN at initialisation wherever an input is negative."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(jnp.log(x))


class Listed(nn.Module):
    """A module with a list field, so not hashable (the check compiles it once)."""

    widths: list = None

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(x)


def plain_function(x):
    return x[:, :3]


def nan_loss(outputs, labels):
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels) * jnp.nan


def sqrt_loss(outputs, labels):  # finite value, infinite gradient at 0
    return jnp.sqrt(jnp.sum(outputs * 0.0, axis=-1))


def argmax_hinge(outputs, labels):  # a user's classification loss: accuracy is measured
    return jnp.sum(
        jax.nn.relu(1.0 + outputs - jnp.take_along_axis(outputs, labels[:, None], 1)), -1
    )


# Compiled at XLA's lowest level: only compile time changes (flax inits are slow to compile).
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def path(name: str) -> str:
    return f"{HERE}:{name}"


# --- each misfit: (config fields, the start of its one-line message) ---------------------------

CASES = {
    "outputs vs classes": (
        {"model": path("Five")},
        r"^model: Five gives 5 outputs per example, but dataset '.*:good' has 3 classes and "
        r"loss 'cross_entropy' needs one output per class, \(batch, 3\)",
    ),
    "outputs vs classes, square loss": (
        {"model": path("Five"), "loss": "mse"},
        r"^model: Five gives 5 outputs per example, but dataset .* has 3 classes and loss "
        r"'mse' needs",
    ),
    "outputs without a class axis": (
        {"model": path("Scalar")},
        r"^model: Scalar gives outputs of shape \(2,\) for 2 examples, but dataset .* has 3 "
        r"classes",
    ),
    "negative label": (
        {"dataset": path("negative_label")},
        r"^dataset: '.*:negative_label' has y_train labels outside \[0, 3\): -1 \(1 example "
        r"of 64, the first at index 3\)",
    ),
    "test label out of range": (
        {"dataset": path("label_3_in_test")},
        r"^dataset: .* has y_test labels outside \[0, 3\): 3 \(1 example of 32, the first at "
        r"index 6\)",
    ),
    "test label never trained on": (
        {"dataset": path("unseen_test_label")},
        r"^dataset: .* has test labels the training set never has: 5 \(2 test examples of 32, "
        r"the first at index 6; 64 training examples\)",
    ),
    "labels of two kinds": (
        {"dataset": path("float_test_labels")},
        r"^dataset: .* has integer training targets \(int32\) but float test targets "
        r"\(float32\)",
    ),
    "NaN input": (
        {"dataset": path("nan_input")},
        r"^dataset: '.*:nan_input' has 1 non-finite value in x_train \(1 example of 64; the "
        r"first, example 10, holds nan\)",
    ),
    "infinite test input": (
        {"dataset": path("inf_test_input")},
        r"^dataset: .* has 1 non-finite value in x_test \(1 example of 32; the first, example "
        r"26, holds -inf\)",
    ),
    "NaN loss at the start": (
        {"loss": path("nan_loss")},
        r"^loss: '.*:nan_loss' of model Logistic is not finite at initialisation: nan on 16 "
        r"of the first 16 examples of '.*:good'",
    ),
    "NaN model output at the start": (
        {"model": path("LogOfInputs")},
        r"^loss: 'cross_entropy' of model LogOfInputs is not finite at initialisation: nan on "
        r"\d+ of the first 16 examples",
    ),
    "infinite gradient at the start": (
        {"loss": path("sqrt_loss")},
        r"^loss: the gradient of '.*:sqrt_loss' is not finite at initialisation on the first "
        r"16 examples of '.*:good' \(model Logistic, parameters \['Dense_0'\]\['bias'\]",
    ),
    "labels vs outputs, user's loss": (
        {"dataset": path("negative_label"), "loss": path("argmax_hinge")},
        r"^dataset: .* has y_train labels outside \[0, 3\): -1",
    ),
    "plain function as a model": (
        {"model": path("plain_function")},
        r"^model: '.*:plain_function' cannot be called with no arguments \(missing a required "
        r"argument: 'x'\); expected a flax.linen.Module instance or class, or a function of "
        r"keyword arguments returning one",
    ),
}


def config(**changes) -> SweepConfig:
    settings = dict(dataset=path("good"), model="logistic", steps=4, batch_size=16, eval_every=2)
    return SweepConfig(**{**settings, **changes})


@pytest.fixture
def never_trains(monkeypatch):
    """The training program's pieces fail if anything traces (so compiles) them."""

    def untouchable(*args, **kwargs):
        raise AssertionError("the training program was traced before the task was refused")

    monkeypatch.setattr(train, "init", untouchable)
    monkeypatch.setattr(train, "advance", untouchable)


@pytest.mark.parametrize("case", list(CASES))
def test_run_sweep_refuses_before_training(case, never_trains, tmp_path):
    changes, match = CASES[case]
    with pytest.raises(UsageError, match=match) as info:
        run_sweep(config(**changes), {"learning_rate": [0.1]}, out=tmp_path, progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "results.npz").exists() and not (tmp_path / "checkpoint").exists()


@pytest.mark.parametrize("case", ["outputs vs classes", "test label never trained on", "NaN input"])
def test_make_train_refuses_too(case, never_trains):
    changes, match = CASES[case]
    with pytest.raises(UsageError, match=match):
        make_train(config(**changes))


@pytest.mark.parametrize("case", ["outputs vs classes", "NaN input", "plain function as a model"])
def test_cli_exit_2_one_line(case, tmp_path, capsys):
    changes, match = CASES[case]
    argv = ["sweep", "--steps", "4", "--eval-every", "2", "--batch-size", "16"]
    for field in ("dataset", "model", "loss"):
        argv += [f"--{field}", changes.get(field, config().__dict__[field])]
    argv += ["--grid", "learning_rate=0.1", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("gdyn sweep: error: ")
    assert "diverged" not in captured.out + captured.err
    assert not (tmp_path / "results.npz").exists()


def test_cli_in_a_fresh_process_exits_2_without_traceback(tmp_path):
    argv = ["sweep", "--dataset", path("unseen_test_label"), "--model", "logistic"]
    argv += [
        "--steps",
        "2",
        "--eval-every",
        "1",
        "--batch-size",
        "16",
        "--grid",
        "learning_rate=0.1",
    ]
    argv += ["--no-progress", "--out", str(tmp_path / "out")]
    done = subprocess.run(
        cli_command(*argv),
        capture_output=True,
        text=True,
        env=environment(),
        cwd=Path(__file__).parent,  # where this module is importable as HERE
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "test labels the training set never has: 5" in done.stderr


def test_check_task_directly_with_objects_and_paths():
    # A user's loss with Five outputs on three classes: labels 0..2 index them, accuracy holds.
    found = check_task(good(), Five(), path("argmax_hinge"))
    assert isinstance(found, TaskCheck)
    assert found.outputs.shape == (2, 5) and found.classes == 3 and found.accuracy
    with pytest.raises(UsageError, match=r"^dataset: in-memory arrays has 1 non-finite value"):
        check_task(nan_input(), models.get("logistic", 3), "cross_entropy")
    with pytest.raises(UsageError, match=r"^dataset: 'mine' has 1 non-finite value"):
        check_task(nan_input(), "logistic", "cross_entropy", dataset_name="'mine'")
    with pytest.raises(
        UsageError, match=r"^loss: the gradient of '.*:sqrt_loss' is not finite .* 'three classes'"
    ):
        check_task(
            path("good"), "logistic", sqrt_loss, batch_size=16, dataset_name="'three classes'"
        )
    with pytest.raises(UsageError, match=r"^model: Five gives 5 outputs per example"):
        check_task(good(), path("Five"), "cross_entropy")
    with pytest.raises(UsageError, match=r"^model: expected a flax.linen.Module, a model name"):
        check_task(good(), 3, "cross_entropy")


def test_a_valid_task_passes_with_the_initial_loss_of_flax_and_optax():
    data = good()
    found = check_task(data, models.get("mlp", 3), "cross_entropy", batch_size=100)
    assert found.classes == 3 and found.accuracy and found.outputs.shape == (2, 3)
    # The same number by hand: parameters from key 0, the first CHECK_BATCH examples.
    x, y = data.x_train[:CHECK_BATCH], data.y_train[:CHECK_BATCH]
    model = models.get("mlp", 3)
    params = jit(model.init)(jax.random.key(0), x[:1])
    logits = jit(model.apply)(params, x)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    np.testing.assert_allclose(found.initial_loss, float(expected), rtol=1e-5)
    # Regression targets with the user's loss: no class checks apply.
    regression = Arrays(X[:64], X[:64, :2], X[64:], X[64:, :2])
    found = check_task(regression, nn.Dense(2), lambda o, t: jnp.sum((o - t) ** 2, -1))
    assert found.classes is None and not found.accuracy and found.initial_loss > 0


def test_an_unhashable_module_is_checked_too():
    found = check_task(good(), Listed(widths=[3]), "cross_entropy")
    assert found.outputs.shape == (2, 3)


def test_a_named_dataset_and_model(mnist1d_data_dir):
    found = check_task("mnist1d", "mlp", "cross_entropy", batch_size=100)
    assert found.classes == 10 and found.outputs.shape == (2, 10)
    assert 2.0 < found.initial_loss < 2.6  # near log(10) = 2.30 at initialisation


# --- gdyn reproduce --out '' (issue 21): refused, nothing written into the working directory --


def test_reproduce_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "goh2017", "--quick", "--out", ""]) == 2
    err = capsys.readouterr().err
    assert err == "gdyn reproduce: error: out: expected a folder to write into, got ''\n"
    assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_an_empty_out(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "--model", "logistic", "--grid", "learning_rate=0.1", "--steps", "100"]
    assert main([*args, "--out", ""]) == 2
    err = capsys.readouterr().err
    assert err == "gdyn sweep: error: out: expected a folder to write into, got ''\n"
    assert list(tmp_path.iterdir()) == []

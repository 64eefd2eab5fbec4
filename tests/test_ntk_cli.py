"""`gdyn predict` and the NTK loop against real training: the sweep's own runs, not seen by the
prediction (full batch: the loss curve and the fast modes; mini-batch: the mean over batch
orders), the JSON fields, and bad input in one line with exit status 2."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import experiments
from gdyn_jax.cli import main
from gdyn_jax.models.fully_connected import FullyConnected
from gdyn_jax.predictions import ntk_noise, ntk_report
from gdyn_jax.predictions import ntk_predict as npred
from gdyn_jax.sweep import SweepConfig

TASK = ["--dataset", "mnist1d", "--model", "fc", "--loss", "mse", "--examples", "64"]


def fc_config(width=512, **fields) -> SweepConfig:
    """One-hidden-layer ReLU network on MNIST-1D, square loss; ``fields``: the rest."""
    return SweepConfig(
        dataset="mnist1d",
        model="fc",
        model_kwargs={"widths": (width,), "activation": "relu"},
        loss="mse",
        **fields,
    )


@pytest.mark.slow
def test_gradient_descent_curve_and_fast_modes_match_the_real_run(mnist1d_data_dir):
    program, hp, state = npred.prepare(fc_config(), {"learning_rate": 0.01}, steps=100, examples=64)
    first = npred.predict_program(program, hp, state, 100)
    lr = 0.5 * 2.0 / first.modes.curvatures[0]  # half of GD's limit at the top curvature
    pred = npred.predict_with(program, {"learning_rate": lr}, first.modes, 100, first.variables)
    run = npred.measured_run(program, {"learning_rate": lr}, 0, 100)
    assert npred.curve_error(pred.train_loss, run.loss)["median"] < 0.02
    out = ntk_report.summary(pred, run)
    assert out["mode_relative_error"]["median"] < 0.05
    # the continuous-time prediction misses the fast modes' oscillation (eta mu >= 0.5)
    assert (
        out["continuous_mode_relative_error"]["median"] > 4 * out["mode_relative_error"]["median"]
    )
    # the outputs, and the test outputs through the cross kernel, at the end
    np.testing.assert_allclose(pred.train_outputs()[-1], run.outputs[-1], atol=0.05)
    x_test = program.data.x_train[:8]  # the train inputs again: the cross kernel is the kernel
    np.testing.assert_allclose(
        pred.test_outputs(x_test)[-1], pred.train_outputs()[-1][:8], atol=1e-4
    )


@pytest.mark.slow
def test_minibatch_expected_curve_is_the_mean_over_batch_orders(mnist1d_data_dir):
    program, hp, state = npred.prepare(
        fc_config(batch_size=16), {"learning_rate": 0.01}, steps=120, examples=64
    )
    first = npred.predict_program(program, hp, state, 120)
    lr = 0.5 * 2.0 / first.modes.curvatures[0]
    pred = npred.predict_with(program, {"learning_rate": lr}, first.modes, 120, first.variables)
    expected, floor = ntk_noise.minibatch_loss(pred, 16)
    run = npred.measured_run(
        program, {"learning_rate": lr}, 0, 120, outputs=False, order_seeds=range(1, 17)
    )
    mean = run.loss.mean(axis=0)
    assert npred.curve_error(expected, mean)["max"] < 0.10
    assert np.all(floor >= 0) and floor[0] == 0 and floor[1:].max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("rule,fraction", [("momentum", 0.2)])
def test_scheduled_curve_matches_the_real_run(mnist1d_data_dir, rule, fraction):
    """A warm-up + cosine schedule: the time-varying loops predict the sweep's real run (not
    seen by the prediction) over the steps before the loss falls below 10 % of its start (after
    that momentum's tail measures the kernel's drift at this width); the constant-rate
    prediction does not."""
    config = dataclasses.replace(fc_config(), schedule="warmup_cosine", warmup_steps=20)
    program, hp, state = npred.prepare(config, {"learning_rate": 0.01}, steps=100, examples=64)
    first = npred.predict_program(program, hp, state, 100)
    limit = {"sgd": 2.0, "momentum": 3.8}[rule] / first.modes.curvatures[0]
    hp = {"learning_rate": fraction * limit} | ({"beta": 0.9} if rule == "momentum" else {})
    config = dataclasses.replace(config, optimizer=rule)
    program, hp, _ = npred.prepare(config, hp, steps=100, examples=64)
    pred = npred.predict_with(program, hp, first.modes, 100, first.variables)
    run = npred.measured_run(program, hp, 0, 100)
    upto = int(np.argmax(run.loss < 0.1 * run.loss[0])) or None
    error = npred.curve_error(pred.train_loss, run.loss, upto)["median"]
    assert error < 0.05
    constant = npred.prepare(
        dataclasses.replace(config, schedule=None, warmup_steps=0), hp, steps=100, examples=64
    )
    unscheduled = npred.predict_with(constant[0], hp, first.modes, 100, first.variables)
    assert npred.curve_error(unscheduled.train_loss, run.loss, upto)["median"] > 4 * error


@pytest.mark.slow
def test_cli_json_with_check(mnist1d_data_dir, capsys, tmp_path):
    args = ["predict", *TASK, "--optimizer", "momentum", "--hp", "learning_rate=0.002"]
    args += ["--steps", "30", "--check", "--json", "--plot", str(tmp_path / "p.png")]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == list(range(31)) and len(out["train_loss"]) == 31
    assert len(out["measured_train_loss"]) == 31 and out["exact"] is True
    for key in ("relative_error", "continuous_relative_error", "mode_relative_error"):
        assert set(out[key]) == {"median", "max"}
    assert "continuous_mode_relative_error" in out
    mode = out["modes"][0]
    assert {"eigenvalue", "pole_modulus", "regime", "settling", "predicted", "continuous"} <= set(
        mode
    )
    assert len(mode["measured"]) == 31
    assert out["relative_error"]["median"] < 0.05
    assert (tmp_path / "p.png").stat().st_size > 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--loss", "cross_entropy", "--exact"], "exact: the loss is not quadratic"),
        (["--optimizer", "rmsprop"], "optimizer: not an affine rule"),
        (["--optimizer", "lars"], "optimizer: not an affine rule"),
        (["--optimizer", "adam", "--exact"], "exact: an adaptive rule's preconditioner moves"),
        (["--optimizer", "adam", "--batch-size", "16"], "batch_size: the frozen-preconditioner"),
        (["--optimizer", "adam", "--precondition-warmup", "0"], "precondition_warmup: expected"),
        (["--model", "tests.test_ntk_cli:three_outputs"], "gives 3 outputs per example"),
        (["--examples", "0"], "examples: expected an integer >= 1"),
        (["--examples", "4001"], "train_subset: 4001 is larger than the training set"),
        (["--batch-size", "16", "--schedule", "cosine"], "schedule: the mini-batch expected"),
    ],
)
def test_cli_bad_input_one_line_exit_2(mnist1d_data_dir, capsys, extra, message):
    args = ["predict", *TASK, "--hp", "learning_rate=0.1", "--steps", "5", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def three_outputs():
    """A model with 3 outputs, for a dataset of 10 classes."""
    return FullyConnected(num_classes=3, widths=(8,))


def test_more_examples_than_memory_refused_with_the_figure(mnist1d_data_dir, monkeypatch):
    monkeypatch.setattr(npred, "available_memory", lambda: 2**28)
    with pytest.raises(ValueError, match=r"examples: 400 examples x 10 outputs need a 4000 x 4000"):
        npred.prepare(fc_config(), {"learning_rate": 0.1}, steps=5, examples=400)


@pytest.mark.slow
def test_ntk_modes_experiment_tiny_run(mnist1d_data_dir, tmp_path):
    """The experiment's tiny run: its rows are the predictions beside the sweep's real runs."""
    summary = experiments.run("ntk_modes", tmp_path, "tiny")
    rows = {(r["rule"], r["fraction"]): r for r in summary["rows"]}
    assert set(rows) == {("gd", 0.5), ("heavy ball", 0.5)}
    gd = rows[("gd", 0.5)]
    assert gd["error"] < 0.1  # width 64, 64 examples: a narrow network, still within 10 %
    assert gd["continuous_mode_error"] > 4 * gd["mode_error"]  # fast modes: discrete time
    assert (tmp_path / "ntk_modes.png").is_file()

"""`gdyn sweep` in-process: flags and a JSON config give the same results as run_sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sweep_fixtures import CLI_FLAGS

from gdyn_jax.cli import main
from gdyn_jax.sweep import load_results

FLAGS = CLI_FLAGS


def test_cli_flags_and_config_file(mnist1d_data_dir, tmp_path, capsys):
    assert main([*FLAGS, "--out", str(tmp_path / "a")]) == 0
    assert "4 members" in capsys.readouterr().out
    a = load_results(tmp_path / "a")
    assert a["train_loss"].dims == ("learning_rate", "beta", "seed", "step")
    from gdyn_jax.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_dict(json.loads(a.attrs["config"]))
    expected = run_sweep(config, {"learning_rate": [0.02, 0.1], "beta": [0.0, 0.9]}, progress=False)
    np.testing.assert_array_equal(a["train_loss"], expected["train_loss"])

    spec = {**json.loads(a.attrs["config"]), "grid": {"learning_rate": [0.02, 0.1]}, "seeds": 1}
    spec["hparams"] = {"beta": 0.9}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(spec))
    assert (
        main(["sweep", "--config", str(path), "--no-progress", "--out", str(tmp_path / "b")]) == 0
    )
    b = load_results(tmp_path / "b")
    np.testing.assert_array_equal(b["test_loss"].sel(seed=0), a["test_loss"].sel(beta=0.9, seed=0))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--grid", "learning_rate=0.1,fast"],
            "grid: learning_rate: expected a number, got 'fast'",
        ),
        (["--grid", "learning_rate="], "grid: learning_rate: empty"),
        (
            ["--grid", "learning_rate=-0.001,0.001", "--grid", "beta=0.5,1.0"],
            "grid: optimizer 'momentum' rejects learning_rate=-0.001, beta=0.5: "
            "learning_rate: expected a value >= 0, got -0.001",
        ),
        (
            ["--grid", "beta=0.5,1.0"],
            "grid: optimizer 'momentum' rejects learning_rate=0.02, beta=1.0: "
            "beta: expected a value in [0, 1), got 1.0",
        ),
        (["--grid", "learning_rate=0.1,nan"], "grid: learning_rate: expected a finite number"),
        (["--grid", "learning_rate=inf"], "grid: learning_rate: expected a finite number"),
        (["--hp", "learning_rate=None"], "hp: learning_rate: expected a number, got 'None'"),
        (["--grid", "momentum=0.1"], "momentum: not a numeric hyperparameter"),
        (["--optimizer", "sgdd"], "optimizer: unknown optimizer 'sgdd'"),
        (["--model", "mlpp"], "model: unknown model 'mlpp'"),
        (["--dataset", "mnist2d"], "dataset: unknown dataset 'mnist2d'"),
        (["--batch-size", "300"], "batch_size: 300 is larger than the training set"),
        (["--hp", "beta"], "hp: expected NAME=VALUE"),
    ],
)
def test_cli_bad_input_one_line_exit_2(mnist1d_data_dir, tmp_path, capsys, extra, message):
    assert main([*FLAGS, *extra, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "results.npz").exists()

"""`gdyn plot DIR` and `gdyn sweep --plot FILE`: what the figure draws, read back from its artists.

The synthetic sweeps are built with ``results.to_dataset`` from numbers chosen here; the stability
limit is checked against the textbook limits of gradient descent and heavy ball on a quadratic
(:math:`h < 2/a` and :math:`h < (2 + 2\\beta)/a`, Polyak 1964), not against ``linearize``; the
real sweep's figure against its own tracked sharpness, and a checkpoint's figure against the
finished sweep it was interrupted from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib import cm, colors
from sweep_fixtures import write_data_module

from gdyn_jax import cli, plotting
from gdyn_jax.commands import sweep_figure
from gdyn_jax.sweep import SweepConfig, load_results, run_sweep
from gdyn_jax.sweep import results as results_lib

STEPS = [0, 10, 20, 30, 40]


def _dataset(grid, seeds, metrics, diverged_at, **config):
    record = {"optimizer": "sgd", "dataset": "toy", "model": "toy", "schedule": None, **config}
    return results_lib.to_dataset(
        metrics, diverged_at, grid, seeds, STEPS, json.dumps(record), 4, "cpu"
    )


def _toy():
    """lr (3) × beta (2) × 2 seeds; test_loss = 1 + lr + beta + seed/10 - step/1000; the member
    (lr=1, beta=0.9, seed 1) diverges at step 30 (NaN from there)."""
    grid = {"learning_rate": [0.01, 0.1, 1.0], "beta": [0.0, 0.9]}
    lr, beta, seed = np.meshgrid(*grid.values(), [0, 1], indexing="ij")
    loss = (1 + lr + beta + seed / 10)[..., None] - np.asarray(STEPS) / 1000
    loss = loss.reshape(-1, len(STEPS)).astype(np.float32)
    diverged = np.full(loss.shape[0], -1, np.int32)
    last = loss.shape[0] - 1  # members are flat in grid order, seeds last
    loss[last, 3:] = np.nan
    diverged[last] = 30
    return _dataset(grid, 2, {"test_loss": loss}, diverged, optimizer="momentum"), loss


def test_curves_coloured_by_value_final_map_and_diverged_steps():
    ds, loss = _toy()
    fig = plotting.sweep_figure(ds, metric="test_loss", x="learning_rate", title="toy")
    (c0, c1), (f0, f1) = np.reshape(fig.axes[:4], (2, 2))
    assert [c0.get_title(), c1.get_title()] == ["beta=0", "beta=0.9"]  # a column per beta
    assert fig.get_suptitle() == "toy"
    scale = cm.ScalarMappable(norm=colors.LogNorm(0.01, 1.0), cmap="viridis")
    runs = loss.reshape(3, 2, 2, len(STEPS))  # lr, beta, seed, step
    for j, ax in enumerate((c0, c1)):
        lines = ax.get_lines()
        assert len(lines) == 3  # one curve per learning rate, the seed band around it
        for lr, line, runs_lr in zip([0.01, 0.1, 1.0], lines, runs[:, j], strict=True):
            np.testing.assert_allclose(line.get_color(), scale.to_rgba(lr))
            np.testing.assert_allclose(line.get_ydata(), np.nanmean(runs_lr, axis=0), rtol=1e-6)
        assert ax.get_yscale() == "log"  # a positive loss
    # Final metric: each seed's last finite evaluation, the diverged seed left out.
    mean0 = f0.get_lines()[0]
    np.testing.assert_allclose(mean0.get_xdata(), [0.01, 0.1, 1.0])
    np.testing.assert_allclose(mean0.get_ydata(), [1.01 + 0.01, 1.1 + 0.01, 2.0 + 0.01], rtol=1e-6)
    np.testing.assert_allclose(f1.get_lines()[0].get_ydata()[-1], 2.0 + 0.9 - 0.04, rtol=1e-6)
    assert f0.get_xscale() == "log"
    # The diverged point: an x above lr = 1 in the beta = 0.9 panel, with its step.
    marks = [line for line in f1.get_lines() if line.get_marker() == "x"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [1.0]
    assert [t.get_text() for t in f1.texts] == ["30 (1/2)"]
    assert not [line for line in f0.get_lines() if line.get_marker() == "x"] and not f0.texts


def test_final_values_and_crossing():
    runs = np.array([[1.0, 2.0, np.nan], [np.nan, np.nan, np.nan], [3.0, np.nan, 4.0]])
    np.testing.assert_array_equal(plotting.final_values(runs), [2.0, np.nan, 4.0])
    values = np.array([0.01, 0.02, 0.1, 0.2])
    assert plotting.crossing(values, 40 * values / 2, log=True) == pytest.approx(0.05, rel=1e-12)
    linear = np.array([0.1, 0.2, 0.4, 0.8])
    assert plotting.crossing(linear, 3 * linear, log=False) == pytest.approx(1 / 3, rel=1e-12)
    assert plotting.crossing(values, values / 10, log=True) is None  # stable everywhere


def _sharp(grid, seeds, sharpness0, optimizer, **config):
    members = int(np.prod([len(v) for v in grid.values()])) * seeds
    sharp = np.full((members, len(STEPS)), 3.0 * sharpness0, np.float32)
    sharp[:, 0] = sharpness0
    loss = np.ones((members, len(STEPS)), np.float32)
    metrics = {"train_loss": loss, "test_loss": loss, "sharpness": sharp}
    diverged = np.full(members, -1, np.int32)
    return _dataset(grid, seeds, metrics, diverged, optimizer=optimizer, **config)


def test_stability_limit_is_gradient_descents_and_heavy_balls():
    s0 = 40.0
    grid = {"learning_rate": [0.01, 0.02, 0.1, 0.2]}
    ds = _sharp(grid, 2, s0, "sgd")
    ratio, note = sweep_figure.stability_ratio(ds)
    lr = np.asarray(grid["learning_rate"])
    np.testing.assert_allclose(ratio.values, s0 * lr / 2, rtol=1e-9)  # h = S0 against 2/a
    assert note == "stability limit at the initial sharpness"
    fig, _ = sweep_figure.figure(ds, metric="test_loss")
    (line,) = [ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(line.get_xdata(), [2 / s0] * 2, rtol=1e-9)
    # The largest sharpness over the run (3 S0 here) moves the limit to 2 / (3 S0).
    ratio, _ = sweep_figure.stability_ratio(ds, "max")
    np.testing.assert_allclose(ratio.values, 3 * s0 * lr / 2, rtol=1e-9)
    # Heavy ball: (2 + 2 beta) / a, one limit per beta column.
    grid = {"learning_rate": [0.01, 0.02, 0.05, 0.1], "beta": [0.0, 0.5]}
    fig, _ = sweep_figure.figure(_sharp(grid, 1, s0, "momentum"), metric="test_loss")
    for ax, beta in zip(fig.axes[2:4], grid["beta"], strict=True):
        (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        np.testing.assert_allclose(line.get_xdata()[0], (2 + 2 * beta) / s0, rtol=1e-9)


def test_no_limit_where_the_rule_or_the_sweep_gives_none():
    grid = {"learning_rate": [0.001, 0.01]}
    ratio, note = sweep_figure.stability_ratio(_sharp(grid, 1, 10.0, "adam"))
    assert ratio is None and "not a linear time-invariant loop (nonlinear" in note
    ds = _sharp(grid, 1, 10.0, "sgd", schedule="cosine")
    assert sweep_figure.stability_ratio(ds) == (
        None,
        "no stability limit: learning-rate schedule 'cosine'",
    )
    ds, _ = _toy()
    assert sweep_figure.stability_ratio(ds)[1] == (
        "no stability limit: the sweep did not track the sharpness"
    )
    assert sweep_figure.stability_ratio(ds, "none") == (None, "")


def test_select_and_too_many_panels():
    ds, _ = _toy()
    one, x, metric = sweep_figure.select(ds, ["beta=0.9"], None, None)
    assert (x, metric) == ("learning_rate", "test_loss") and list(one["beta"].values) == [0.9]
    fig = plotting.sweep_figure(one, metric=metric, x=x)
    assert fig.axes[0].get_title() == "beta=0.9" and len(fig.axes) == 3  # 2 panels + colorbar
    _, x, _ = sweep_figure.select(ds, None, "beta", None)
    assert plotting.sweep_panels(ds, x) == [{"learning_rate": v} for v in (0.01, 0.1, 1.0)]
    with pytest.raises(ValueError, match="select: 3 panels .* more than 2"):
        plotting.sweep_panels(ds, "beta", max_panels=2)


TINY = dict(
    dataset="tinydata:arrays",
    model="mlp",
    optimizer="sgd",
    loss="cross_entropy",
    steps=20,
    batch_size=None,
    eval_every=10,
    track_sharpness=True,
)
FLAGS = ["--dataset", "tinydata:arrays", "--model", "mlp", "--optimizer", "sgd", "--steps", "20",
         "--batch-size", "full", "--eval-every", "10", "--track-sharpness", "--checkpoint-every",
         "10", "--grid", "learning_rate=0.05,0.5,5", "--seeds", "2", "--no-progress"]  # fmt: skip


@pytest.fixture
def tiny_dir(tmp_path, monkeypatch):
    write_data_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_real_sweep_plotted_after_it_and_from_its_checkpoint(tiny_dir, capsys):
    figure = tiny_dir / "sweep.png"
    assert cli.main(["sweep", *FLAGS, "--out", "done", "--plot", str(figure)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {figure}; stability limit at the initial sharpness" in out
    assert figure.stat().st_size > 10_000
    done = load_results(tiny_dir / "done")
    # The limit drawn is gradient descent's 2 / a at the sweep's own initial sharpness.
    initial = done["sharpness"].isel(step=0).values  # (learning rate, seed)
    np.testing.assert_array_equal(initial, initial[:1].repeat(3, 0))  # a seed's, whatever a
    s0 = float(initial[0].mean())
    fig, _ = sweep_figure.figure(done)
    (line,) = [ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(line.get_xdata()[0], 2 / s0, rtol=1e-5)
    # The same sweep stopped after its first block: `gdyn plot` reads the checkpoint.
    config = SweepConfig(**TINY)  # the command line's config: compiled once, in this process

    def stop(info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, {"learning_rate": [0.05, 0.5, 5.0]}, 2, out="part", callback=stop,
                  checkpoint_every=10, progress=False)  # fmt: skip
    assert cli.main(["plot", "part", "--metric", "train_loss"]) == 0
    assert "wrote part/sweep.png (checkpoint: chunk 1/1, block 1/2)" in capsys.readouterr().out
    part, where = sweep_figure.load("part")
    assert where == "checkpoint: chunk 1/1, block 1/2"
    for name in ("train_loss", "sharpness"):
        np.testing.assert_array_equal(part[name].isel(step=[0, 1]), done[name].isel(step=[0, 1]))
        assert np.isnan(part[name].isel(step=2)).all()  # not trained yet


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plot", "missing"], "gdyn plot: error: DIR: missing is not a directory"),
        (["plot", "empty"], "DIR: empty is not a sweep's directory (no results.npz or "),
        (["plot", "locked"], "DIR: locked holds no results yet"),
        (["plot", "empty", "--out", "a.txt"], "--out: expected a file name ending in one of"),
        (["sweep", *FLAGS, "--out", "x", "--plot", "a.txt"], "--plot: expected a file name"),
    ],
)
def test_bad_input_is_one_line_exit_2(tiny_dir, capsys, argv, message):
    (tiny_dir / "empty").mkdir()
    (tiny_dir / "locked").mkdir()
    (tiny_dir / "locked" / "sweep.lock").write_text("{}")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tiny_dir / "x").exists()  # refused before the sweep started


def test_bad_metric_and_selection_are_one_line(tmp_path, capsys):
    ds, _ = _toy()
    results_lib.save_results(ds, tmp_path)
    for extra, message in (
        (["--metric", "accuracy"], "metric: expected one of test_loss, got 'accuracy'"),
        (["--select", "beta=0.5"], "select: beta=0.5 is not on the grid (0, 0.9)"),
        (["--select", "momentum=1"], "select: expected NAME=VALUE with NAME a grid axis"),
        (["--x", "seed"], "x: expected a grid axis (learning_rate, beta), got 'seed'"),
    ):
        assert cli.main(["plot", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_sweep_without_a_grid_is_drawn_over_its_fixed_learning_rate():
    record = {"optimizer": "sgd", "hparams": {"learning_rate": 0.1}}
    metrics = {"test_loss": np.ones((2, 3), np.float32), "sharpness": np.full((2, 3), 10.0)}
    ds = results_lib.to_dataset(
        metrics, np.array([-1, -1]), {}, 2, [0, 10, 20], json.dumps(record), 4, "cpu"
    )
    fig, note = sweep_figure.figure(ds)
    assert fig.axes[1].get_xlabel() == "learning_rate"
    ratio, _ = sweep_figure.stability_ratio(sweep_figure.select(ds, None, None, None)[0])
    np.testing.assert_allclose(ratio.values, [10.0 * 0.1 / 2])  # S0 a / 2 for gradient descent

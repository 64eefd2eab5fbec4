"""The sweep engine against independent runs of `train`, and its bookkeeping.

Every sweep here has 4 members, one config and one block size, so they share the same two
compiled programs (the executor caches them): vmapped sweep vs separate runs of ``train``,
a diverging member's isolation, chunking and checkpoint/resume are all checked against runs
that differ only in the property under test.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from sweep_fixtures import CONFIG

from gdyn_jax.sweep import Grid, SweepConfig, load_results, make_train, run_sweep

GRID = {"learning_rate": [0.02, 0.1], "beta": [0.0, 0.9]}
METRICS = ("train_loss", "test_loss", "test_accuracy")
SEEDS_GRID = {"learning_rate": [0.1], "beta": [0.0, 0.9]}


@pytest.fixture(scope="module")
def sweep(mnist1d_data_dir):
    return run_sweep(CONFIG, GRID, 1, progress=False)


@pytest.fixture(scope="module")
def seeds_sweep(mnist1d_data_dir):
    return run_sweep(CONFIG, SEEDS_GRID, 2, progress=False)


def test_dataset_layout(sweep):
    assert sweep["train_loss"].dims == ("learning_rate", "beta", "seed", "step")
    assert sweep["diverged_at"].dims == ("learning_rate", "beta", "seed")
    np.testing.assert_array_equal(sweep["step"], [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(sweep["learning_rate"], GRID["learning_rate"])
    assert json.loads(sweep.attrs["config"]) == CONFIG.to_dict()
    assert set(json.loads(sweep.attrs["versions"])) >= {"jax", "optax", "flax", "gdyn_jax"}
    # Training works: the loss falls for every member, none diverged.
    loss = sweep["train_loss"].values
    assert np.all(loss[..., -1] < loss[..., 0])
    assert np.all(sweep["diverged_at"].values == -1)


def test_vmapped_sweep_equals_separate_runs_of_train(sweep):
    train = jax.jit(make_train(CONFIG))
    for lr in GRID["learning_rate"]:
        for beta in GRID["beta"]:
            single = train({"learning_rate": lr, "beta": beta}, jax.random.key(0))
            member = sweep.sel(learning_rate=lr, beta=beta, seed=0)
            for name in METRICS:
                np.testing.assert_allclose(member[name], single[name], rtol=2e-5, atol=1e-6)
            assert int(single["diverged_at"]) == int(member["diverged_at"]) == -1


def test_seeds_differ_and_match_their_key(seeds_sweep, sweep):
    loss = seeds_sweep["train_loss"].values
    assert not np.allclose(loss[..., 0, :], loss[..., 1, :])
    # Seed 0 of this sweep is the same member as in the lr x beta sweep (key(0) everywhere).
    for name in METRICS:
        np.testing.assert_allclose(
            seeds_sweep[name].sel(learning_rate=0.1, seed=0),
            sweep[name].sel(learning_rate=0.1, seed=0),
            rtol=2e-5,
            atol=1e-6,
        )


def test_diverging_member_is_frozen_and_isolated(sweep):
    grid = {"learning_rate": [0.02, 2.0], "beta": [0.0, 0.9]}
    ds = run_sweep(CONFIG, grid, 1, progress=False)
    bad = ds.sel(learning_rate=2.0, seed=0)
    diverged_at = bad["diverged_at"].values
    assert np.all((diverged_at >= 0) & (diverged_at < CONFIG.steps))
    for b, at in enumerate(diverged_at):
        loss = bad["train_loss"].values[b]
        alive = ds["step"].values <= at  # evaluated before the diverging step was taken
        assert np.all(np.isfinite(loss[alive])) and np.all(np.isnan(loss[~alive]))
    # The healthy members are bit-for-bit what they are in a sweep without the bad ones.
    for name in (*METRICS, "diverged_at"):
        np.testing.assert_array_equal(
            ds[name].sel(learning_rate=0.02), sweep[name].sel(learning_rate=0.02)
        )


@pytest.fixture(scope="module")
def chunked(mnist1d_data_dir):
    # 4 members in member groups of 1, chunks of 3: the second chunk is padded with a copy of
    # the last member.
    return run_sweep(CONFIG, SEEDS_GRID, 2, chunk_size=3, member_group=1, progress=False)


def test_chunked_equals_unchunked(chunked):
    whole = run_sweep(CONFIG, SEEDS_GRID, 2, member_group=1, progress=False)
    for name in (*METRICS, "diverged_at"):
        np.testing.assert_array_equal(chunked[name], whole[name])


class _Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_uninterrupted(tmp_path, chunked):
    done = []

    def interrupt_in_second_chunk(info):
        done.append((info["chunk"], info["block"]))
        if len(done) == 6:  # chunk 1, after its block 1 (blocks of one eval interval)
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_sweep(
            CONFIG,
            SEEDS_GRID,
            2,
            out=tmp_path,
            chunk_size=3,
            member_group=1,
            progress=False,
            callback=interrupt_in_second_chunk,
        )
    assert done[-1] == (1, 1)
    assert (tmp_path / "checkpoint" / "state.npz").exists()
    assert not (tmp_path / "results.npz").exists()
    resumed = []
    ds = run_sweep(
        CONFIG,
        SEEDS_GRID,
        2,
        out=tmp_path,
        chunk_size=3,
        member_group=1,
        resume=True,
        progress=False,
        callback=lambda info: resumed.append((info["chunk"], info["block"])),
    )
    assert resumed == [(1, 2), (1, 3)]
    for name in (*METRICS, "diverged_at"):
        np.testing.assert_array_equal(ds[name], chunked[name])
    loaded = load_results(tmp_path)
    assert loaded.identical(ds)
    assert not (tmp_path / "checkpoint").exists()
    # A finished sweep resumes to its saved results; a different sweep in the same dir is refused.
    assert run_sweep(
        CONFIG, SEEDS_GRID, 2, out=tmp_path, member_group=1, resume=True, progress=False
    ).identical(loaded)
    with pytest.raises(ValueError, match="^out: .* results of another sweep .*seeds"):
        run_sweep(CONFIG, SEEDS_GRID, 3, out=tmp_path, member_group=1, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "grid", "seeds", "match"),
    [
        ({"optimizer": "nope"}, {"learning_rate": [0.1]}, 1, "^optimizer: "),
        ({"model": "nope"}, {"learning_rate": [0.1]}, 1, "^model: "),
        ({"dataset": "nope"}, {"learning_rate": [0.1]}, 1, "^dataset: "),
        ({}, {"lr": [0.1]}, 1, "^lr: "),
        ({}, {"learning_rate": []}, 1, "^grid: learning_rate: empty"),
        ({}, {}, 1, "^grid: empty"),
        ({}, {"learning_rate": [0.1, "fast"]}, 1, "^grid: learning_rate: expected a number"),
        ({}, {"beta": [0.9]}, 1, "^learning_rate: required"),
        ({"batch_size": 257}, {"learning_rate": [0.1]}, 1, "^batch_size: 257 is larger"),
        ({"loss": "hinge"}, {"learning_rate": [0.1]}, 1, "^loss: "),
        ({"eval_every": 7}, {"learning_rate": [0.1]}, 1, "^eval_every: "),
        ({"hparams": {"gamma": 1.0}}, {"learning_rate": [0.1]}, 1, "^gamma: "),
        ({}, {"learning_rate": [0.1]}, 0, "^seeds: "),
        ({}, {"learning_rate": [None]}, 1, "^grid: learning_rate: expected a number, got None"),
        ({"hparams": {"learning_rate": None}}, {"beta": [0.9]}, 1, "^hparams: learning_rate: "),
        ({}, {"learning_rate": [float("inf")]}, 1, "^grid: learning_rate: expected a finite"),
        ({}, {"learning_rate": 0.1}, 1, "^grid: learning_rate: expected a list of numbers"),
        ({}, {"learning_rate": [0.1, 0.1 + 1e-12]}, 1, "^grid: learning_rate: .* in float32"),
        (
            {},
            {"learning_rate": [0.1, -0.001], "beta": [0.5]},
            1,
            r"^grid: optimizer 'momentum' rejects learning_rate=-0.001, beta=0.5: "
            r"learning_rate: expected a value >= 0, got -0.001$",
        ),
        ({}, {"learning_rate": [0.1], "beta": [0.9, 1.0]}, 1, r"rejects .*beta=1.0: beta: "),
        ({"hparams": {"beta": 1.0}}, {"learning_rate": [0.1]}, 1, r"rejects learning_rate=0.1: "),
        (
            {},
            {"learning_rate": [0.1], "beta": [0.999999999]},
            1,
            r"rejects learning_rate=0.1, beta=0.999999999 \(rounded to float32\): beta: ",
        ),
        ({"schedule": "cosine", "optimizer": "adadelta"}, {"rho": [0.9]}, 1, None),
    ],
)
def test_bad_input_is_a_one_line_value_error(mnist1d_data_dir, kwargs, grid, seeds, match):
    config = SweepConfig(**{**CONFIG.to_dict(), **kwargs})
    with pytest.raises(ValueError, match=match or "^schedule: ") as info:
        run_sweep(config, grid, seeds, progress=False)
    assert "\n" not in str(info.value)


def test_grid_is_checked_before_the_data_are_loaded():
    # mnist is not prepared in the tests' data dir: loading it would be a FileNotFoundError.
    config = SweepConfig(dataset="mnist", model="cnn2d", optimizer="momentum")
    with pytest.raises(ValueError, match="^grid: optimizer 'momentum' rejects"):
        run_sweep(config, {"learning_rate": [-0.1]}, progress=False)
    with pytest.raises(FileNotFoundError, match="^data_dir: "):
        run_sweep(config, {"learning_rate": [0.1]}, progress=False)


def test_grid_object_members_are_one_float32_table():
    grid = Grid.build(CONFIG, {"learning_rate": ["0.02", 0.1], "beta": [0.0, 0.9]}, seeds=3)
    table, seeds = grid.members()
    assert table.dtype == np.float32 and table.shape == (12, 2) and grid.shape == (2, 2, 3)
    np.testing.assert_array_equal(table[:3], np.float32([[0.02, 0.0]] * 3))
    np.testing.assert_array_equal(seeds, np.tile(np.arange(3), 4))
    assert grid.as_dict() == {"learning_rate": [0.02, 0.1], "beta": [0.0, 0.9]}
    ds = run_sweep(CONFIG, Grid.build(CONFIG, GRID, 1), progress=False)
    with pytest.raises(ValueError, match="^seeds: the Grid has 1 seeds"):
        run_sweep(CONFIG, Grid.build(CONFIG, GRID, 1), 2, progress=False)
    assert ds["train_loss"].dims == ("learning_rate", "beta", "seed", "step")


def test_config_round_trips_through_json():
    config = SweepConfig(hparams={"beta": 0.5}, schedule="cosine", batch_size=None)
    assert SweepConfig.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="^config: unknown field"):
        SweepConfig.from_dict({"learning_rate": 0.1})


def test_schedule_from_traced_peak_equals_optax_schedule(mnist1d_data_dir):
    """Full-batch SGD with a cosine schedule built from the traced peak learning rate equals
    optax.sgd(optax.cosine_decay_schedule(peak, steps)) run step by step from the same init."""
    import jax.numpy as jnp
    import optax

    from gdyn_jax import data, models

    config = SweepConfig(
        model="logistic",
        optimizer="sgd",
        steps=20,
        batch_size=None,
        eval_every=10,
        train_subset=128,
        schedule="cosine",
    )
    key, peak = jax.random.key(3), 0.5
    out = jax.jit(make_train(config))({"learning_rate": peak}, key)
    x, y = data.load("mnist1d", "train")
    x, y = jnp.asarray(x[:128]), jnp.asarray(y[:128])
    model = models.get("logistic")
    params = model.init(jax.random.split(key, 3)[0], x[:1])["params"]  # as train initialises
    tx = optax.sgd(optax.cosine_decay_schedule(peak, config.steps))
    state = tx.init(params)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p}, x), y
        ).mean()

    @jax.jit
    def step(p, s):
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return optax.apply_updates(p, updates), s

    expected = [float(loss(params))]
    for t in range(1, config.steps + 1):
        params, state = step(params, state)
        if t % config.eval_every == 0:
            expected.append(float(loss(params)))
    np.testing.assert_allclose(out["train_loss"], expected, rtol=1e-5)

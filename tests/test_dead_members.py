"""Members out of the compiled groups: the skip mask, and diverged members dropped between blocks.

A stability-map grid on a small problem where about half the learning rates diverge: with the
diverged members dropped (and the groups re-packed) the survivors' numbers are the same bit for
bit as without dropping, also when the sweep is killed and resumed; skipped members are never
trained and change nobody else's numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from gdyn_jax.sweep import Arrays, SweepConfig, packing, run_sweep


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 6)).astype(np.float32) * 3
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    return Arrays(x, y, x[:32], y[:32], name="two-class")


CONFIG = SweepConfig(
    dataset=_arrays(),
    model="mlp",
    model_kwargs={"hidden_size": 8},
    optimizer="sgd",
    loss="mse",
    steps=40,
    batch_size=16,
    eval_every=5,
)
# Eight learning rates, two seeds: 16 members in 4 groups of 4 (member_group=4); the large
# rates (every other grid point) diverge, so re-packing frees groups.
GRID = {"learning_rate": [0.01, 3.0, 0.03, 10.0, 0.1, 30.0, 0.3, 100.0]}
VARIABLES = ("train_loss", "test_loss", "test_accuracy", "diverged_at", "skipped")


def _same(a, b):
    for name in VARIABLES:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.fixture(scope="module")
def kept():
    return run_sweep(
        CONFIG, GRID, 2, member_group=4, repack=False, checkpoint_every=10, progress=False
    )


def test_dropping_the_diverged_keeps_every_number(kept, monkeypatch):
    diverged = kept.diverged_at.values >= 0
    assert 0.25 < diverged.mean() < 0.75  # about half diverge
    moves = []
    permuted = packing.permuted
    monkeypatch.setattr(packing, "permuted", lambda *a: moves.append(1) or permuted(*a))
    dropped = run_sweep(CONFIG, GRID, 2, member_group=4, checkpoint_every=10, progress=False)
    assert moves  # the members were re-arranged
    _same(dropped, kept)
    assert not dropped.skipped.values.any()


class _Kill(Exception):
    pass


def test_resume_after_a_kill_with_dropped_members(kept, tmp_path):
    def kill(info):
        if info["block"] == 2:
            raise _Kill

    with pytest.raises(_Kill):
        run_sweep(
            CONFIG,
            GRID,
            2,
            member_group=4,
            out=tmp_path,
            checkpoint_every=10,
            progress=False,
            callback=kill,
        )
    resumed = run_sweep(
        CONFIG, GRID, 2, member_group=4, out=tmp_path, checkpoint_every=10, progress=False
    )
    _same(resumed, kept)


def test_skipped_members_are_never_trained(kept):
    skip = np.zeros((8, 2), bool)
    skip[[1, 5], :] = True
    skip[2, 1] = True
    ds = run_sweep(CONFIG, GRID, 2, member_group=4, skip=skip, chunk_size=8, progress=False)
    flat = skip.reshape(-1)
    assert (ds.skipped.values.reshape(-1) == flat).all()
    for name in ("train_loss", "test_loss"):
        got, ref = ds[name].values.reshape(16, -1), kept[name].values.reshape(16, -1)
        assert np.isnan(got[flat]).all()
        np.testing.assert_array_equal(got[~flat], ref[~flat])
    assert (ds.diverged_at.values.reshape(-1)[flat] == -1).all()
    # (grid points,) broadcasts over the seeds
    by_point = run_sweep(CONFIG, GRID, 2, member_group=4, skip=skip.all(1), progress=False)
    assert (by_point.skipped.values == skip.all(1)[:, None]).all()


def test_a_skip_mask_of_another_sweep_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"^skip: expected a boolean array of shape \(8, 2\)"):
        run_sweep(CONFIG, GRID, 2, member_group=4, skip=np.zeros((16, 2), bool), progress=False)
    with pytest.raises(ValueError, match="^skip: expected a boolean array, got dtype"):
        run_sweep(CONFIG, GRID, 2, member_group=4, skip=np.zeros(8), progress=False)


def test_the_live_members_fill_the_first_groups_of_every_device():
    live = np.array([0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    order = packing.arrangement(live, devices=2, width=2)
    assert sorted(order) == list(range(16))
    # slots 0-7 are device 0's (groups 0-3), 8-15 device 1's: three live groups, 2 + 1
    np.testing.assert_array_equal(live[order].reshape(2, 4, 2).any(2).sum(1), [2, 1])
    assert packing.busy_groups(live[order], 2) == 3 < packing.busy_groups(live, 2)

"""Run in their own process with 4 fake CPU devices (tests/test_sweep_multidevice.py does it):
a sweep sharded over 4 devices, with padding, equals the same sweep on one device, bit for bit,
and a member's numbers do not depend on the chunk size, the device count or its neighbours."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gdyn_jax.sweep import SweepConfig, assemble, cache, run_sweep, sweep_mesh
from gdyn_jax.sweep.mesh import put

pytestmark = pytest.mark.skipif(
    jax.device_count() < 4,
    reason="needs 4 devices (XLA_FLAGS=--xla_force_host_platform_"
    "device_count=4); run through tests/test_sweep_multidevice.py",
)

CONFIG = SweepConfig(
    model="logistic",
    optimizer="momentum",
    loss="mse",
    steps=20,
    batch_size=32,
    eval_every=10,
    train_subset=256,
)
# 3 x 2 = 6 members on 4 devices: padded to 8; lr=3.0 diverges.
GRID = {"learning_rate": [0.02, 0.1, 3.0], "beta": [0.0, 0.9]}


def test_mesh_axis():
    mesh = sweep_mesh(4)
    assert mesh.axis_names == ("sweep",) and mesh.size == 4
    with pytest.raises(ValueError, match="^devices: "):
        sweep_mesh(5)


def _assert_identical(a, b):
    assert list(a.data_vars) == list(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_four_devices_equal_one_with_padding(mnist1d_data_dir, tmp_path):
    # 6 members in member groups of 4: padded to 8 on one device, to 16 on four.
    one = run_sweep(CONFIG, GRID, 1, devices=1, progress=False)
    four = run_sweep(CONFIG, GRID, 1, devices=4, out=tmp_path, progress=False)
    assert int((four["diverged_at"] >= 0).sum()) >= 1
    _assert_identical(four, one)


@pytest.mark.parametrize("devices", [1, 4])
def test_a_members_numbers_do_not_depend_on_the_sweep_around_it(mnist1d_data_dir, devices):
    """(learning_rate 0.1, beta 0.9, seed 1) trained alone, and among 12 members (one of
    them diverging) in chunks of 1, 3, 4 and 10, on 1 or 4 devices, in member groups of 2:
    the same bits every time (a different chunk size or device count changes the number of
    groups, the padding and the member's place in its chunk)."""
    alone = run_sweep(
        CONFIG,
        {"learning_rate": [0.1], "beta": [0.9]},
        2,
        member_group=2,
        devices=1,
        progress=False,
    ).sel(learning_rate=0.1, beta=0.9, seed=1)
    for chunk_size in (1, 3, 4, 10):
        ds = run_sweep(
            CONFIG, GRID, 2, chunk_size=chunk_size, member_group=2, devices=devices, progress=False
        )
        assert int((ds["diverged_at"] >= 0).sum()) >= 1
        _assert_identical(ds.sel(learning_rate=0.1, beta=0.9, seed=1), alone)


def test_member_axis_is_sharded(mnist1d_data_dir):
    programs = cache.compiled(assemble(CONFIG), 1, tuple(jax.devices()[:4]), 1)
    mesh = sweep_mesh(4)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    keys = put(
        np.stack([np.asarray(jax.random.key_data(jax.random.key(i))) for i in range(4)]), member
    )
    hp = {"learning_rate": put(np.full(4, 0.1, np.float32), member)}
    state = programs.init(programs.data, hp, keys)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding.spec[0] == "sweep"
    assert len({s.device for s in leaf.addressable_shards}) == 4

"""Run in their own process with 4 fake CPU devices (tests/test_sweep_multidevice.py does it):
a sweep sharded over 4 devices, with padding, equals the same sweep on one device."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gdyn_jax.sweep import SweepConfig, run_sweep, sweep_mesh

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


def test_four_devices_equal_one_with_padding(mnist1d_data_dir, tmp_path):
    one = run_sweep(CONFIG, GRID, 1, devices=1, progress=False)
    four = run_sweep(CONFIG, GRID, 1, devices=4, out=tmp_path, progress=False)
    assert int((four["diverged_at"] >= 0).sum()) >= 1
    np.testing.assert_array_equal(four["diverged_at"], one["diverged_at"])
    for name in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(four[name], one[name], rtol=2e-5, atol=1e-6)
    # Chunks of 2 members on 4 devices: each chunk is padded to 4.
    chunked = run_sweep(CONFIG, GRID, 1, devices=4, chunk_size=2, progress=False)
    np.testing.assert_allclose(chunked["train_loss"], one["train_loss"], rtol=2e-5, atol=1e-6)


def test_member_axis_is_sharded(mnist1d_data_dir):
    from gdyn_jax.sweep import execute

    programs = execute.compiled(CONFIG, 1, tuple(jax.devices()[:4]))
    mesh = sweep_mesh(4)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    keys = execute._put(
        np.stack([np.asarray(jax.random.key_data(jax.random.key(i))) for i in range(4)]), member
    )
    hp = {"learning_rate": execute._put(np.full(4, 0.1, np.float32), member)}
    state = programs.init(programs.data, hp, keys)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding.spec[0] == "sweep"
    assert len({s.device for s in leaf.addressable_shards}) == 4

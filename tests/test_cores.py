"""Every core by default on CPU (``gdyn_jax.sweep.cores``), each case in a fresh process.

Importing ``gdyn_jax.sweep`` before any JAX operation gives one CPU device per usable core; a
device count the user set (``JAX_NUM_CPU_DEVICES``, ``XLA_FLAGS``) or a backend already running
is left alone; and a sweep's numbers on the default devices equal those on one device, bit
for bit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gdyn_jax.sweep import Arrays, SweepConfig, load_results, run_sweep

ROOT = Path(__file__).resolve().parent.parent
COUNT = (
    "import json, gdyn_jax.sweep, jax\n"
    "from gdyn_jax.sweep import cores\n"
    "print(json.dumps([len(jax.devices()), cores.usable_cores()]))\n"
)


def _python(code: str, **env_changes: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({k: v for k, v in env_changes.items() if v is not None})
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_one_device_per_core_by_default():
    devices, cores = json.loads(_python(COUNT))
    assert devices == cores >= 1


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"JAX_NUM_CPU_DEVICES": "1"}, 1),
        ({"JAX_NUM_CPU_DEVICES": "3"}, 3),
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=5"}, 5),
    ],
)
def test_the_users_device_count_wins(env, expected):
    assert json.loads(_python(COUNT, **env))[0] == expected


def test_a_running_backend_keeps_its_devices():
    code = "import jax, jax.numpy as jnp\njnp.ones(2).block_until_ready()\n" + COUNT
    assert json.loads(_python(code))[0] == 1


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return Arrays(x, y, x[:32], y[:32], name="two-class")


CONFIG = SweepConfig(
    dataset=_arrays(), model="mlp", optimizer="momentum", steps=20, batch_size=16, eval_every=5
)
GRID = {"learning_rate": [0.01, 0.1, 0.5], "beta": [0.0, 0.9]}


def test_a_sweep_on_the_default_devices_equals_one_device(tmp_path):
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "import jax\n"
        "from test_cores import CONFIG, GRID\n"
        "from gdyn_jax.sweep import run_sweep\n"
        f"run_sweep(CONFIG, GRID, 2, out={str(tmp_path)!r}, progress=False)\n"
        "print(len(jax.devices()))\n"
    )
    devices = int(_python(code))
    default = load_results(tmp_path)
    one = run_sweep(CONFIG, GRID, 2, devices=1, progress=False)
    for name in ("train_loss", "test_loss", "test_accuracy", "diverged_at"):
        np.testing.assert_array_equal(default[name].values, one[name].values, err_msg=name)
    assert devices >= 1

"""Small sweeps shared by the sweep tests.

``CONFIG`` (and ``CLI_FLAGS``, the same settings as ``gdyn sweep`` flags): a logistic
regression on 256 MNIST-1D examples, 40 steps, evaluated every 10.

A tiny classification problem and the `gdyn sweep` command line that trains it, for the
fault-injection and multi-process tests (which run it in this process and in fresh ones):

``write_data_module(dir)`` writes ``tinydata.py`` (an ``arrays()`` function returning
``gdyn_jax.sweep.Arrays``) into ``dir``; run from ``dir``, ``gdyn sweep --dataset
tinydata:arrays`` imports it, in this process or in a subprocess alike.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from gdyn_jax.sweep import SweepConfig

ROOT = Path(__file__).resolve().parents[1]

CONFIG = SweepConfig(
    model="logistic",
    optimizer="momentum",
    loss="mse",
    steps=40,
    batch_size=32,
    eval_every=10,
    train_subset=256,
)
CLI_FLAGS = [
    "sweep",
    "--dataset",
    "mnist1d",
    "--model",
    "logistic",
    "--optimizer",
    "momentum",
    "--loss",
    "mse",
    "--steps",
    "40",
    "--batch-size",
    "32",
    "--eval-every",
    "10",
    "--train-subset",
    "256",
    "--grid",
    "learning_rate=0.02,0.1",
    "--grid",
    "beta=0.0,0.9",
    "--no-progress",
]

DATA_MODULE = '''
import numpy as np

from gdyn_jax.sweep import Arrays


def arrays():
    """384 points in 16 dimensions, 4 classes of a noisy linear rule; 256 train, 128 test."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 4))
    x = rng.normal(size=(384, 16)).astype(np.float32)
    y = np.argmax(x @ w + 0.5 * rng.normal(size=(384, 4)), axis=1).astype(np.int32)
    return Arrays(x[:256], y[:256], x[256:], y[256:], name="tiny")
'''


def write_data_module(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tinydata.py").write_text(DATA_MODULE)
    return directory


def sweep_args(steps: int, eval_every: int, *extra: str) -> list[str]:
    """16 members (4 learning rates, one diverging, × 2 betas × 2 seeds) in groups of 2."""
    return [
        "sweep",
        "--dataset",
        "tinydata:arrays",
        "--model",
        "mlp",
        "--optimizer",
        "momentum",
        "--grid",
        "learning_rate=0.01,0.05,0.2,3.0",
        "--grid",
        "beta=0.0,0.9",
        "--seeds",
        "2",
        "--steps",
        str(steps),
        "--batch-size",
        "32",
        "--eval-every",
        str(eval_every),
        "--member-group",
        "2",
        "--no-progress",
        *extra,
    ]


def environment(**extra: str) -> dict[str, str]:
    """The environment of a fresh `python -m gdyn_jax.cli` (this checkout first on the path)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gdyn_jax.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(path: Path, processes, timeout: float = 240.0) -> None:
    """Until ``path`` exists (polling every 20 ms); fails if a process ends first."""
    end = time.monotonic() + timeout
    while not path.exists():
        finished = [p for p in processes if p.poll() is not None]
        assert not finished, [p.communicate()[1][-3000:] for p in finished]
        assert time.monotonic() < end, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def assert_same_results(a, b) -> None:
    """Two results Datasets hold the same variables, coordinates and bits."""
    assert list(a.data_vars) == list(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)

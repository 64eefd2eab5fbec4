"""Shared pytest fixtures.

- ``data_dir`` (session, autouse): a session temp dir set as ``$GDYN_DATA_DIR`` (and
  ``$TFDS_DATA_DIR``), so no test reads or writes ``~/tensorflow_datasets``; and a session temp
  dir as ``$GDYN_COMPILATION_CACHE``, so the CLI's compilation cache stays out of ``~/.cache``.
- ``mnist1d_data_dir`` (session): the same dir with MNIST-1D prepared in it (once per session,
  about 2 s); ``gdyn_jax.data.load('mnist1d', split)`` then reads it without a data_dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/multidevice needs fake CPU devices, which XLA reads only when it starts:
# tests/test_sweep_multidevice.py runs that folder in its own process with them set.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore = ["multidevice"]
    # The tests run on JAX's one CPU device (their chunk layouts assume it): the library's
    # default, one device per core, is checked in fresh processes by tests/test_cores.py.
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", "1")


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("gdyn_data")
    patch = pytest.MonkeyPatch()
    patch.setenv("GDYN_DATA_DIR", str(path))
    patch.setenv("TFDS_DATA_DIR", str(path))
    if "GDYN_COMPILATION_CACHE" not in os.environ:  # a test that sets its own keeps it
        patch.setenv("GDYN_COMPILATION_CACHE", str(tmp_path_factory.mktemp("jax_cache")))
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def mnist1d_data_dir(data_dir: Path) -> Path:
    from gdyn_jax.data import prepare_mnist1d

    prepare_mnist1d(data_dir)
    return data_dir

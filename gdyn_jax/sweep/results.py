"""Sweep results as an ``xarray.Dataset``, saved atomically without pickle.

On disk a result is ``DIR/results.npz``: one array per variable and coordinate plus a JSON
header (dimension names, attributes) stored as a unicode string array, read back with
``allow_pickle=False``. Nothing beyond numpy is needed to read it; ``load_results`` rebuilds
the Dataset.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_FILE = "results.npz"
_HEADER = "__header__"


def versions() -> dict[str, str]:
    """Versions of the libraries that produced a result."""
    import flax
    import jax
    import optax

    import gdyn_jax

    return {
        "gdyn_jax": gdyn_jax.__version__,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "flax": flax.__version__,
        "numpy": np.__version__,
    }


def to_dataset(
    metrics: Mapping[str, np.ndarray],
    diverged_at: np.ndarray,
    grid: Mapping[str, Sequence[float]],
    seeds: int,
    eval_steps: Sequence[int],
    config_json: str,
):
    """Labels flat per-member arrays ((M, E) metrics, (M,) diverged_at) with the grid axes."""
    import xarray as xr

    names = list(grid)
    shape = tuple(len(grid[k]) for k in names) + (seeds,)
    dims = tuple(names) + ("seed",)
    data_vars = {
        k: (dims + ("step",), np.asarray(v).reshape(shape + (len(eval_steps),)))
        for k, v in metrics.items()
    }
    data_vars["diverged_at"] = (dims, np.asarray(diverged_at, np.int32).reshape(shape))
    coords = {k: np.asarray(grid[k], np.float64) for k in names}
    coords["seed"] = np.arange(seeds)
    coords["step"] = np.asarray(eval_steps, np.int64)
    attrs = {
        "config": config_json,
        "grid": json.dumps({k: list(grid[k]) for k in names}),
        "seeds": int(seeds),
        "versions": json.dumps(versions(), sort_keys=True),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes ``arrays`` to ``path`` (.npz) via a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads an .npz written by ``write_npz_atomic`` with a JSON header (never unpickles)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays.pop(_HEADER)))
    return arrays, header


def save_results(ds, out: str | Path) -> Path:
    """Saves a results Dataset atomically to ``out/results.npz``; returns the path."""
    arrays: dict[str, np.ndarray] = {}
    header = {"variables": {}, "coords": {}, "attrs": dict(ds.attrs)}
    for name, var in ds.data_vars.items():
        arrays[f"var/{name}"] = np.asarray(var.values)
        header["variables"][name] = list(var.dims)
    for name, coord in ds.coords.items():
        arrays[f"coord/{name}"] = np.asarray(coord.values)
        header["coords"][name] = list(coord.dims)
    arrays[_HEADER] = np.array(json.dumps(header))
    path = Path(out) / RESULTS_FILE
    write_npz_atomic(path, arrays)
    return path


def load_results(out: str | Path):
    """Reads ``out/results.npz`` back into the ``xarray.Dataset`` that ``run_sweep`` returned.

    Attributes: ``config`` (the SweepConfig as JSON), ``grid`` (JSON), ``seeds``, ``versions``
    (JSON of gdyn_jax/jax/optax/flax/numpy versions) and ``created``.
    """
    import xarray as xr

    path = Path(out) / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"out: no results in {out} (expected {path})")
    arrays, header = read_npz(path)
    coords = {k: (tuple(d), arrays[f"coord/{k}"]) for k, d in header["coords"].items()}
    data_vars = {k: (tuple(d), arrays[f"var/{k}"]) for k, d in header["variables"].items()}
    return xr.Dataset(data_vars, coords=coords, attrs=header["attrs"])

"""Sweep results as an ``xarray.Dataset``, saved atomically without pickle, and a sweep's identity.

On disk a result is ``DIR/results.npz``, a checked array file (``storage``): one array per
variable and coordinate, a JSON header (dimension names, attributes) and a SHA-256 per array.
Nothing beyond numpy is needed to read it; ``load_results`` checks it and rebuilds the
Dataset. ``identity`` is what makes two sweeps the same (results and checkpoints record it,
and a sweep never mixes in files of another).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax
import jax
import jaxlib
import numpy as np
import optax

import gdyn_jax
from gdyn_jax import extras
from gdyn_jax.sweep import storage

RESULTS_FILE = "results.npz"
KIND = "gdyn sweep results"


def versions() -> dict[str, str]:
    """Versions of the libraries that produced a result."""
    return {
        "gdyn_jax": gdyn_jax.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
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
    member_group: int,
    platform: str,
    skipped: np.ndarray | None = None,
):
    """Labels flat per-member arrays ((M, E) metrics, (M,) diverged_at, (M,) ``skipped``:
    the members never trained, default none) with the grid axes."""
    names = list(grid)
    shape = tuple(len(grid[k]) for k in names) + (seeds,)
    dims = tuple(names) + ("seed",)
    data_vars = {
        k: (dims + ("step",), np.asarray(v).reshape(shape + (len(eval_steps),)))
        for k, v in metrics.items()
    }
    data_vars["diverged_at"] = (dims, np.asarray(diverged_at, np.int32).reshape(shape))
    skipped = np.zeros(shape, bool) if skipped is None else np.asarray(skipped, bool)
    data_vars["skipped"] = (dims, skipped.reshape(shape))
    coords = {k: np.asarray(grid[k], np.float64) for k in names}
    coords["seed"] = np.arange(seeds)
    coords["step"] = np.asarray(eval_steps, np.int64)
    attrs = {
        "config": config_json,
        "grid": json.dumps({k: list(grid[k]) for k in names}),
        "seeds": int(seeds),
        "member_group": int(member_group),
        "platform": str(platform),
        "versions": json.dumps(versions(), sort_keys=True),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if skipped.any():
        attrs["skipped"] = json.dumps(np.flatnonzero(skipped).tolist())
    return extras.xarray.Dataset(data_vars, coords=coords, attrs=attrs)


def save_results(ds, out: str | Path) -> Path:
    """Saves a results Dataset atomically to ``out/results.npz`` (checked, no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    # [name, dims] pairs, in the Dataset's order (a JSON object's keys would be sorted).
    meta: dict[str, Any] = {"variables": [], "coords": [], "attrs": dict(ds.attrs)}
    for name, var in ds.data_vars.items():
        arrays[f"var/{name}"] = np.asarray(var.values)
        meta["variables"].append([name, list(var.dims)])
    for name, coord in ds.coords.items():
        arrays[f"coord/{name}"] = np.asarray(coord.values)
        meta["coords"].append([name, list(coord.dims)])
    return storage.write(Path(out) / RESULTS_FILE, KIND, meta, arrays)


def _check_layout(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Every variable's and coordinate's array is there, with the dims' lengths."""
    entries = {"coord": meta.get("coords"), "var": meta.get("variables")}
    for prefix, pairs in entries.items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs
        ):
            raise ValueError(f"{path}: header: {prefix} entries missing or malformed")
    if not isinstance(meta.get("attrs"), dict):
        raise ValueError(f"{path}: header: attrs missing")
    sizes: dict[str, int] = {}
    for prefix, pairs in entries.items():
        for name, dims in pairs:
            key = f"{prefix}/{name}"
            if key not in arrays:
                raise ValueError(f"{path}: {key}: missing")
            shape = arrays[key].shape
            if not isinstance(dims, list) or len(dims) != len(shape):
                raise ValueError(f"{path}: {key}: dims {dims!r} do not fit shape {list(shape)}")
            for dim, n in zip(dims, shape, strict=True):
                if sizes.setdefault(dim, n) != n:
                    raise ValueError(
                        f"{path}: {key}: {dim} has {n} entries, elsewhere {sizes[dim]}"
                    )


def load_results(out: str | Path):
    """Reads ``out/results.npz`` back into the ``xarray.Dataset`` that ``run_sweep`` returned.

    The file is checked first (see ``storage``): a damaged, truncated or edited file is a
    one-line ``ValueError`` naming it and the field. Attributes: ``config`` (the SweepConfig
    as JSON), ``grid`` (JSON), ``seeds``, ``member_group``, ``platform``, ``versions`` (JSON
    of gdyn_jax/jax/jaxlib/optax/flax/numpy versions) and ``created``.
    """
    path = Path(out) / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"out: no results in {out} (expected {path})")
    meta, arrays = storage.read(path, KIND)
    _check_layout(path, meta, arrays)
    coords = {k: (tuple(d), arrays[f"coord/{k}"]) for k, d in meta["coords"]}
    data_vars = {k: (tuple(d), arrays[f"var/{k}"]) for k, d in meta["variables"]}
    return extras.xarray.Dataset(data_vars, coords=coords, attrs=meta["attrs"])


def identity(
    config_json: str,
    grid: Mapping[str, Sequence[float]],
    seeds: int,
    member_group: int,
    platform: str,
    library_versions: Mapping[str, str],
    skipped: Sequence[int] = (),
) -> dict[str, Any]:
    """What makes two sweeps the same: their numbers would be the same, bit for bit.

    The config record, the grid and seeds, the member group width, the platform, the
    library versions and the skipped members (flat indices; recorded only when there are
    some): a checkpoint or results of another identity are never mixed in.
    """
    extra = {"skipped": [int(m) for m in skipped]} if len(skipped) else {}
    return extra | {
        "config": json.loads(config_json),
        "grid": {k: [float(v) for v in vs] for k, vs in grid.items()},
        "seeds": int(seeds),
        "member_group": int(member_group),
        "platform": str(platform),
        "versions": dict(library_versions),
    }


def identity_of(attrs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The identity recorded in a results Dataset's ``attrs`` (None if it records none)."""
    try:
        return identity(
            attrs["config"],
            json.loads(attrs["grid"]),
            attrs["seeds"],
            attrs["member_group"],
            attrs["platform"],
            json.loads(attrs["versions"]),
            json.loads(attrs.get("skipped", "[]")),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def difference(recorded: Any, expected: Any, where: str = "") -> str | None:
    """The first field where two JSON records differ, as ``'field: a != b'``, or None."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        for key in sorted(set(recorded) | set(expected)):
            field = f"{where}.{key}" if where else key
            if key not in recorded or key not in expected:
                side = "missing" if key not in recorded else "not expected"
                return f"{field}: {side}"
            found = difference(recorded[key], expected[key], field)
            if found:
                return found
        return None
    if recorded != expected:
        text = f"{json.dumps(recorded)[:60]} here, {json.dumps(expected)[:60]} now"
        return f"{where or 'record'}: {text}"
    return None

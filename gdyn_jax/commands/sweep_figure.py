"""The figure behind ``gdyn plot`` and ``gdyn sweep --plot``: a sweep's results, read and drawn.

:func:`load` reads a sweep's directory: its results (``gdyn_jax.sweep.load_results``) or, for a
sweep still running or interrupted, its checkpoint (every member's metrics so far, NaN where not
yet trained). :func:`stability_ratio` joins the two sides, as only the command line may: the
rule's stability limit on a quadratic (``linearize.max_stable_curvature`` at each grid point's
hyperparameters) against the sharpness the sweep measured (its tracked ``sharpness``), and
:func:`figure` draws them with :func:`gdyn_jax.plotting.sweep_figure`. The command's surface is
:mod:`gdyn_jax.commands.plot`, which reaches this module on first use (numpy, jax and matplotlib
load then, not with ``gdyn --help``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gdyn_jax import extras, files, linearize, optimizers, plotting
from gdyn_jax.sweep import checkpoint, load_results, outdir
from gdyn_jax.sweep import results as results_lib

__all__ = ["figure", "load", "save", "select", "stability_ratio"]

SHARPNESS_AT = ("initial", "max", "none")


def _from_checkpoint(ckpt: checkpoint.Checkpoint):
    """The Dataset of a checkpoint's metric buffers (members not trained yet: NaN)."""
    identity = ckpt.identity
    try:
        config, grid, seeds = identity["config"], identity["grid"], int(identity["seeds"])
        steps, every = int(config["steps"]), int(config["eval_every"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"DIR: {ckpt.path}: identity: not a sweep's record") from None
    members = math.prod(len(v) for v in grid.values()) * seeds
    names = [k for k in ckpt.buffers if k != "diverged_at"]
    return results_lib.to_dataset(
        {k: ckpt.buffers[k][:members] for k in names},
        ckpt.buffers["diverged_at"][:members],
        grid,
        seeds,
        list(range(0, steps + 1, every)),
        json.dumps(config, sort_keys=True),
        int(identity.get("member_group", 0)),
        str(identity.get("platform", "")),
    )


def load(directory: str | Path) -> tuple[Any, str]:
    """(results Dataset, what it is) of a sweep's directory: finished results, else the
    checkpoint of a running or interrupted sweep; a one-line ValueError otherwise."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(f"DIR: {directory} is not a directory")
    if (path / results_lib.RESULTS_FILE).exists():
        return load_results(path), "finished"
    state = checkpoint.path(path)
    if state.exists():
        ckpt = checkpoint.read(state)  # a damaged file: a one-line ValueError naming it
        layout = ckpt.layout
        where = (
            f"checkpoint: chunk {ckpt.chunk + 1}/{layout.get('num_chunks')}, block "
            f"{ckpt.block}/{layout.get('num_blocks')}"
        )
        return _from_checkpoint(ckpt), where
    if (path / outdir.LOCK_FILE).exists():
        raise ValueError(
            f"DIR: {directory} holds no results yet (its sweep has not finished a block)"
        )
    raise ValueError(
        f"DIR: {directory} is not a sweep's directory (no {results_lib.RESULTS_FILE} or "
        f"{checkpoint.DIRECTORY}/{checkpoint.FILE})"
    )


def _record(ds) -> dict[str, Any]:
    try:
        record = json.loads(ds.attrs["config"])
    except (KeyError, TypeError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def grid_axes(ds) -> list[str]:
    return [d for d in ds["diverged_at"].dims if d != "seed"]


def _with_an_axis(ds):
    """A sweep without a grid (seeds only) gets one: its first fixed hyperparameter, or
    ``run``, with a single value."""
    if grid_axes(ds):
        return ds
    fixed = _record(ds).get("hparams") or {}
    name, value = next(iter(fixed.items()), ("run", 0.0))
    return ds.expand_dims({name: [float(value)]})


def select(ds, items: list[str] | None, x: str | None, metric: str | None):
    """(ds with the ``--select NAME=VALUE`` axes fixed, x, metric), each checked."""
    ds = _with_an_axis(ds)
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in grid_axes(ds):
            raise ValueError(
                f"select: expected NAME=VALUE with NAME a grid axis ({', '.join(grid_axes(ds))})"
                f", got {item!r}"
            )
        name = name.strip()
        values = np.asarray(ds[name].values, float)
        try:
            hit = np.isclose(values, float(value), rtol=1e-9, atol=0.0)
        except ValueError:
            raise ValueError(f"select: {name}: expected a number, got {value!r}") from None
        if not hit.any():
            listed = ", ".join(f"{v:g}" for v in values)
            raise ValueError(f"select: {name}={value} is not on the grid ({listed})")
        ds = ds.isel({name: [int(np.argmax(hit))]})  # a grid axis of one value
    axes = grid_axes(ds)
    x = x or axes[0]
    if x not in axes:
        raise ValueError(f"x: expected a grid axis ({', '.join(axes)}), got {x!r}")
    curves = [k for k, v in ds.data_vars.items() if "step" in v.dims]
    metric = metric or ("test_accuracy" if "test_accuracy" in curves else "test_loss")
    if metric not in curves:
        raise ValueError(f"metric: expected one of {', '.join(curves)}, got {metric!r}")
    return ds, x, metric


def _limits(factory, fixed: dict[str, float], ds) -> Any:
    """``max_stable_curvature`` of the rule at every grid point (a DataArray over the grid)."""
    axes = grid_axes(ds)
    first = ds["diverged_at"].isel(seed=0)
    out = np.empty(first.shape)
    for index in np.ndindex(*first.shape):
        hp = {**fixed, **{a: float(ds[a].values[i]) for a, i in zip(axes, index, strict=True)}}
        out[index] = linearize.max_stable_curvature(factory(**hp))
    return extras.xarray.DataArray(out, coords={a: ds[a] for a in axes}, dims=axes)


def stability_ratio(ds, sharpness_at: str = "initial") -> tuple[Any, str]:
    """(measured sharpness / the rule's stability limit over the grid, or None; a note).

    The sharpness is the tracked one at the first evaluation (``'initial'``: the network at
    initialisation, the same for every hyperparameter of a seed) or its largest value over
    the run (``'max'``), averaged over the seeds; the limit is the largest curvature on which
    the rule at that grid point is stable (``linearize.max_stable_curvature``). Where the
    ratio exceeds 1, the rule is unstable on the quadratic with the measured curvature.
    """
    if sharpness_at not in SHARPNESS_AT:
        raise ValueError(f"sharpness: expected one of {', '.join(SHARPNESS_AT)}")
    if sharpness_at == "none":
        return None, ""
    if "sharpness" not in ds:
        return None, "no stability limit: the sweep did not track the sharpness"
    record = _record(ds)
    if record.get("schedule") not in (None, "constant"):
        return None, f"no stability limit: learning-rate schedule {record['schedule']!r}"
    try:
        factory = optimizers.get(record.get("optimizer"))
        fixed = {k: float(v) for k, v in (record.get("hparams") or {}).items()}
        probe = {**fixed, **{a: float(ds[a].values[0]) for a in grid_axes(ds)}}
        system = linearize.linearize(factory(**probe), 1.0)
    except (ValueError, TypeError, KeyError) as error:
        return None, f"no stability limit: {' '.join(str(error).split())[:120]}"
    if not system.exact:
        reason = ", ".join(system.reason)
        return None, f"no stability limit: the rule is not a linear time-invariant loop ({reason})"
    try:
        limits = _limits(factory, fixed, ds)
    except (ValueError, TypeError) as error:  # a point the analysis refuses: no line, a note
        return None, f"no stability limit: {' '.join(str(error).split())[:120]}"
    sharp = ds["sharpness"]
    sharp = sharp.isel(step=0) if sharpness_at == "initial" else sharp.max("step", skipna=True)
    measured = sharp.mean("seed", skipna=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = measured / limits
    return ratio, f"stability limit at the {sharpness_at} sharpness"


def _title(ds, metric: str, where: str, note: str) -> str:
    record = _record(ds)
    fixed = ", ".join(f"{k}={v:g}" for k, v in (record.get("hparams") or {}).items())
    head = f"{record.get('optimizer', '?')}"
    head += f" ({fixed})" if fixed else ""
    head += f" on {record.get('dataset', '?')} / {record.get('model', '?')}: {metric}"
    tail = [] if where == "finished" else [where]
    tail += [note] if note else []
    return head + (f"\n{'; '.join(tail)}" if tail else "")


def figure(
    ds,
    *,
    metric: str | None = None,
    x: str | None = None,
    selections: list[str] | None = None,
    sharpness_at: str = "initial",
    where: str = "finished",
):
    """(the sweep's Figure, the note on its stability limit)."""
    ds, x, metric = select(ds, selections, x, metric)
    plotting.sweep_panels(ds, x)  # too many panels: refused before any analysis
    ratio, note = stability_ratio(ds, sharpness_at)
    fig = plotting.sweep_figure(
        ds, metric=metric, x=x, ratio=ratio, title=_title(ds, metric, where, note)
    )
    return fig, note


def save(fig, path: str | Path) -> None:
    try:
        files.save_figure(fig, path, dpi=110)
    except OSError as error:
        raise ValueError(f"plot: cannot write {str(path)!r}: {error.strerror or error}") from None

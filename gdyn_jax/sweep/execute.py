"""Running a sweep: chunks of members, sharded over a ``'sweep'`` mesh axis, in step blocks.

The flat member axis (grid × seeds, see ``grid.py``) is cut into chunks of ``chunk_size``
members (rounded up to a multiple of the device count; the last chunk is padded with copies
of the last member, whose results are dropped). Each chunk is trained by two compiled
programs, ``jit(vmap(init))`` and ``jit(vmap(advance))``, the latter run once per *block* of
evaluation intervals. The member axis of every input is placed with
``NamedSharding(Mesh(devices, ('sweep',), axis_types=(Auto,)), P('sweep'))`` and the data is
replicated, so XLA partitions the program across devices with no collectives; member results
do not depend on the device count. On CPU devices ``advance`` walks through each device's
members in groups (``cpu_speedups.grouped``), which keeps a step's working set in the cache.

After every block the whole ``TrainState`` (parameters, optimizer states, masks, keys,
data-order permutations) and the metrics so far are written atomically to
``DIR/checkpoint/state.npz``; ``resume=True`` restarts from there and, since the blocks are
the same compiled program fed the same inputs, reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gdyn_jax.sweep import cpu_speedups, setup, train
from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep import results as results_lib
from gdyn_jax.sweep.config import SweepConfig
from gdyn_jax.sweep.data import DeviceData
from gdyn_jax.sweep.grid import Grid

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.npz"
# Bumped when the checkpointed state's layout changes, so older checkpoints are refused.
CHECKPOINT_FORMAT = 2


# ---------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------


def sweep_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``'sweep'`` over the first ``devices`` devices (default: all).

    The axis type is ``Auto``, so ``NamedSharding``\\ s on it work without ``jax.set_mesh``
    (with jax 0.10's default ``Explicit`` axes they would need it).
    """
    available = jax.devices()
    n = len(available) if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(available):
        raise ValueError(f"devices: expected an integer in [1, {len(available)}], got {devices!r}")
    return jax.make_mesh(
        (n,), ("sweep",), axis_types=(jax.sharding.AxisType.Auto,), devices=available[:n]
    )


def _put(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Places a host array (the same on every process) with ``sharding``; multi-host safe."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _host(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host) array on this host."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


# ---------------------------------------------------------------------------------------------
# Blocks and checkpoints
# ---------------------------------------------------------------------------------------------


def block_intervals(num_intervals: int, checkpoint_every: int | None, eval_every: int) -> int:
    """Evaluation intervals per block: ``checkpoint_every / eval_every`` or about a tenth."""
    if checkpoint_every is not None:
        if (
            isinstance(checkpoint_every, bool)
            or not isinstance(checkpoint_every, int)
            or checkpoint_every < eval_every
            or checkpoint_every % eval_every
            or num_intervals % (checkpoint_every // eval_every)
        ):
            raise ValueError(
                f"checkpoint_every: expected a multiple of eval_every ({eval_every}) that "
                f"divides steps ({num_intervals * eval_every}), got {checkpoint_every!r}"
            )
        return checkpoint_every // eval_every
    target = max(1, round(num_intervals / 10))
    return next(d for d in range(target, num_intervals + 1) if num_intervals % d == 0)


def _fingerprint(config: SweepConfig, grid: Grid, chunk: int, block: int) -> str:
    return json.dumps(
        {
            "config": config.to_dict(),
            "grid": grid.as_dict(),
            "seeds": grid.seeds,
            "chunk": chunk,
            "block_intervals": block,
            "format": CHECKPOINT_FORMAT,
        },
        sort_keys=True,
    )


def _save_checkpoint(
    path: Path | None,
    fingerprint: str,
    position: tuple[int, int],
    carry: Any,
    buffers: Mapping[str, np.ndarray],
) -> None:
    # Every process gathers (a collective on multi-host runs); only the first one writes.
    leaves = [_host(x) for x in jax.tree.leaves(carry)]
    if path is None or jax.process_index() != 0:
        return
    arrays = {f"carry/{i:05d}": x for i, x in enumerate(leaves)}
    arrays.update({f"buf/{k}": v for k, v in buffers.items()})
    header = {
        "fingerprint": fingerprint,
        "chunk": position[0],
        "block": position[1],
        "num_leaves": len(leaves),
    }
    arrays["__header__"] = np.array(json.dumps(header))
    results_lib.write_npz_atomic(path, arrays)


def _load_checkpoint(path: Path, fingerprint: str):
    arrays, header = results_lib.read_npz(path)
    if header["fingerprint"] != fingerprint:
        raise ValueError(
            f"resume: the checkpoint in {path.parent} belongs to a different sweep (config, "
            "grid, seeds, chunk size or checkpoint interval differ); use another --out or "
            "drop --resume"
        )
    leaves = [arrays[f"carry/{i:05d}"] for i in range(header["num_leaves"])]
    buffers = {k[4:]: v for k, v in arrays.items() if k.startswith("buf/")}
    return (header["chunk"], header["block"]), leaves, buffers


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Compiled:
    """A config's task, its data (on the host's default device) and its two programs.

    ``init(data, hparams, key_data) -> TrainState`` and
    ``advance(data, hparams, state, start_step) -> (state, first, metrics)``, both over a
    member axis sharded as ``member``; ``config`` is kept so that the objects it holds (and
    so the cache key's ids) stay alive.
    """

    config: SweepConfig
    task: train.Task
    data: DeviceData
    init: Callable
    advance: Callable


_CACHE: collections.OrderedDict[tuple, Compiled] = collections.OrderedDict()
_CACHE_SIZE = 8


def _objects(config: SweepConfig) -> tuple[int, ...]:
    """Ids of the non-name objects of a config (two local functions may share a record)."""
    fields = (config.dataset, config.model, config.optimizer, config.loss)
    return tuple(id(f) for f in fields if not isinstance(f, str))


def compiled(config: SweepConfig, intervals: int, devices: Sequence[jax.Device]) -> Compiled:
    """The programs of ``config`` with blocks of ``intervals``, cached for repeated sweeps.

    The cache key is the config's record, the identity of the objects in it, the block size,
    the devices and the kernel choice (``cpu_speedups``).
    """
    fast = cpu_speedups.enabled()
    key = (config.to_json(), _objects(config), intervals, tuple(devices), fast)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    task, data = setup.prepare(config)
    mesh = jax.make_mesh(
        (len(devices),),
        ("sweep",),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=list(devices),
    )
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))

    def init(data, hparams, key_data):
        return train.init(task, data, hparams, jax.random.wrap_key_data(key_data))

    def advance(data, hparams, state, start_step):
        return train.advance(task, data, hparams, state, start_step, intervals)

    grouped = cpu_speedups.grouped(
        jax.vmap(advance, in_axes=(None, 0, 0, None)),
        cpu_speedups.member_group(devices, fast),
        len(devices),
    )
    out = Compiled(
        config,
        task,
        data,
        jax.jit(
            jax.vmap(init, in_axes=(None, 0, 0)),
            out_shardings=member,
            compiler_options=cpu_speedups.init_compiler_options(devices, fast),
        ),
        jax.jit(grouped, out_shardings=member, donate_argnums=(2,)),
    )
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _check_options(chunk_size: Any, out: Any, resume: bool) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    if resume and out is None:
        raise ValueError("resume: needs out (the directory of the interrupted sweep)")


def run_sweep(
    config: SweepConfig,
    grid: Mapping[str, Sequence[float]] | Grid,
    seeds: int | None = None,
    *,
    out: str | Path | None = None,
    chunk_size: int | None = None,
    devices: int | None = None,
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
):
    """Trains every (grid point, seed) pair in one jit + vmap program; returns a Dataset.

    Args:
      config: the static settings (``SweepConfig``): names, import paths or objects for the
        dataset, model, optimizer and loss.
      grid: hyperparameter name -> values (the cartesian product is swept), or a ``Grid``
        already built for ``config`` with ``Grid.build(config, values, seeds)``.
      seeds: number of seeds per grid point (member seeds 0..seeds-1); default 1, or the
        ``Grid``'s.
      out: directory for ``results.npz`` and ``checkpoint/`` (nothing is written if None).
      chunk_size: members trained at once (bounds memory); default all.
      devices: number of devices to shard members over (default: all of ``jax.devices()``).
      resume: continue from ``out/checkpoint`` (or return finished results).
      progress: show a tqdm progress bar over (chunk, block) pairs.
      checkpoint_every: steps per block (a multiple of ``eval_every`` dividing ``steps``);
        default about a tenth of the run.
      callback: called after each block (and its checkpoint) with a dict
        ``chunk, block, num_chunks, num_blocks, step``.

    Returns:
      ``xarray.Dataset`` with ``train_loss``, ``test_loss``, ``test_accuracy`` (for class
      labels) and ``grad_norm``, ``sharpness`` (when tracked) over
      ``(*grid names, seed, step)``, ``diverged_at`` over ``(*grid names, seed)``;
      coordinates are the grid values, seeds and evaluation steps; ``attrs`` hold the config
      record (JSON), the grid and library versions.
    """
    config.validate()
    grid = _grid(config, grid, seeds)
    _check_options(chunk_size, out, resume)
    mesh = sweep_mesh(devices)
    num_intervals = config.steps // config.eval_every
    intervals = block_intervals(num_intervals, checkpoint_every, config.eval_every)
    out = None if out is None else Path(out)
    if resume and (out / results_lib.RESULTS_FILE).exists() and _same_results(out, config, grid):
        return results_lib.load_results(out)

    programs = compiled(config, intervals, tuple(mesh.devices.flat))  # loads the data, once
    chunk, num_chunks = grid_lib.padded_size(grid.num_members, chunk_size, mesh.size)
    plan = _Plan(config, grid, programs, mesh, chunk, num_chunks, intervals)
    ckpt = None if out is None else out / CHECKPOINT_DIR / CHECKPOINT_FILE
    buffers = plan.buffers()
    start, leaves = (0, 0), None
    if resume and ckpt.exists():
        start, leaves, buffers = _load_checkpoint(ckpt, plan.fingerprint)
    writer = jax.process_index() == 0

    from tqdm.auto import tqdm

    bar = tqdm(
        total=num_chunks * plan.num_blocks,
        initial=start[0] * plan.num_blocks + start[1],
        unit="block",
        desc=f"sweep {grid.num_members} members",
        disable=not (progress and writer),
    )
    try:
        for position in plan.run(start, leaves, buffers):
            if ckpt is not None:
                _save_checkpoint(ckpt, plan.fingerprint, position, plan.state, buffers)
            bar.update(1)
            if callback is not None:
                callback(plan.progress(position))
    finally:
        bar.close()

    num = grid.num_members
    ds = results_lib.to_dataset(
        {k: buffers[k][:num] for k in programs.task.metric_names},
        buffers["diverged_at"][:num],
        grid.as_dict(),
        grid.seeds,
        config.eval_steps,
        config.to_json(),
    )
    if out is not None and writer:
        results_lib.save_results(ds, out)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return ds


def _grid(config: SweepConfig, grid: Mapping | Grid, seeds: int | None) -> Grid:
    """The validated grid: built here from a mapping, or a ``Grid`` built for ``config``."""
    if not isinstance(grid, Grid):
        return Grid.build(config, grid, 1 if seeds is None else seeds)
    if seeds is not None and seeds != grid.seeds:
        raise ValueError(f"seeds: the Grid has {grid.seeds} seeds, got seeds={seeds!r}")
    return Grid.build(config, grid.as_dict(), grid.seeds)


@dataclasses.dataclass
class _Plan:
    """The chunks × blocks of one sweep, and the state of the chunk being trained."""

    config: SweepConfig
    grid: Grid
    programs: Compiled
    mesh: jax.sharding.Mesh
    chunk: int
    num_chunks: int
    intervals: int
    state: Any = None

    def __post_init__(self) -> None:
        total = self.chunk * self.num_chunks
        table, seed_of = self.grid.members()
        self.hparams = grid_lib.columns(self.grid.names, grid_lib.pad(table, total))
        self.keys = grid_lib.pad(grid_lib.seed_keys(seed_of), total)
        self.num_blocks = self.config.steps // self.config.eval_every // self.intervals
        self.fingerprint = _fingerprint(self.config, self.grid, self.chunk, self.intervals)
        self.member = jax.sharding.NamedSharding(self.mesh, jax.P("sweep"))
        replicated = jax.sharding.NamedSharding(self.mesh, jax.P())
        self.data = jax.tree.map(lambda x: _put(x, replicated), self.programs.data)

    def buffers(self) -> dict[str, np.ndarray]:
        total, evals = self.chunk * self.num_chunks, self.config.num_evals
        out = {
            k: np.full((total, evals), np.nan, np.float32) for k in self.programs.task.metric_names
        }
        out["diverged_at"] = np.full((total,), -1, np.int32)
        return out

    def progress(self, position: tuple[int, int]) -> dict[str, int]:
        c, b = position[0], position[1] - 1
        return {
            "chunk": c,
            "block": b,
            "num_chunks": self.num_chunks,
            "num_blocks": self.num_blocks,
            "step": (b + 1) * self.intervals * self.config.eval_every,
        }

    def run(self, start: tuple[int, int], leaves, buffers: dict[str, np.ndarray]):
        """Trains from ``start`` (chunk, block), filling ``buffers``; yields each new position.

        ``leaves``: the checkpointed state of chunk ``start[0]`` (None to start it afresh).
        """
        programs, names = self.programs, self.programs.task.metric_names
        for c in range(start[0], self.num_chunks):
            rows = slice(c * self.chunk, (c + 1) * self.chunk)
            hp = {k: _put(v[rows], self.member) for k, v in self.hparams.items()}
            keys = _put(self.keys[rows], self.member)
            b0 = 0
            if leaves is not None and c == start[0]:
                shapes = jax.eval_shape(programs.init, self.data, hp, keys)
                self.state = jax.tree.unflatten(
                    jax.tree.structure(shapes), [_put(x, self.member) for x in leaves]
                )
                b0, leaves = start[1], None
            else:
                self.state = programs.init(self.data, hp, keys)
            for b in range(b0, self.num_blocks):
                step = np.int32(b * self.intervals * self.config.eval_every)
                self.state, first, metrics = programs.advance(self.data, hp, self.state, step)
                if b == 0:
                    for k in names:
                        buffers[k][rows, 0] = _host(first[k])
                cols = slice(1 + b * self.intervals, 1 + (b + 1) * self.intervals)
                for k in names:
                    buffers[k][rows, cols] = _host(metrics[k])
                buffers["diverged_at"][rows] = _host(self.state.diverged_at)
                yield (c, b + 1)


def _same_results(out: Path, config: SweepConfig, grid: Grid) -> bool:
    ds = results_lib.load_results(out)
    same = (
        json.loads(ds.attrs["config"]) == json.loads(config.to_json())
        and json.loads(ds.attrs["grid"]) == grid.as_dict()
        and int(ds.attrs["seeds"]) == grid.seeds
    )
    if not same:
        raise ValueError(f"resume: {out} holds results of a different sweep; use another --out")
    return True


__all__ = ["Compiled", "block_intervals", "compiled", "run_sweep", "sweep_mesh"]

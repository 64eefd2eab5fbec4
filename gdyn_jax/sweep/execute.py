"""Running a sweep: chunks of members, sharded over a ``'sweep'`` mesh axis, in step blocks.

The flat member axis (grid × seeds, see ``grid.py``) is cut into chunks of ``chunk_size``
members (rounded up to a multiple of the device count; the last chunk is padded with copies
of the last member, whose results are dropped). Each chunk is trained by two compiled
programs, ``jit(vmap(init))`` and ``jit(vmap(advance))``, the latter run once per *block* of
evaluation intervals. The member axis of every input is placed with
``NamedSharding(Mesh(devices, ('sweep',), axis_types=(Auto,)), P('sweep'))`` and the data is
replicated, so XLA partitions the program across devices with no collectives; member results
do not depend on the device count. On CPU devices ``advance`` walks through each device's
members in groups of about ``CPU_MEMBER_GROUP`` (``grouped``), which keeps a step's working set
in the cache.

After every block the whole carry (parameters, optimizer states, masks, keys, data-order
permutations) and the metrics so far are written atomically to ``DIR/checkpoint/state.npz``;
``resume=True`` restarts from there and, since the blocks are the same compiled program fed
the same inputs, reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep import results as results_lib
from gdyn_jax.sweep.config import SweepConfig, validate_grid
from gdyn_jax.sweep.train import Program, as_hparams, build_program, load_arrays

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.npz"


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


def _fingerprint(config: SweepConfig, grid: Mapping, seeds: int, chunk: int, block: int) -> str:
    return json.dumps(
        {
            "config": config.to_dict(),
            "grid": {k: list(v) for k, v in grid.items()},
            "seeds": seeds,
            "chunk": chunk,
            "block_intervals": block,
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


@functools.lru_cache(maxsize=8)
def _programs(config_json: str, intervals: int, devices: tuple) -> tuple:
    """(program, init_fn, advance_fn) for a config, cached so repeated sweeps reuse them."""
    config = SweepConfig.from_dict(json.loads(config_json))
    program = build_program(config)
    mesh = jax.make_mesh(
        (len(devices),),
        ("sweep",),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=list(devices),
    )
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    return (program, *_compile(program, intervals, member))


# Members trained side by side on a CPU device: the rest of the chunk waits its turn.
CPU_MEMBER_GROUP = 16


def member_group(devices: Sequence[jax.Device]) -> int | None:
    """Members vmapped together per device, or None for all of them (accelerators).

    On a CPU, a step of many members at once streams every activation, gradient and
    optimizer state of all of them through memory (for 64 MNIST-1D MLPs, ~2.5 MB per
    tensor); groups of ``CPU_MEMBER_GROUP`` keep them in the cache and run faster (measured:
    ~1.2x at 64 members, ~1.5x at 256 on 2 cores; see ``benchmarks/sweep.py``). GPUs and
    TPUs want the widest batch, so there every member of the chunk runs at once.
    """
    return CPU_MEMBER_GROUP if all(d.platform == "cpu" for d in devices) else None


def _group_width(per_device: int, group: int) -> int | None:
    """The divisor of ``per_device`` in [group / 2, 2 group] closest to ``group``, or None."""
    if per_device <= group:
        return None
    near = [d for d in range(max(1, group // 2), 2 * group + 1) if per_device % d == 0]
    near = [d for d in near if d < per_device]
    return min(near, key=lambda d: (abs(d - group), -d)) if near else None


def grouped(fn: Callable, group: int | None, num_devices: int) -> Callable:
    r"""``fn(data, hparams, carry, *rest)``, vmapped over members, run ``group`` at a time.

    The member axis (size :math:`D K G` for :math:`D` devices, sharded in contiguous
    blocks) is viewed as :math:`(K, D G)`: a sequential ``lax.map`` over :math:`K` steps
    through the groups while each device keeps its own :math:`G` members of every group, so
    no data moves between devices. Each member's computation is unchanged; only the width of
    the batched operations is (rounding of the batched kernels may differ in the last bit,
    as between chunk sizes). The group width :math:`G` is the divisor of the members per
    device closest to ``group`` within a factor of 2; without one (or with at most
    ``group`` members per device) it falls back on ``fn``, all members at once.
    """

    def run(data, hparams, carry, *rest):
        size = jax.tree.leaves(carry)[0].shape[0]
        per_device = size // num_devices
        width = None if group is None else _group_width(per_device, group)
        if width is None:
            return fn(data, hparams, carry, *rest)
        k = per_device // width

        def split(x):  # (D K G, ...) -> (K, D G, ...)
            x = jnp.swapaxes(x.reshape((num_devices, k, width) + x.shape[1:]), 0, 1)
            return x.reshape((k, num_devices * width) + x.shape[3:])

        def merge(x):  # (K, D G, ...) -> (D K G, ...)
            x = jnp.swapaxes(x.reshape((k, num_devices, width) + x.shape[2:]), 0, 1)
            return x.reshape((size,) + x.shape[3:])

        parts = jax.tree.map(split, (hparams, carry))
        out = jax.lax.map(lambda p: fn(data, p[0], p[1], *rest), parts)
        return jax.tree.map(merge, out)

    return run


def _compile(program: Program, intervals: int, member: jax.sharding.NamedSharding):
    def init(data, hparams, key_data):
        return program.init(data, hparams, jax.random.wrap_key_data(key_data))

    devices = list(member.mesh.devices.flat)
    advance = functools.partial(program.advance, num_intervals=intervals)
    advance = grouped(
        jax.vmap(advance, in_axes=(None, 0, 0, None)), member_group(devices), len(devices)
    )
    init_fn = jax.jit(jax.vmap(init, in_axes=(None, 0, 0)), out_shardings=member)
    advance_fn = jax.jit(advance, out_shardings=member, donate_argnums=(2,))
    return init_fn, advance_fn


def _check_options(chunk_size: Any, out: Any, resume: bool) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    if resume and out is None:
        raise ValueError("resume: needs out (the directory of the interrupted sweep)")


def run_sweep(
    config: SweepConfig,
    grid: Mapping[str, Sequence[float]],
    seeds: int = 1,
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
      config: the static settings (``SweepConfig``).
      grid: hyperparameter name -> values; the cartesian product is swept.
      seeds: number of seeds per grid point (member seeds 0..seeds-1).
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
      ``xarray.Dataset`` with ``train_loss``, ``test_loss``, ``test_accuracy`` (and
      ``grad_norm``, ``sharpness`` when tracked) over ``(*grid names, seed, step)``,
      ``diverged_at`` over ``(*grid names, seed)``; coordinates are the grid values, seeds and
      evaluation steps; ``attrs`` hold the config JSON and library versions.
    """
    config.validate()
    if not grid:
        raise ValueError("grid: empty; give at least one hyperparameter with its values")
    grid = validate_grid(config, grid, seeds)
    _check_options(chunk_size, out, resume)
    mesh = sweep_mesh(devices)
    num_intervals = config.steps // config.eval_every
    intervals = block_intervals(num_intervals, checkpoint_every, config.eval_every)
    load_arrays(config)  # checks batch_size against the data, before compiling

    out = None if out is None else Path(out)
    hparams, seed_of = grid_lib.members(grid, seeds)
    num = len(seed_of)
    chunk, num_chunks = grid_lib.padded_size(num, chunk_size, mesh.size)
    total = chunk * num_chunks
    fingerprint = _fingerprint(config, grid, seeds, chunk, intervals)
    if (
        resume
        and (out / results_lib.RESULTS_FILE).exists()
        and _same_results(out, config, grid, seeds)
    ):
        return results_lib.load_results(out)

    program, init_fn, advance_fn = _programs(config.to_json(), intervals, tuple(mesh.devices.flat))
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    data = jax.tree.map(lambda x: _put(x, replicated), program.data)
    hparams = {k: grid_lib.pad(v, total) for k, v in hparams.items()}
    keys = grid_lib.pad(grid_lib.seed_keys(seed_of), total)
    num_blocks = num_intervals // intervals
    buffers = {
        k: np.full((total, config.num_evals), np.nan, np.float32) for k in program.metric_names
    }
    buffers["diverged_at"] = np.full((total,), -1, np.int32)

    ckpt = None if out is None else out / CHECKPOINT_DIR / CHECKPOINT_FILE
    start, leaves = (0, 0), None
    if resume and ckpt.exists():
        start, leaves, buffers = _load_checkpoint(ckpt, fingerprint)
    writer = jax.process_index() == 0

    from tqdm.auto import tqdm

    bar = tqdm(
        total=num_chunks * num_blocks,
        initial=start[0] * num_blocks + start[1],
        unit="block",
        desc=f"sweep {num} members",
        disable=not (progress and writer),
    )
    try:
        for c in range(start[0], num_chunks):
            rows = slice(c * chunk, (c + 1) * chunk)
            hp = {k: _put(v[rows], member) for k, v in as_hparams_host(hparams).items()}
            b0 = 0
            if leaves is not None and c == start[0]:
                shapes = jax.eval_shape(init_fn, data, hp, _put(keys[rows], member))
                carry = jax.tree.unflatten(
                    jax.tree.structure(shapes), [_put(x, member) for x in leaves]
                )
                b0, leaves = start[1], None
            else:
                carry = init_fn(data, hp, _put(keys[rows], member))
            for b in range(b0, num_blocks):
                carry, first, metrics = advance_fn(
                    data, hp, carry, np.int32(b * intervals * config.eval_every)
                )
                if b == 0:
                    for k in program.metric_names:
                        buffers[k][rows, 0] = _host(first[k])
                cols = slice(1 + b * intervals, 1 + (b + 1) * intervals)
                for k in program.metric_names:
                    buffers[k][rows, cols] = _host(metrics[k])
                buffers["diverged_at"][rows] = _host(carry["diverged_at"])
                if ckpt is not None:
                    _save_checkpoint(ckpt, fingerprint, (c, b + 1), carry, buffers)
                bar.update(1)
                if callback is not None:
                    callback(
                        {
                            "chunk": c,
                            "block": b,
                            "num_chunks": num_chunks,
                            "num_blocks": num_blocks,
                            "step": (b + 1) * intervals * config.eval_every,
                        }
                    )
    finally:
        bar.close()

    ds = results_lib.to_dataset(
        {k: buffers[k][:num] for k in program.metric_names},
        buffers["diverged_at"][:num],
        grid,
        seeds,
        config.eval_steps,
        config.to_json(),
    )
    if out is not None and writer:
        results_lib.save_results(ds, out)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return ds


def as_hparams_host(hparams: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float32) for k, v in hparams.items()}


def _same_results(out: Path, config: SweepConfig, grid: Mapping, seeds: int) -> bool:
    ds = results_lib.load_results(out)
    same = (
        json.loads(ds.attrs["config"]) == json.loads(config.to_json())
        and json.loads(ds.attrs["grid"]) == {k: list(v) for k, v in grid.items()}
        and int(ds.attrs["seeds"]) == seeds
    )
    if not same:
        raise ValueError(f"resume: {out} holds results of a different sweep; use another --out")
    return True


__all__ = ["run_sweep", "sweep_mesh", "block_intervals", "as_hparams"]

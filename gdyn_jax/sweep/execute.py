"""Running a sweep: chunks of members in fixed-width groups, sharded over a ``'sweep'`` mesh
axis, in step blocks, into an output directory that the sweep owns.

The flat member axis (grid × seeds, see ``grid.py``) is cut into chunks of ``chunk_size``
members, rounded up to a multiple of the device count times the member group width
(``groups``; the last chunk is padded with copies of the last member, whose results are
dropped). Every member is computed in a vmapped group of that one width, so its numbers do not
depend on the chunk size, the device count or the process count, bit for bit. Each chunk is
trained by two compiled programs, ``init`` and ``advance`` (a *block* of evaluation
intervals), both walking through the groups. The member axis of every input is placed with
``NamedSharding(Mesh(devices, ('sweep',), axis_types=(Auto,)), P('sweep'))`` and the data is
replicated, so XLA partitions the program across devices (and processes) with no collectives.

With ``out``, the sweep owns the directory while it runs (``outdir``: a lock, and a decision
to start, resume, return finished results or refuse), writes after every block the whole
``TrainState`` and the metrics so far as a checked checkpoint (``checkpoint``), and at the
end the results (``results``), all atomically. Resuming feeds the same compiled programs the
same inputs, so a resumed sweep equals an uninterrupted one bit for bit. On several
processes (``jax.distributed``) process 0 alone reads and writes the directory and holds the
lock; the others receive its decisions and the checkpoint's arrays by broadcast.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gdyn_jax.sweep import checkpoint, cpu_speedups, groups, outdir, setup, train
from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep import results as results_lib
from gdyn_jax.sweep.config import SweepConfig
from gdyn_jax.sweep.data import DeviceData
from gdyn_jax.sweep.grid import Grid

_LOG = logging.getLogger(__name__)

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
# Blocks
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


def compiled(
    config: SweepConfig,
    intervals: int,
    devices: Sequence[jax.Device],
    width: int | None = None,
) -> Compiled:
    """The programs of ``config`` with blocks of ``intervals``, members in groups of ``width``
    per device (default: ``groups.default_width(devices)``), cached for repeated sweeps.

    The cache key is the config's record, the identity of the objects in it, the block size,
    the devices, the group width and the kernel choice (``cpu_speedups``).
    """
    width = groups.default_width(devices) if width is None else groups.check_width(width)
    fast = cpu_speedups.enabled()
    key = (config.to_json(), _objects(config), intervals, tuple(devices), width, fast)
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

    def per_device(fn, in_axes):
        # Each device trains its own members, in groups of `width`: the same program on
        # every device, whatever their number (see groups).
        local = groups.grouped(jax.vmap(fn, in_axes=in_axes), width)
        specs = tuple(jax.P() if a is None else jax.P("sweep") for a in in_axes)
        return jax.shard_map(
            local, mesh=mesh, in_specs=specs, out_specs=jax.P("sweep"), check_vma=False
        )

    out = Compiled(
        config,
        task,
        data,
        jax.jit(
            per_device(init, (None, 0, 0)),
            out_shardings=member,
            compiler_options=cpu_speedups.init_compiler_options(devices, fast),
        ),
        jax.jit(per_device(advance, (None, 0, 0, None)), out_shardings=member, donate_argnums=(2,)),
    )
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _check_options(chunk_size: Any, out: Any, resume: Any, overwrite: Any) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
    if resume not in (None, True, False):
        raise ValueError(f"resume: expected None, True or False, got {resume!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite: expected True or False, got {overwrite!r}")
    if out is None and (resume or overwrite):
        raise ValueError("out: resume and overwrite need out (the sweep's directory)")
    if resume and overwrite:
        raise ValueError("overwrite: cannot be combined with resume=True")


def run_sweep(
    config: SweepConfig,
    grid: Mapping[str, Sequence[float]] | Grid,
    seeds: int | None = None,
    *,
    out: str | Path | None = None,
    chunk_size: int | None = None,
    devices: int | None = None,
    member_group: int | None = None,
    resume: bool | None = None,
    overwrite: bool = False,
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
      out: the sweep's directory: ``results.npz``, ``checkpoint/`` while it runs, and
        ``sweep.lock`` (nothing is written if None). A directory holding results or a
        checkpoint of another sweep is refused (see ``overwrite``); one holding this
        sweep's checkpoint is resumed, this sweep's results are returned (see ``resume``).
      chunk_size: members trained at once (bounds memory); default all. Rounded up to a
        multiple of the device count times ``member_group``.
      devices: number of devices to shard members over (default: all of ``jax.devices()``).
      member_group: members computed side by side on a device (default 4 on CPU, 256 on
        accelerators); a member's numbers depend on this width only, not on ``chunk_size``,
        ``devices`` or the number of processes.
      resume: None (default): resume this sweep's checkpoint in ``out``, or return its
        results, if there are some, else start; True: there must be some; False: there must
        be none.
      overwrite: delete the results and the checkpoint in ``out`` (of any sweep) and start
        afresh.
      progress: show a tqdm progress bar over (chunk, block) pairs. (What the sweep finds in
        ``out``, a resumed checkpoint or a stale lock taken over, is logged at INFO level by
        the ``gdyn_jax.sweep.execute`` logger; the ``gdyn`` command prints it.)
      checkpoint_every: steps per block (a multiple of ``eval_every`` dividing ``steps``);
        default about a tenth of the run.
      callback: called after each block (and its checkpoint) with a dict
        ``chunk, block, num_chunks, num_blocks, step``.

    Returns:
      ``xarray.Dataset`` with ``train_loss``, ``test_loss``, ``test_accuracy`` (for class
      labels) and ``grad_norm``, ``sharpness`` (when tracked) over
      ``(*grid names, seed, step)``, ``diverged_at`` over ``(*grid names, seed)``;
      coordinates are the grid values, seeds and evaluation steps; ``attrs`` hold the config
      record (JSON), the grid, seeds, member group width, platform and library versions.
    """
    config.validate()
    grid = _grid(config, grid, seeds)
    _check_options(chunk_size, out, resume, overwrite)
    mesh = sweep_mesh(devices)
    devs = tuple(mesh.devices.flat)
    width = groups.default_width(devs) if member_group is None else groups.check_width(member_group)
    num_intervals = config.steps // config.eval_every
    intervals = block_intervals(num_intervals, checkpoint_every, config.eval_every)
    chunk, num_chunks = groups.chunk_layout(grid.num_members, chunk_size, mesh.size, width)
    _check_host_memory(chunk * num_chunks, config.num_evals)
    identity = results_lib.identity(
        config.to_json(),
        grid.as_dict(),
        grid.seeds,
        width,
        devs[0].platform,
        results_lib.versions(),
    )
    layout = {  # how the sweep is cut: a checkpoint is resumed only by a run cut the same way
        "chunk": chunk,
        "num_chunks": num_chunks,
        "block_intervals": intervals,
        "num_blocks": num_intervals // intervals,
    }
    output = _Output(None if out is None else Path(out), identity, layout)
    try:
        output.claim(resume, overwrite)  # before anything is loaded or compiled
        if output.action == "finished" and jax.process_count() == 1:
            return output.decision.results
        programs = compiled(config, intervals, devs, width)  # loads the data, once
        plan = _Plan(config, grid, programs, mesh, chunk, num_chunks, intervals, identity)
        if output.action == "finished":
            return output.finished(plan)
        start, leaves, buffers = output.start(plan)
        _train(plan, output, start, leaves, buffers, progress, callback)
        ds = plan.dataset(buffers)
        output.finish(ds)
        return ds
    finally:
        output.close()


# Metrics kept on the host per member and evaluation (at most five float32 metrics).
_METRIC_BYTES = 5 * 4


def _check_host_memory(members: int, evals: int) -> None:
    """The metric buffers (members × evaluations) must fit in this machine's memory."""
    try:
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: nothing to compare with
        return
    need = members * evals * _METRIC_BYTES
    if need > available:
        raise ValueError(
            f"eval_every: {evals} evaluations of {members} members need {need / 1e9:.1f} GB "
            f"of host memory for the metrics, more than this machine has "
            f"({available / 1e9:.1f} GB); evaluate less often"
        )


def _train(plan, output, start, leaves, buffers, progress: bool, callback) -> None:
    """Runs the plan from ``start``, checkpointing and reporting after every block."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=plan.num_chunks * plan.num_blocks,
        initial=start[0] * plan.num_blocks + start[1],
        unit="block",
        desc=f"sweep {plan.grid.num_members} members",
        disable=not (progress and jax.process_index() == 0),
    )
    try:
        for position in plan.run(start, leaves, buffers):
            output.save(position, plan.state, buffers)
            bar.update(1)
            if callback is not None:
                callback(plan.progress(position))
    finally:
        bar.close()


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
    identity: dict[str, Any]
    state: Any = None

    def __post_init__(self) -> None:
        total = self.chunk * self.num_chunks
        table, seed_of = self.grid.members()
        self.hparams = grid_lib.columns(self.grid.names, grid_lib.pad(table, total))
        self.keys = grid_lib.pad(grid_lib.seed_keys(seed_of), total)
        self.num_blocks = self.config.steps // self.config.eval_every // self.intervals
        self.member = jax.sharding.NamedSharding(self.mesh, jax.P("sweep"))
        replicated = jax.sharding.NamedSharding(self.mesh, jax.P())
        self.data = jax.tree.map(lambda x: _put(x, replicated), self.programs.data)

    def buffers(self, rows: int | None = None) -> dict[str, np.ndarray]:
        """NaN metrics (rows, evaluations) and ``diverged_at`` -1 (default: every member,
        padding included)."""
        total, evals = rows or self.chunk * self.num_chunks, self.config.num_evals
        out = {
            k: np.full((total, evals), np.nan, np.float32) for k in self.programs.task.metric_names
        }
        out["diverged_at"] = np.full((total,), -1, np.int32)
        return out

    def chunk_inputs(self, c: int) -> tuple[dict[str, jax.Array], jax.Array]:
        rows = slice(c * self.chunk, (c + 1) * self.chunk)
        hp = {k: _put(v[rows], self.member) for k, v in self.hparams.items()}
        return hp, _put(self.keys[rows], self.member)

    def state_shapes(self) -> Any:
        """The shapes and dtypes of a chunk's ``TrainState`` (no computation)."""
        hp, keys = self.chunk_inputs(0)
        return jax.eval_shape(self.programs.init, self.data, hp, keys)

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
            hp, keys = self.chunk_inputs(c)
            b0 = 0
            if leaves is not None and c == start[0]:
                structure = jax.tree.structure(self.state_shapes())
                self.state = jax.tree.unflatten(structure, [_put(x, self.member) for x in leaves])
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

    def dataset(self, buffers: Mapping[str, np.ndarray]):
        """The results Dataset of the (first ``num_members`` rows of the) buffers."""
        num, names = self.grid.num_members, self.programs.task.metric_names
        return results_lib.to_dataset(
            {k: buffers[k][:num] for k in names},
            buffers["diverged_at"][:num],
            self.grid.as_dict(),
            self.grid.seeds,
            self.config.eval_steps,
            self.config.to_json(),
            self.identity["member_group"],
            self.identity["platform"],
        )


# ---------------------------------------------------------------------------------------------
# The output directory, the same for every process
# ---------------------------------------------------------------------------------------------

_ACTIONS = ("start", "resume", "finished")
_REFUSED = -1


def _broadcast(tree: Any) -> Any:
    """Process 0's ``tree`` of host arrays on every process, bit for bit (sent as bytes)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    leaves, structure = jax.tree.flatten(tree)
    raw = [np.frombuffer(np.ascontiguousarray(x).tobytes(), np.uint8) for x in leaves]
    raw = multihost_utils.broadcast_one_to_all(raw)
    out = [
        np.frombuffer(np.asarray(r).tobytes(), x.dtype).reshape(x.shape).copy()
        for r, x in zip(raw, leaves, strict=True)
    ]
    return jax.tree.unflatten(structure, out)


def _agreed(decide: Callable[[], Sequence[int]]) -> np.ndarray:
    """``decide()`` (three integers) on process 0, the same on every process.

    An error of process 0 is raised there and, as a one-line ``ValueError`` pointing to it,
    on every other process (none is left waiting for the others).
    """
    code, error = np.zeros(3, np.int32), None
    if jax.process_index() == 0:
        try:
            code = np.asarray(decide(), np.int32)
        except Exception as e:  # noqa: BLE001 - re-raised below, after the others know
            code, error = np.array([_REFUSED, 0, 0], np.int32), e
    code = _broadcast(code)
    if code[0] == _REFUSED:
        raise error or ValueError("out: process 0 refused to run the sweep (see its error)")
    return code


class _Output:
    """The sweep's directory: owned, read and written by process 0 (see the module doc)."""

    def __init__(self, out: Path | None, identity: dict, layout: dict) -> None:
        self.out, self.identity, self.layout = out, identity, layout
        self.writer = jax.process_index() == 0
        self.lock: outdir.Lock | None = None
        self.decision = outdir.Decision("start")
        self.action, self.position = "start", (0, 0)

    def say(self, text: str) -> None:
        """What the sweep found in ``out``, logged (``gdyn_jax.sweep``, INFO) by process 0."""
        if self.writer:
            _LOG.info(text)

    def claim(self, resume: bool | None, overwrite: bool) -> None:
        """Checks ``out``, takes its lock and decides what to do; every process agrees."""
        if self.out is None:
            return

        def decide() -> tuple[int, int, int]:
            directory = outdir.prepare(self.out)
            self.lock = outdir.Lock.acquire(directory)
            if self.lock.stale is not None:
                owner = outdir.describe_owner(self.lock.stale)
                self.say(f"took over the lock of a sweep that is no longer running ({owner})")
            d = outdir.decide(directory, self.identity, self.layout, resume, overwrite)
            self.decision = d
            for note in d.notes:
                self.say(note)
            ckpt = d.checkpoint
            return _ACTIONS.index(d.action), ckpt.chunk if ckpt else 0, ckpt.block if ckpt else 0

        code = _agreed(decide)
        self.action, self.position = _ACTIONS[code[0]], (int(code[1]), int(code[2]))

    def start(self, plan: _Plan) -> tuple[tuple[int, int], list | None, dict[str, np.ndarray]]:
        """(position, state leaves or None, buffers) to train from: fresh, or the checkpoint's
        (checked against the plan's shapes on process 0, then broadcast)."""
        buffers = plan.buffers()
        if self.action != "resume":
            return (0, 0), None, buffers
        specs = jax.tree.leaves(plan.state_shapes())
        ckpt = self.decision.checkpoint

        def check() -> tuple[int, int, int]:
            outdir.read_checked("checkpoint", checkpoint.check, ckpt, specs, buffers)
            return 0, 0, 0

        _agreed(check)
        if self.writer:
            leaves, buffers = ckpt.leaves, {k: np.array(v) for k, v in ckpt.buffers.items()}
        else:
            leaves = [np.zeros(s.shape, s.dtype) for s in specs]
        leaves, buffers = _broadcast((leaves, buffers))
        c, b = self.position
        step = b * plan.intervals * plan.config.eval_every
        self.say(
            f"resuming {self.out} at chunk {c + 1} of {plan.num_chunks}, step {step} of "
            f"{plan.config.steps}"
        )
        return self.position, leaves, buffers

    def finished(self, plan: _Plan):
        """This sweep's saved results, on every process (process 0 read them)."""
        buffers = plan.buffers(plan.grid.num_members)
        if self.writer:
            ds = self.decision.results
            buffers = {k: ds[k].values.reshape(v.shape) for k, v in buffers.items()}
        buffers = _broadcast(buffers)
        return self.decision.results if self.writer else plan.dataset(buffers)

    def save(self, position: tuple[int, int], state: Any, buffers: Mapping[str, np.ndarray]):
        """The checkpoint after a block (every process gathers the state; process 0 writes)."""
        if self.out is None:
            return
        leaves = [_host(x) for x in jax.tree.leaves(state)]
        if self.writer:
            file = checkpoint.path(self.out)
            checkpoint.write(file, self.identity, self.layout, position, leaves, buffers)

    def finish(self, ds) -> None:
        """The results, then the checkpoint is no longer needed."""
        if self.out is not None and self.writer:
            results_lib.save_results(ds, self.out)
            outdir.remove_checkpoint(self.out)

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


__all__ = ["Compiled", "block_intervals", "compiled", "run_sweep", "sweep_mesh"]

"""How a sweep is cut: chunks of members, blocks of evaluation intervals, and their results.

The flat member axis (grid × seeds, see ``grid``) is cut into chunks of ``chunk_size``
members, rounded up to a multiple of the device count times the member group width
(``groups``; the last chunk is padded with copies of the last member, whose results are
dropped). Each chunk is trained in blocks of ``block_intervals`` evaluation intervals, one
call of the compiled ``advance`` each (a checkpoint after every block). A ``Plan`` holds the
cut, the member table laid out for it, and turns a block's outputs into the metric buffers
and, at the end, the results Dataset.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from gdyn_jax.sweep import cache, groups, memory, packing
from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep import results as results_lib
from gdyn_jax.sweep.assembly import Program
from gdyn_jax.sweep.mesh import gather, put, sweep_mesh

__all__ = ["Plan", "block_intervals"]


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


@dataclasses.dataclass
class Plan:
    """The chunks × blocks of one sweep (``Plan.of``); ``compile`` makes it trainable.

    ``identity`` is what makes two sweeps the same (``results.identity``) and ``layout`` how
    this one is cut: a checkpoint is resumed only by a sweep of the same identity cut alike.
    ``compile`` (once the output directory is claimed) sets ``programs`` (``cache.Compiled``)
    and its ``advance``, ``data`` (replicated on the mesh), and ``hparams`` and ``keys`` (the
    member table padded to whole chunks).
    """

    program: Program
    mesh: jax.sharding.Mesh
    width: int
    chunk: int
    num_chunks: int
    intervals: int
    identity: dict[str, Any]
    layout: dict[str, int]
    state: Any = None  # the TrainState of the chunk being trained, its members in ``order``
    order: Any = None  # the chunk member (row) in each slot of ``state`` (``packing``)
    hp: Any = None  # the hyperparameters of ``state``'s members, on the mesh
    skip: Any = None  # (num_members,) bool: the members never trained
    repack: bool = True  # whether diverged members leave the groups between blocks

    @classmethod
    def of(
        cls,
        program: Program,
        chunk_size,
        devices,
        member_group,
        checkpoint_every,
        skip: Any = None,
        repack: bool = True,
    ) -> Plan:
        """The plan of an assembled ``program`` (see ``run_sweep`` for the options)."""
        config, grid = program.config, program.grid
        skipped = packing.skip_mask(skip, grid)
        if not isinstance(repack, bool):
            raise ValueError(f"repack: expected True or False, got {repack!r}")
        mesh = sweep_mesh(devices)
        devs = tuple(mesh.devices.flat)
        width = groups.default_width(devs)
        width = width if member_group is None else groups.check_width(member_group)
        num_intervals = config.steps // config.eval_every
        intervals = block_intervals(num_intervals, checkpoint_every, config.eval_every)
        chunk, num_chunks = groups.chunk_layout(grid.num_members, chunk_size, mesh.size, width)
        memory.check_host(config, chunk * num_chunks)  # before the task reads the data
        versions = results_lib.versions()
        identity = results_lib.identity(
            config.to_json(),
            grid.as_dict(),
            grid.seeds,
            width,
            devs[0].platform,
            versions,
            np.flatnonzero(skipped).tolist(),
        )
        layout = {
            "chunk": chunk,
            "num_chunks": num_chunks,
            "block_intervals": intervals,
            "num_blocks": num_intervals // intervals,
        }
        plan = cls(program, mesh, width, chunk, num_chunks, intervals, identity, layout)
        plan.skip, plan.repack = skipped, repack
        plan.check_memory()  # before anything is compiled
        return plan

    def check_memory(self) -> memory.Estimate:
        """Refuses, before anything is compiled, a sweep whose chunks would not fit in memory
        (``memory.check``: the figure it needs and the chunk size that fits)."""
        program = self.program
        return memory.check(
            program,
            self.chunk,
            self.chunk * self.num_chunks,
            len(program.task.metric_names),
            tuple(self.mesh.devices.flat),
            self.mesh.size * self.width,
        )

    @property
    def num_blocks(self) -> int:
        return self.layout["num_blocks"]

    @property
    def member(self) -> jax.sharding.NamedSharding:
        """The sharding of every member-axis input and output."""
        return jax.sharding.NamedSharding(self.mesh, jax.P("sweep"))

    def compile(self) -> None:
        """The compiled programs (data loaded, once per cache entry), the data replicated on
        the mesh and the member table padded to whole chunks."""
        self.programs = cache.compiled(
            self.program, self.intervals, tuple(self.mesh.devices.flat), self.width, self.repack
        )
        self.advance = self.programs.advance
        replicated = jax.sharding.NamedSharding(self.mesh, jax.P())
        self.data = jax.tree.map(lambda x: put(x, replicated), self.programs.data)
        total = self.chunk * self.num_chunks
        hparams, keys = self.program.members()
        self.hparams = {k: grid_lib.pad(v, total) for k, v in hparams.items()}
        self.keys = grid_lib.pad(keys, total)
        # rows never trained: the skipped ones and the padding of the last chunk
        self.dropped = np.concatenate([self.skip, np.ones(total - len(self.skip), bool)])

    def buffers(self, rows: int | None = None) -> dict[str, np.ndarray]:
        """NaN metrics (rows, evaluations) and ``diverged_at`` -1 (default: every member,
        padding included)."""
        total, evals = rows or self.chunk * self.num_chunks, self.program.config.num_evals
        names = self.programs.task.metric_names
        out = {k: np.full((total, evals), np.nan, np.float32) for k in names}
        out["diverged_at"] = np.full((total,), -1, np.int32)
        return out

    def chunk_inputs(self, c: int) -> tuple[dict[str, jax.Array], jax.Array]:
        """The hyperparameters and raw keys of chunk ``c``, placed on the mesh."""
        rows = slice(c * self.chunk, (c + 1) * self.chunk)
        hp = {k: put(v[rows], self.member) for k, v in self.hparams.items()}
        return hp, put(self.keys[rows], self.member)

    @functools.cached_property
    def _state_shapes(self) -> Any:
        hp, keys = self.chunk_inputs(0)
        return jax.eval_shape(self.programs.init, self.data, hp, keys)

    def state_shapes(self) -> Any:
        """The shapes and dtypes of a (full) chunk's ``TrainState`` (no computation)."""
        return self._state_shapes

    def blocks(self, start: tuple[int, int], leaves) -> Iterator[tuple]:
        """``(chunk, block, hparams, start_step)`` of every block from ``start``; before each
        chunk's first block, ``state`` is set to its initial state (``leaves``, the
        checkpointed state of chunk ``start[0]``, if given), its skipped members dead and its
        members arranged live first (``packing``); it is the caller's to advance."""
        for c in range(start[0], self.num_chunks):
            b0 = start[1] if leaves is not None and c == start[0] else 0
            rows = slice(c * self.chunk, (c + 1) * self.chunk)
            if b0:
                structure = jax.tree.structure(self.state_shapes())
                state = jax.tree.unflatten(structure, list(leaves))
                live = np.asarray(state.alive) & ~self.dropped[rows]
            else:
                live = ~self.dropped[rows]
            self.order = packing.arrangement(live, self.mesh.size, self.width)
            self.hp = {k: put(v[rows][self.order], self.member) for k, v in self.hparams.items()}
            if b0:
                self.state = packing.permuted(state, self.order, self.member)
            else:
                keys = put(self.keys[rows][self.order], self.member)
                state = self.programs.init(self.data, self.hp, keys)
                self.state = state._replace(alive=put(live[self.order], self.member))
            for b in range(b0, self.num_blocks):
                yield c, b, self.hp, np.int32(b * self.intervals * self.program.config.eval_every)

    def saved_state(self) -> Any:
        """The chunk's state in member order (host arrays), for the checkpoint."""
        inverse = np.argsort(self.order)
        return jax.tree.map(lambda x: gather(x)[inverse], self.state)

    def record(self, c: int, b: int, first, metrics, buffers) -> None:
        """Writes block ``b`` of chunk ``c`` (its outputs and the state's ``diverged_at``,
        gathered to the host) in ``buffers``; then re-arranges the members if that frees a
        group (``repack``)."""
        rows, names = c * self.chunk + self.order, self.programs.task.metric_names
        if b == 0:
            for k in names:
                buffers[k][rows, 0] = gather(first[k])
        cols = slice(1 + b * self.intervals, 1 + (b + 1) * self.intervals)
        for k in names:
            buffers[k][rows, cols] = gather(metrics[k])
        buffers["diverged_at"][rows] = gather(self.state.diverged_at)
        if self.repack and b + 1 < self.num_blocks:
            self._repack(c)

    def _repack(self, c: int) -> None:
        """Re-arranges chunk ``c``'s members live first, if that leaves fewer busy groups."""
        alive = gather(self.state.alive)  # in slot order
        live = np.zeros(self.chunk, bool)
        live[self.order] = alive
        order = packing.arrangement(live, self.mesh.size, self.width)
        if packing.busy_groups(live[order], self.width) < packing.busy_groups(alive, self.width):
            move = np.argsort(self.order)[order]  # new slot -> old slot
            self.state = packing.permuted(self.state, move, self.member)
            self.hp = {k: put(gather(v)[move], self.member) for k, v in self.hp.items()}
            self.order = order

    def progress(self, position: tuple[int, int]) -> dict[str, int]:
        """What ``run_sweep``'s callback receives after the block ending at ``position``."""
        c, b = position[0], position[1] - 1
        return {
            "chunk": c,
            "block": b,
            "num_chunks": self.num_chunks,
            "num_blocks": self.num_blocks,
            "step": (b + 1) * self.intervals * self.program.config.eval_every,
        }

    def dataset(self, buffers: Mapping[str, np.ndarray]):
        """The results Dataset of the (first ``num_members`` rows of the) buffers."""
        grid, config = self.program.grid, self.program.config
        num, names = grid.num_members, self.programs.task.metric_names
        return results_lib.to_dataset(
            {k: buffers[k][:num] for k in names},
            buffers["diverged_at"][:num],
            grid.as_dict(),
            grid.seeds,
            config.eval_steps,
            config.to_json(),
            self.width,
            self.identity["platform"],
            skipped=self.skip,
        )

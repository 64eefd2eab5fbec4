"""Several processes, one sweep: who owns the output directory, and what the others receive.

With ``out``, the sweep owns the directory while it runs (``outdir``: a lock, and a decision
to start, resume, return finished results or refuse), writes after every block the whole
``TrainState`` and the metrics so far as a checked checkpoint (``checkpoint``), and at the
end the results (``results``), all atomically. On several processes (``jax.distributed``,
see ``initialize``) process 0 alone reads and writes the directory and holds the lock; the
others receive its decisions and the checkpoint's arrays by broadcast, bit for bit, and an
error of process 0 is raised on every process (none is left waiting for the others).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gdyn_jax import extras
from gdyn_jax.sweep import checkpoint, outdir
from gdyn_jax.sweep import results as results_lib
from gdyn_jax.sweep.chunks import Plan
from gdyn_jax.sweep.mesh import gather

__all__ = ["Output", "initialize", "is_main_process"]

# The name under which the sweep has always logged what it finds in its directory.
_LOG = logging.getLogger("gdyn_jax.sweep.execute")

_ACTIONS = ("start", "resume", "finished")
_REFUSED = -1


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None):
    """``jax.distributed.initialize`` (``coordinator`` None: from the job scheduler); on CPU
    the processes exchange the gathered metrics and checkpoints through gloo collectives."""
    if jax.config.jax_cpu_collectives_implementation in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    except (RuntimeError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"coordinator: jax.distributed.initialize failed: {first}") from None


def is_main_process() -> bool:
    """Whether this is process 0, which speaks (and writes) for the group."""
    return jax.process_index() == 0


def _broadcast(tree: Any) -> Any:
    """Process 0's ``tree`` of host arrays on every process, bit for bit (sent as bytes)."""
    if jax.process_count() == 1:
        return tree
    leaves, structure = jax.tree.flatten(tree)
    raw = [np.frombuffer(np.ascontiguousarray(x).tobytes(), np.uint8) for x in leaves]
    raw = extras.multihost_utils.broadcast_one_to_all(raw)
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


class Output:
    """The sweep's directory: owned, read and written by process 0 (see the module doc)."""

    def __init__(self, out: Path | None, identity: dict, layout: dict) -> None:
        self.out, self.identity, self.layout = out, identity, layout
        self.writer = jax.process_index() == 0
        self.lock: outdir.Lock | None = None
        self.decision = outdir.Decision("start")
        self.action, self.position = "start", (0, 0)

    def say(self, text: str) -> None:
        """What the sweep found in ``out``, logged (INFO) by process 0."""
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

    def start(self, plan: Plan) -> tuple[tuple[int, int], list | None, dict[str, np.ndarray]]:
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
        config = plan.program.config
        step = b * plan.intervals * config.eval_every
        self.say(
            f"resuming {self.out} at chunk {c + 1} of {plan.num_chunks}, step {step} of "
            f"{config.steps}"
        )
        return self.position, leaves, buffers

    def finished(self, plan: Plan):
        """This sweep's saved results, on every process (process 0 read them)."""
        if jax.process_count() == 1:
            return self.decision.results
        plan.compile()  # the others need the metric names: the task
        buffers = plan.buffers(plan.program.grid.num_members)
        if self.writer:
            ds = self.decision.results
            buffers = {k: ds[k].values.reshape(v.shape) for k, v in buffers.items()}
        buffers = _broadcast(buffers)
        return self.decision.results if self.writer else plan.dataset(buffers)

    def save(self, position: tuple[int, int], plan: Plan, buffers: Mapping[str, np.ndarray]):
        """The checkpoint after a block (every process gathers the chunk's full state,
        ``plan.saved_state``; process 0 writes)."""
        if self.out is None:
            return
        leaves = [gather(x) for x in jax.tree.leaves(plan.saved_state())]
        if self.writer:
            file = checkpoint.path(self.out)
            checkpoint.write(file, self.identity, self.layout, position, leaves, buffers)

    def finish(self, ds):
        """Saves the results ``ds`` (then the checkpoint is no longer needed); returns ``ds``."""
        if self.out is not None and self.writer:
            results_lib.save_results(ds, self.out)
            outdir.remove_checkpoint(self.out)
        return ds

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

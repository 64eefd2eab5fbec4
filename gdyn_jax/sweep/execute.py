"""Running a sweep: ``run_sweep``, the assembled program trained chunk by chunk, block by block.

``run_sweep`` assembles the sweep once (``assembly``: the config and grid validated, the
optimizer resolved), cuts it into chunks and blocks (``chunks``), claims its output directory
(``hosts``, ``outdir``), then trains every block with the compiled ``advance`` (``cache``:
grouped, sharded and jitted from the program's pure ``advance``), checkpointing after each.

Every member is computed in a vmapped group of one fixed width (``groups``), so its numbers
do not depend on the chunk size, the device count or the process count, bit for bit. The
member axis of every input is sharded over a ``'sweep'`` mesh axis and the data replicated
(``mesh``), so XLA partitions the programs across devices (and processes) with no
collectives. Resuming feeds the same compiled programs the same inputs, so a resumed sweep
equals an uninterrupted one bit for bit.

The directory ``out`` (nothing is written without it) holds ``results.npz``, ``checkpoint/``
while the sweep runs, and ``sweep.lock``. A directory holding results or a checkpoint of
another sweep is refused (unless ``overwrite``); one holding this sweep's checkpoint is
resumed, and this sweep's results are returned (``resume``: None does either if it can,
True insists on it, False refuses it). What the sweep finds there (a resumed checkpoint, a
stale lock taken over) is logged at INFO level by the ``gdyn_jax.sweep.execute`` logger.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gdyn_jax import extras
from gdyn_jax._deprecated import forwarder
from gdyn_jax.sweep import hosts
from gdyn_jax.sweep.assembly import assemble
from gdyn_jax.sweep.chunks import Plan
from gdyn_jax.sweep.config import SweepConfig
from gdyn_jax.sweep.grid import Grid

__all__ = ["run_sweep"]

# Names that moved out of this module, kept one release with a DeprecationWarning.
_MOVED = {
    "Compiled": "gdyn_jax.sweep.cache",
    "compiled": "gdyn_jax.sweep.cache",
    "block_intervals": "gdyn_jax.sweep.chunks",
    "sweep_mesh": "gdyn_jax.sweep.mesh",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return forwarder(__name__, _MOVED[name])(name)


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
      config: the static settings (``SweepConfig``).
      grid: hyperparameter name -> values (their product is swept), or a ``Grid``.
      seeds: seeds per grid point (member seeds 0..seeds-1); default 1, or the ``Grid``'s.
      out: the sweep's directory (see the module doc); None writes nothing.
      chunk_size: members trained at once (bounds memory; default all), rounded up to a
        multiple of the device count times ``member_group``.
      devices: number of devices to shard members over (default: all of ``jax.devices()``).
      member_group: members computed side by side on a device (default 4 on CPU, 256 on
        accelerators); a member's numbers depend on it alone, not on the chunking.
      resume: None resumes (or returns) this sweep's work in ``out`` if there is some; True
        requires some, False none.
      overwrite: delete the results and checkpoint in ``out`` and start afresh.
      progress: show a tqdm progress bar over (chunk, block) pairs.
      checkpoint_every: steps per block, a multiple of ``eval_every`` dividing ``steps``
        (default: about a tenth of the run).
      callback: called after each block with ``chunk, block, num_chunks, num_blocks, step``.

    Returns:
      ``xarray.Dataset``: ``train_loss``, ``test_loss`` (``test_accuracy``, ``grad_norm``,
      ``sharpness`` where they apply) over ``(*grid names, seed, step)``, ``diverged_at`` over
      ``(*grid names, seed)``; ``attrs``: config record, grid, seeds, member group, versions.
    """
    program = assemble(config, grid, seeds)
    _check_options(chunk_size, out, resume, overwrite)
    plan = Plan.of(program, chunk_size, devices, member_group, checkpoint_every)
    output = hosts.Output(None if out is None else Path(out), plan.identity, plan.layout)
    try:
        output.claim(resume, overwrite)  # before anything is loaded or compiled
        if output.action == "finished":
            return output.finished(plan)
        plan.compile()  # loads the data, once
        start, leaves, buffers = output.start(plan)
        with _reporter(plan, start, progress, callback) as report:
            for c, b, hparams, step in plan.blocks(start, leaves):
                plan.state, first, metrics = plan.advance(plan.data, hparams, plan.state, step)
                plan.record(c, b, first, metrics, buffers)
                output.save((c, b + 1), plan.state, buffers)
                report((c, b + 1))
        return output.finish(plan.dataset(buffers))
    finally:
        output.close()


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


@contextlib.contextmanager
def _reporter(
    plan: Plan, start: tuple[int, int], progress: bool, callback: Callable | None
) -> Iterator[Callable[[tuple[int, int]], None]]:
    """``report(position)`` after each block: the progress bar (process 0) and ``callback``."""
    bar = extras.tqdm.tqdm(
        total=plan.num_chunks * plan.num_blocks,
        initial=start[0] * plan.num_blocks + start[1],
        unit="block",
        desc=f"sweep {plan.program.grid.num_members} members",
        disable=not (progress and hosts.is_main_process()),
    )

    def report(position: tuple[int, int]) -> None:
        bar.update(1)
        if callback is not None:
            callback(plan.progress(position))

    try:
        yield report
    finally:
        bar.close()

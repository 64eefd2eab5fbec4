"""Running a sweep: ``run_sweep``, the assembled program trained chunk by chunk, block by block.

``run_sweep`` assembles the sweep once (``assembly``: the config and grid validated, the
optimizer resolved), cuts it into chunks and blocks (``chunks``), claims its output directory
(``hosts``, ``outdir``), then trains every block with the compiled ``advance`` (``cache``:
grouped, sharded and jitted from the program's pure ``advance``), checkpointing after each.

Every member is computed in a vmapped group of one fixed width (``groups``), so its numbers
do not depend on the chunk size, the device count or the process count, bit for bit; nor on
the members beside it, so skipped members are never trained and diverged ones are gathered
into groups that are not computed, between blocks (``packing``). The
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

Progress: the bar (``progress=True``, process 0) says ``compiling ...`` until the first block's
program is compiled (``jax.jit`` compiles when first called and returns once the computation
is dispatched), then how long that took; its elapsed time, rate and estimate count the blocks
after it, never the compilation. ``observe(listener)`` lets an outer caller (``gdyn
reproduce``) follow every sweep run inside it, as the bar does.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gdyn_jax import extras, files
from gdyn_jax._deprecated import forwarder
from gdyn_jax.sweep import hosts
from gdyn_jax.sweep.assembly import assemble
from gdyn_jax.sweep.chunks import Plan
from gdyn_jax.sweep.config import SweepConfig
from gdyn_jax.sweep.grid import Grid

__all__ = ["observe", "run_sweep"]

#: The listeners of ``observe`` blocks around the current call (innermost last).
_LISTENERS: contextvars.ContextVar[tuple[Callable[[dict[str, Any]], None], ...]] = (
    contextvars.ContextVar("gdyn_sweep_listeners", default=())
)

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
    skip: Any = None,
    repack: bool = True,
):
    """Trains every (grid point, seed) pair in one jit + vmap program; returns a Dataset.

    Args:
      config: the static settings (``SweepConfig``).
      grid: hyperparameter name -> values (their product is swept), or a ``Grid``.
      seeds: seeds per grid point (member seeds 0..seeds-1); default 1, or the ``Grid``'s.
      out: the sweep's directory (see the module doc); None writes nothing.
      chunk_size: members trained at once (default all; a multiple of devices × member_group).
      devices: number of devices to shard members over (default: all of ``jax.devices()``).
      member_group: members side by side per device (a member's numbers depend on it alone).
      resume: None resumes (or returns) this sweep's work in ``out``; True needs it, False none.
      overwrite: delete the results and checkpoint in ``out`` and start afresh.
      progress: show a tqdm progress bar over (chunk, block) pairs (see the module doc).
      checkpoint_every: steps per block dividing ``steps`` (default: about a tenth of them).
      callback: called after each block with ``chunk, block, num_chunks, num_blocks, step``.
      skip: members never trained, a bool array ``(grid points, seeds)`` or ``(grid points,)``
        in the grid's member order (``packing.skip_mask``); their metrics are NaN.
      repack: gather the dead in groups that are not computed (False: compute all; same numbers).

    Returns:
      ``xarray.Dataset``: the metrics over ``(*grid names, seed, step)``, ``diverged_at`` and
      ``skipped`` over ``(*grid names, seed)``; ``attrs``: config, grid, seeds, group, versions.
    """
    folder = _check_options(chunk_size, out, resume, overwrite)  # before the task check compiles
    program = assemble(config, grid, seeds)
    plan = Plan.of(program, chunk_size, devices, member_group, checkpoint_every, skip, repack)
    output = hosts.Output(folder, plan.identity, plan.layout)
    try:
        output.claim(resume, overwrite)  # before anything is loaded or compiled
        if output.action == "finished":
            return output.finished(plan)
        plan.compile()  # loads the data, once
        start, leaves, buffers = output.start(plan)
        with _Reporter(plan, start, progress, callback) as report:
            for c, b, hparams, step in plan.blocks(start, leaves):
                plan.state, first, metrics = plan.advance(plan.data, hparams, plan.state, step)
                report.dispatched()  # the first call returns once compiled (and dispatched)
                plan.record(c, b, first, metrics, buffers)
                output.save((c, b + 1), plan, buffers)
                report((c, b + 1))
        return output.finish(plan.dataset(buffers))
    finally:
        output.close()


def _check_options(chunk_size: Any, out: Any, resume: Any, overwrite: Any) -> Path | None:
    """The options checked in one line each; ``out`` as a folder (an empty name refused)."""
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
    return None if out is None else files.check_output_directory(out)  # creates nothing


@contextlib.contextmanager
def observe(listener: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Within the block, every ``run_sweep`` (on this thread) reports to ``listener``.

    ``listener(info)`` is called with ``info['event']`` ``'compiling'`` (before the first
    block's program is compiled), ``'compiled'`` (with ``seconds``, the compilation's wall
    time), then ``'block'`` after every block, with ``members``, ``steps`` (of the run),
    ``chunk``, ``block``, ``num_chunks``, ``num_blocks`` and ``step`` (as ``callback``), and
    ``fraction``, the share of the sweep's blocks done. It sees the sweeps that run without a
    progress bar too (``progress=False``), e.g. inside an experiment.
    """
    token = _LISTENERS.set((*_LISTENERS.get(), listener))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


class _Reporter:
    """The progress bar (process 0), ``callback`` and the ``observe`` listeners of one sweep.

    ``compiling ...`` is shown from the start until the first ``advance`` call returns
    (``dispatched``): then the bar's clock is moved past the compilation, so that its rate and
    estimate are those of the blocks; ``report(position)`` follows every block.
    """

    def __init__(self, plan: Plan, start: tuple[int, int], progress: bool, callback) -> None:
        self.plan, self.callback = plan, callback
        self.listeners = _LISTENERS.get()
        total = plan.num_chunks * plan.num_blocks
        self.done = start[0] * plan.num_blocks + start[1]
        self.bar = extras.tqdm.tqdm(
            total=total,
            initial=self.done,
            unit="block",
            desc=f"sweep {plan.program.grid.num_members} members",
            disable=not (progress and hosts.is_main_process()),
        )
        self.compiling_since: float | None = None

    def __enter__(self) -> _Reporter:
        self.compiling_since = time.perf_counter()
        self.bar.set_postfix_str("compiling ...")
        self._tell("compiling")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def _tell(self, event: str, **info: Any) -> None:
        if not self.listeners:
            return
        plan = self.plan
        total = plan.num_chunks * plan.num_blocks
        record = {
            "event": event,
            "members": plan.program.grid.num_members,
            "steps": plan.program.config.steps,
            "fraction": self.done / total,
            **info,
        }
        for listener in self.listeners:
            listener(record)

    def dispatched(self) -> None:
        """After an ``advance`` call: the first one has compiled its program."""
        if self.compiling_since is None:
            return
        seconds = time.perf_counter() - self.compiling_since
        self.compiling_since = None
        self.bar.unpause()  # the clock restarts now: elapsed and rate exclude the compilation
        self.bar.set_postfix_str(f"compiled in {seconds:.1f} s")
        self._tell("compiled", seconds=seconds)

    def __call__(self, position: tuple[int, int]) -> None:
        self.done += 1
        self.bar.update(1)
        info = self.plan.progress(position)
        if self.callback is not None:
            self.callback(info)
        self._tell("block", **info)

r"""What a sweep will hold in memory, estimated before its programs are compiled, and the
refusal of one that would not fit.

A chunk of :math:`C` members keeps every member's ``TrainState`` (parameters, optimizer
state, data order, tracked eigenvectors: :math:`s` bytes, read from ``jax.eval_shape`` of
the member's init, nothing computed) on its devices. The compiled ``advance`` takes the
state donated, but its member groups are mapped (``lax.map``) and the stacked output of a
map is a buffer of its own, so a block holds the state at least twice: :math:`2 C s`. The
host keeps the metric buffers (:math:`M E k` float32 for :math:`M` members, :math:`E`
evaluations, :math:`k` metrics):

.. math::

    \text{need} \ge 2 C s + 4 M E k

on top of what the process holds already (its data included). It is a lower bound: XLA's
temporaries beyond the mapped output, the host's copy of a chunk's state while it is
checkpointed, the compiler's own working memory (a few hundred MB on CPU, once) and one
step's activations per group in flight are left out, so a sweep is refused only when it
certainly does not fit. ``BENCHMARKS.md`` ("Memory") compares it with
the measured peak resident memory at 64 to 4,096 members (about 2.3 copies of the state).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from gdyn_jax import machine

__all__ = [
    "MIN_METRICS",
    "Estimate",
    "available_bytes",
    "check",
    "check_host",
    "estimate",
    "host_bytes",
    "state_bytes",
]

_STATE_COPIES = 2  # the donated input and the mapped output of one block
#: the metrics every sweep keeps (train and test loss): the bound used before the task is built
MIN_METRICS = 2


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes a sweep adds to its process, at least: ``device`` (a chunk's state, twice) and
    ``host`` (the metric buffers); ``per_member`` is one member's state."""

    per_member: int
    chunk: int
    device: int
    host: int

    @property
    def total(self) -> int:
        return self.device + self.host


def state_bytes(program) -> int:
    """Bytes of one member's ``TrainState`` (``jax.eval_shape`` of its init: no computation)."""
    grid = program.grid  # the first member's values and a key: the shapes are every member's
    first = zip(grid.names, grid.values, strict=True)
    hp = {name: np.float32(values[0]) for name, values in first}
    key = jax.random.key(0)
    shapes = jax.eval_shape(program.init, program.data, hp, key)
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))


def estimate(program, chunk: int, members: int, num_metrics: int) -> Estimate:
    """The memory a sweep of ``members`` trained ``chunk`` at a time adds, at least (see the
    module doc)."""
    s = state_bytes(program)
    host = host_bytes(program.config, members, num_metrics)
    return Estimate(per_member=s, chunk=chunk, device=_STATE_COPIES * chunk * s, host=host)


def host_bytes(config, members: int, num_metrics: int = MIN_METRICS) -> int:
    """The host's metric buffers of a sweep ``config``: float32 per member, evaluation and
    metric (read from the config alone, no data)."""
    return 4 * members * config.num_evals * num_metrics


def check_host(config, members: int, num_metrics: int = MIN_METRICS, available=None) -> None:
    """Refuses (``ValueError`` naming ``eval_every``) metric buffers that alone exceed the
    host's free memory; by default with the ``MIN_METRICS`` every sweep keeps, so it needs no
    data and can run before anything is read (``Plan.of``)."""
    host = host_bytes(config, members, num_metrics)
    available = available_bytes() if available is None else available
    if available is not None and host >= available:
        raise ValueError(
            f"eval_every: {config.num_evals} evaluations of {members} members need at least "
            f"{host / 1e9:.1f} GB of host memory for the metrics alone, more than the "
            f"{available / 1e9:.1f} GB free on this machine; evaluate less often or sweep "
            "fewer members"
        )


def available_bytes() -> int | None:
    """Memory this process may still take (``gdyn_jax.machine.available_memory``)."""
    return machine.available_memory()


def _device_limit(devices) -> int | None:
    """The smallest per-device memory limit an accelerator reports (None on CPU)."""
    limits = []
    for d in devices:
        if d.platform == "cpu":
            return None
        stats = d.memory_stats() or {}
        if "bytes_limit" in stats:
            limits.append(int(stats["bytes_limit"]))
    return min(limits) if limits else None


def check(
    program,
    chunk: int,
    members: int,
    num_metrics: int,
    devices,
    step: int,
    available: int | None = None,
) -> Estimate:
    """Refuses (``ValueError`` naming ``eval_every``) a sweep whose metric buffers alone exceed
    the host's free memory (``check_host`` with the task's ``num_metrics``), and (naming
    ``chunk_size``) one whose lower-bound estimate exceeds the memory at hand, with the figure
    it needs and the largest chunk (a multiple of ``step``, devices × group width) whose state
    fits; returns the estimate."""
    gb = 1e9
    if available is None:
        available = available_bytes()
    on_device = _device_limit(devices)
    check_host(program.config, members, num_metrics, available)  # on the host, any devices
    est = estimate(program, chunk, members, num_metrics)
    if on_device is not None:  # accelerators: the state lives in device memory
        need, have, per = est.device / len(devices), on_device, _STATE_COPIES * est.per_member
        where = f"{on_device / gb:.1f} GB per device"
        room = len(devices) * on_device
    else:
        need, have, per = est.total, available, _STATE_COPIES * est.per_member
        where = f"{(available or 0) / gb:.1f} GB free on this machine"
        room = available
    if have is None or need <= have:
        return est
    fit = max(0, (room - (0 if on_device else est.host)) // per // step * step)
    hint = f"pass chunk_size <= {fit} (the state alone)" if fit else "use a smaller model"
    raise ValueError(
        f"chunk_size: {chunk} members at once need at least {need / gb:.1f} GB "
        f"({est.per_member / 1e3:.0f} kB of state per member, {_STATE_COPIES} copies, "
        f"+ {est.host / gb:.2f} GB on the host), more than the {where}; {hint}"
    )

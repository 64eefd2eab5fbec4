"""The compiled programs of a sweep, ``init`` and ``advance``, cached for repeated sweeps.

``compiled(program, intervals, devices, width)`` turns an assembled ``Program``'s pure
per-member ``init`` and ``advance`` into the two programs ``run_sweep`` calls: each vmapped
over members, computed in groups of ``width`` per device (``groups``), mapped over the
``'sweep'`` mesh axis with ``shard_map`` (every device runs the same program on its own
members) and jitted (``advance`` donates the state it is given, and skips a group whose
members are all dead: ``packing``). They are cached, with the
program's task and data, by the config's record, the identity of the objects in it, the
block size, the devices, the group width and the kernel choice (``cpu_speedups``), so a
sweep run again with the same config neither loads its data nor compiles again.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax

from gdyn_jax.sweep import cpu_speedups, groups, packing
from gdyn_jax.sweep.assembly import Program, assemble
from gdyn_jax.sweep.config import SweepConfig
from gdyn_jax.sweep.data import DeviceData
from gdyn_jax.sweep.mesh import mesh_of
from gdyn_jax.sweep.train import Task

__all__ = ["Compiled", "compiled"]


@dataclasses.dataclass(frozen=True, eq=False)
class Compiled:
    """A config's task, its data (on the host's default device) and its two programs.

    ``init(data, hparams, key_data) -> TrainState`` and
    ``advance(data, hparams, state, start_step) -> (state, first, metrics)``, both over a
    member axis sharded over ``'sweep'``; ``config`` is kept so that the objects it holds (and
    so the cache key's ids) stay alive.
    """

    config: SweepConfig
    task: Task
    data: DeviceData
    init: Callable
    advance: Callable


_CACHE: collections.OrderedDict[tuple, Compiled] = collections.OrderedDict()
_CACHE_SIZE = 8


def _objects(config: SweepConfig) -> tuple[int, ...]:
    """Ids of the non-name objects of a config (two local functions may share a record)."""
    fields = (config.dataset, config.model, config.optimizer, config.loss)
    return tuple(id(f) for f in fields if not isinstance(f, str))


def _init_from_key_data(init: Callable, data, hparams, key_data):
    """``init`` with the member's key given as raw key data (how keys are placed)."""
    return init(data, hparams, jax.random.wrap_key_data(key_data))


def _per_device(
    fn: Callable, in_axes: tuple, mesh: jax.sharding.Mesh, width: int, skip=None
) -> Callable:
    """``fn`` of one member, for every member of every device: vmapped, in groups of ``width``
    (each through ``skip``, if given), under ``shard_map`` (the same program on every device,
    whatever their number)."""
    local = groups.grouped(jax.vmap(fn, in_axes=in_axes), width, skip)
    specs = tuple(jax.P() if a is None else jax.P("sweep") for a in in_axes)
    return jax.shard_map(
        local, mesh=mesh, in_specs=specs, out_specs=jax.P("sweep"), check_vma=False
    )


def compiled(
    program: Program | SweepConfig,
    intervals: int,
    devices: Sequence[jax.Device],
    width: int | None = None,
    skip_dead: bool = True,
) -> Compiled:
    """The programs of ``program`` (or of a config, assembled here) with blocks of
    ``intervals`` evaluation intervals, members in groups of ``width`` per device (default:
    ``groups.default_width(devices)``), groups of dead members skipped (``skip_dead``; False
    computes every group), cached (see the module doc)."""
    if isinstance(program, SweepConfig):
        program = assemble(program)
    width = groups.default_width(devices) if width is None else groups.check_width(width)
    config = program.config
    key = (config.to_json(), _objects(config), intervals, tuple(devices), width, program.fast)
    key += (skip_dead,)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    mesh = mesh_of(devices)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    init = functools.partial(_init_from_key_data, program.init)
    advance = functools.partial(program.advance, num_intervals=intervals)
    out = Compiled(
        config,
        program.task,
        program.data,
        jax.jit(
            _per_device(init, (None, 0, 0), mesh, width),
            out_shardings=member,
            compiler_options=cpu_speedups.init_compiler_options(devices, program.fast),
        ),
        jax.jit(
            _per_device(
                advance,
                (None, 0, 0, None),
                mesh,
                width,
                packing.SKIP_DEAD if skip_dead else None,
            ),
            out_shardings=member,
            donate_argnums=(2,),
        ),
    )
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out

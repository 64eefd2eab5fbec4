"""The devices of a sweep: a 1-D ``'sweep'`` mesh, and host arrays placed on it and back.

The member axis of every input is placed with ``NamedSharding(mesh, P('sweep'))`` and the
data is replicated (``P()``), so XLA partitions the programs across devices (and processes)
with no collectives. ``put`` and ``gather`` work the same on one process and on several.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from gdyn_jax import extras

__all__ = ["gather", "mesh_of", "put", "sweep_mesh"]


def mesh_of(devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
    """The 1-D mesh with axis ``'sweep'`` over ``devices``, its axis type ``Auto``."""
    return jax.make_mesh(
        (len(devices),),
        ("sweep",),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=list(devices),
    )


def sweep_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``'sweep'`` over the first ``devices`` devices (default: all).

    The axis type is ``Auto``, so ``NamedSharding``\\ s on it work without ``jax.set_mesh``
    (with jax 0.10's default ``Explicit`` axes they would need it).
    """
    available = jax.devices()
    n = len(available) if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(available):
        raise ValueError(f"devices: expected an integer in [1, {len(available)}], got {devices!r}")
    return mesh_of(available[:n])


def put(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Places a host array (the same on every process) with ``sharding``; multi-host safe."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def gather(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-host) array on this host."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    return np.asarray(extras.multihost_utils.process_allgather(x, tiled=True))

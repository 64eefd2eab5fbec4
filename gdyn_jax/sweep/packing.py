r"""Members in and out of the compiled groups: the skip mask, and the dead re-packed between blocks.

A chunk's members are trained in groups of one fixed width (``groups``), and a member's numbers
do not depend on which members share its group or where the group sits, bit for bit. So the
members that need no computing can be gathered into groups of their own, which are then not
computed at all:

- **skipped** members (``run_sweep(..., skip=mask)``, e.g. the points a pre-flight predicts to
  diverge) are never trained: they start dead (``alive`` False), their metrics are NaN,
  ``diverged_at`` -1, and the results' ``skipped`` variable marks them; so does the padding
  that rounds the last chunk up;
- **diverged** members (``diverged_at`` set) are frozen and report NaN from their divergence
  on.

The compiled block runs a group only if one of its members is alive (a ``lax.cond`` per group,
``SKIP_DEAD``); between blocks the chunk's members are re-arranged (``arrangement``) so
that the live ones fill the first groups of every device, balanced over the devices, and the
dead ones the rest. The arrangement is a permutation of the chunk's members, so the program's
shapes never change and nothing compiles again; it moves the state through the host
(gathered, permuted, placed on the mesh again), only when it frees a group.

The checkpoint keeps the chunk's state in member order (un-permuted), so a resumed sweep
arranges the same live members and goes on bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.sweep.grid import Grid
from gdyn_jax.sweep.mesh import gather, put

__all__ = ["SKIP_DEAD", "arrangement", "busy_groups", "permuted", "skip_mask"]


def skip_mask(skip: Any, grid: Grid) -> np.ndarray:
    """The flat ``(num_members,)`` mask of ``skip``: a boolean array of shape ``(P, seeds)``
    or ``(P,)`` (broadcast over seeds), ``P`` the number of grid points in the grid's order
    (``itertools.product`` of the values, the last name fastest), or the same unflattened
    (``grid.shape`` or ``grid.shape[:-1]``); None skips nothing."""
    num, seeds = grid.num_members, grid.seeds
    if skip is None:
        return np.zeros(num, bool)
    mask = np.asarray(skip)
    points = num // seeds
    if mask.dtype != np.bool_:
        raise ValueError(f"skip: expected a boolean array, got dtype {mask.dtype}")
    if mask.shape in ((points, seeds), grid.shape):
        return mask.reshape(num).copy()
    if mask.shape in ((points,), grid.shape[:-1]):
        return np.repeat(mask.reshape(points), seeds)
    raise ValueError(
        f"skip: expected a boolean array of shape ({points}, {seeds}) (grid points, seeds) or "
        f"({points},), got shape {mask.shape}"
    )


def arrangement(live: np.ndarray, devices: int, width: int) -> np.ndarray:
    """A permutation ``order`` of a chunk's members (slot ``i`` holds member ``order[i]``):
    the ``live`` ones (a bool mask, in member order) fill groups round-robin over the devices
    (device 0's first group, device 1's first, ..., then the second groups), the others
    follow in member order."""
    size = len(live)
    per_device = size // devices
    # the slots in filling order: group j of device d is slots d * per_device + j * width + w
    groups = np.arange(size).reshape(devices, per_device // width, width)
    fill = groups.transpose(1, 0, 2).reshape(size)
    order = np.empty(size, np.int64)
    order[fill] = np.concatenate([np.flatnonzero(live), np.flatnonzero(~live)])
    return order


def busy_groups(live: np.ndarray, width: int) -> int:
    """Groups holding at least one live member (``live`` in slot order)."""
    return int(live.reshape(-1, width).any(axis=1).sum())


def permuted(state: Any, order: np.ndarray, sharding: jax.sharding.Sharding) -> Any:
    """The members of ``state`` (device or host arrays) taken in ``order``, on the mesh."""
    return jax.tree.map(lambda x: put(gather(x)[order], sharding), state)


def _any_alive(state) -> jax.Array:
    return jnp.any(state.alive)


def _idle(advance: Callable) -> Callable:
    """What a group of dead members gives instead of ``advance``'s outputs: its state as it
    is, and NaN metrics."""

    def idle(data, hparams, state, *rest):
        _, *metrics = jax.eval_shape(advance, data, hparams, state, *rest)
        nan = jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), metrics)
        return (state, *nan)

    return idle


#: ``groups.grouped``'s ``skip`` for ``advance``: a group runs only if a member is alive.
SKIP_DEAD = (_any_alive, _idle)

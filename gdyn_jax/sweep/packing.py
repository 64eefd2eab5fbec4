r"""Members in and out of the compiled groups: the skip mask, and the dead dropped between blocks.

A chunk's members are trained in groups of one fixed width (``groups``), and a member's numbers
do not depend on which members share its group or how many groups there are, bit for bit. So
the members that no longer need computing can leave:

- **skipped** members (``run_sweep(..., skip=mask)``, e.g. the points a pre-flight predicts to
  diverge) are never trained: their metrics stay NaN, ``diverged_at`` -1, and the results'
  ``skipped`` variable marks them; the padding that rounds a chunk up is never trained either;
- **diverged** members (``diverged_at`` set) are frozen and report NaN from their divergence
  on; after every block they leave, and the live members are re-packed into fewer groups.

A chunk holds :math:`D K W` members (:math:`D` devices, :math:`K` groups of :math:`W` per
device). Its :math:`n` live members are packed into :math:`D K' W` slots, :math:`K'` the
smallest power of two with :math:`D K' W \ge n` (at most :math:`K`), the free slots filled
with copies of a live member (their results dropped); the groups are re-packed only when
:math:`K'` falls, so a chunk compiles at most :math:`1 + \log_2 K` programs of ``advance``
(``jax.jit`` keeps each, and the next chunk reuses them). The state moves through the host
(gathered, indexed, placed on the mesh again), one transfer per re-packing.

The checkpoint keeps the chunk's state at its full size: the live members at their rows, the
others zero (``alive`` False), so a resumed sweep packs the same live members and goes on bit
for bit.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from gdyn_jax.sweep.grid import Grid
from gdyn_jax.sweep.mesh import gather, put

__all__ = ["from_host", "packed_size", "scatter", "skip_mask", "take"]


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


def packed_size(live: int, unit: int, full: int) -> int:
    """Slots for ``live`` members: ``unit`` (devices × width) times the smallest power of two
    that holds them, at most ``full``; 0 for none."""
    if live == 0:
        return 0
    groups = math.ceil(live / unit)
    return min(unit * (1 << (groups - 1).bit_length()), full)


def slots(live: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(source positions, rows) of ``size`` slots for the ``live`` rows: each live row once,
    then copies of the first (row -1: results dropped)."""
    extra = size - len(live)
    source = np.concatenate([live, np.full(extra, live[0], live.dtype)])
    return source, np.concatenate([live, np.full(extra, -1, live.dtype)])


def take(state: Any, positions: np.ndarray, sharding: jax.sharding.Sharding) -> Any:
    """The members of a (device) ``state`` at ``positions``, placed with ``sharding``."""
    return jax.tree.map(lambda x: put(gather(x)[positions], sharding), state)


def from_host(state: Any, positions: np.ndarray, sharding: jax.sharding.Sharding) -> Any:
    """The members of a host ``state`` (numpy leaves) at ``positions``, placed on the mesh."""
    return jax.tree.map(lambda x: put(np.asarray(x)[positions], sharding), state)


def scatter(specs: Any, state: Any | None, rows: np.ndarray) -> Any:
    """A full chunk's state (numpy, shapes ``specs``): the packed ``state``'s members at their
    ``rows`` (row -1 left out), every other row zero (``alive`` False)."""
    real = rows >= 0

    def one(spec, x):
        full = np.zeros(spec.shape, spec.dtype)
        if x is not None:
            full[rows[real]] = gather(x)[real]
        return full

    if state is None:
        return jax.tree.map(lambda s: one(s, None), specs)
    return jax.tree.map(one, specs, state)

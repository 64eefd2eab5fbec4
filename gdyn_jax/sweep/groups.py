r"""Member groups: every member is computed in a vmapped group of one fixed width.

XLA compiles an operation batched over :math:`W` members differently for different
:math:`W` (on CPU the member-batched matrix products and reductions are tiled and
vectorised by width), so the same (hyperparameters, seed) trained beside 3 other members and
beside 9 differs in the last bits from step 0, and chaotically after that. The sweep
therefore always computes members in groups of one fixed width :math:`W` (``width``): a
chunk of :math:`D K W` members on :math:`D` devices gives each device :math:`K W` members
(``shard_map``: every device runs the same program on its own members, which XLA's
partitioner would otherwise rewrite with the device count), which it walks through
:math:`W` at a time with a sequential ``lax.map``; chunks are padded with inert members
(copies of the last one, whose results are dropped) to a multiple of :math:`D W`. A member's
program is then the same whatever the chunk size, the number of devices or of processes, and
where it sits in its group (XLA applies the same instructions to every member of a batched
operation), so on CPU its numbers are bit for bit the same: ``tests/multidevice`` checks
chunks of 1, 3, 4 and 10 members on 1 and 4 devices, ``tests/test_multiprocess.py`` 1 and 2
processes. (The training program helps: it divides by no scalar shared by all members, a
division XLA turns into a product with the reciprocal in some programs and not in others.)

The padding members are dead from the start, and a group whose members are all dead is not
computed (``packing``), but a group with one live member costs :math:`W` members. On CPU the
width hardly matters to a large sweep (groups of 1 to 16 members ran 256 members at the same
rate within the noise of a shared 2-core machine; ``benchmarks/member_groups.py``,
``BENCHMARKS.md``) while a small one pays up to :math:`W` times its work (2 full-batch
members of the edge-of-stability network on 2 devices: 4 times as long in groups of 4 as in
groups of 1), so the default there is 1; on accelerators, which want wide batches, it is 256
(not measured here).
The width is recorded in the results (``attrs['member_group']``) and is part of a sweep's
identity: a resumed sweep must use the same one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax

# Members per group and device, by platform (see the module docstring).
DEFAULT_WIDTH = {"cpu": 1}
ACCELERATOR_WIDTH = 256


def default_width(devices: Sequence[jax.Device]) -> int:
    """The default group width for ``devices``: 1 on CPU, 256 on accelerators."""
    platforms = {d.platform for d in devices}
    return min(DEFAULT_WIDTH.get(p, ACCELERATOR_WIDTH) for p in platforms)


def check_width(width: object) -> int:
    """``width`` if it is an integer >= 1; a one-line ``ValueError`` naming it else."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"member_group: expected an integer >= 1, got {width!r}")
    return width


def chunk_layout(
    num_members: int, chunk_size: int | None, num_devices: int, width: int
) -> tuple[int, int]:
    """(members per chunk, number of chunks): chunks of ``chunk_size`` members (default: all
    at once) rounded up to a multiple of ``num_devices * width``, covering ``num_members``."""
    step = num_devices * width
    chunk = num_members if chunk_size is None else min(chunk_size, num_members)
    chunk = math.ceil(chunk / step) * step
    return chunk, math.ceil(num_members / chunk)


def grouped(fn: Callable, width: int, skip: tuple[Callable, Callable] | None = None) -> Callable:
    r"""``fn(data, hparams, state, *rest)``, vmapped over members, run ``width`` at a time.

    The member axis (size :math:`K W`) is viewed as :math:`(K, W)` and walked through with a
    sequential ``lax.map`` over the :math:`K` groups. With ``skip = (active, idle)`` a group
    whose ``active(state)`` is False gets ``idle(fn)(data, hparams, state, *rest)`` instead of
    ``fn``'s (a ``lax.cond``: it is not computed). The loop is there even when
    :math:`K = 1`, so that a member's program does not depend on :math:`K` either. The sweep
    applies this to each device's members (inside ``shard_map``), so every device runs the
    same program on its own members whatever the number of devices.
    """

    def run(data, hparams, state, *rest):
        size = jax.tree.leaves(state)[0].shape[0]
        if size % width:
            raise ValueError(f"member_group: {size} members are not a multiple of {width}")
        k = size // width
        parts = jax.tree.map(lambda x: x.reshape((k, width) + x.shape[1:]), (hparams, state))
        if skip is None:
            out = jax.lax.map(lambda p: fn(data, p[0], p[1], *rest), parts)
        else:  # a group is computed only if it is active (``packing.SKIP_DEAD``)
            active, idle = skip
            out = jax.lax.map(
                lambda p: jax.lax.cond(active(p[1]), fn, idle(fn), data, p[0], p[1], *rest), parts
            )
        return jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:]), out)

    return run


__all__ = ["check_width", "chunk_layout", "default_width", "grouped"]

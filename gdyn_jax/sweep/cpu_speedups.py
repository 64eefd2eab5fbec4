r"""Speed tricks of the sweep engine, each beside the plain version it must equal.

The training program (``train.py``) is written against the plain operations; these are
faster ways to compute the same thing, found by measuring on CPU (``benchmarks/sweep.py``).
Each has an equality test against its plain twin in ``tests/test_sweep_speedups.py``, and
the whole engine with the fast set equals it with the plain set, bit for bit:

===========================  ===================================  =========================
trick                        plain version                        equal
===========================  ===================================  =========================
``permutation``              ``jax.random.permutation``           bit for bit
``all_finite``               ``all(isfinite(leaf))``              exactly (a boolean)
``forward_in_pieces``        one ``apply`` on the whole chunk     bit for bit
``INIT_COMPILER_OPTIONS``    XLA's default options for ``init``   bit for bit
===========================  ===================================  =========================

``kernels(fast)`` hands the training program one set or the other; the sweep uses the fast
set unless a test asks for the plain one with ``with plain():`` (the program cache keys on
the choice). Nothing here is part of the public API. (Members are computed in groups of one
fixed width, on every platform and with either set: that fixes their numbers, see ``groups``.)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

_FAST = contextvars.ContextVar("gdyn_sweep_speedups", default=True)


def enabled() -> bool:
    """Whether programs built now use the fast kernels (the default)."""
    return _FAST.get()


@contextlib.contextmanager
def plain() -> Iterator[None]:
    """Within the block, newly built sweep programs use the plain kernels (for tests)."""
    token = _FAST.set(False)
    try:
        yield
    finally:
        _FAST.reset(token)


# ---------------------------------------------------------------------------------------------
# Data order: one permutation per member per epoch
# ---------------------------------------------------------------------------------------------


def permutation_plain(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)`` as int32."""
    return jax.random.permutation(key, n).astype(jnp.int32)


def _stable_argsort_u32(bits: jax.Array) -> jax.Array:
    r"""``lax.sort_key_val(bits, arange(n))[1]`` (a stable argsort of uint32 keys), faster.

    Each key is packed with its index into one uint64, :math:`2^{32} k_i + i`, so a plain
    single-operand sort orders by key and breaks ties by index, exactly as the stable
    key-value sort does; XLA:CPU runs a single-operand sort of a primitive type several
    times faster than a key-value sort with its generic comparator. (Scoped 64-bit types.)
    """
    n = bits.shape[-1]
    with jax.enable_x64(True):
        packed = (bits.astype(jnp.uint64) << jnp.uint64(32)) | jnp.arange(n, dtype=jnp.uint64)
        order = jax.lax.sort(packed, dimension=-1) & jnp.uint64(0xFFFFFFFF)
        return order.astype(jnp.int32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    r"""``jax.random.permutation(key, n).astype(int32)``, bit for bit, with faster sorts.

    The same algorithm as jax's ``_shuffle``: :math:`\lceil 3 \ln n / \ln(2^{32}-1) \rceil`
    rounds, each drawing fresh uint32 keys from a split of the key and stably sorting the
    current order by them; only the sort is done differently (``_stable_argsort_u32``).
    """
    x = jnp.arange(n, dtype=jnp.int32)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        bits = jax.random.bits(subkey, (n,), jnp.uint32)
        x = x[_stable_argsort_u32(bits)]
    return x


# ---------------------------------------------------------------------------------------------
# Divergence: is every entry of a pytree finite?
# ---------------------------------------------------------------------------------------------


def _inexact_leaves(tree: PyTree) -> list[jax.Array]:
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    return [x for x in leaves if jnp.issubdtype(x.dtype, jnp.inexact)]


def all_finite_plain(tree: PyTree) -> jax.Array:
    """Whether every inexact leaf of ``tree`` is finite: ``all(isfinite(x))`` per leaf."""
    flags = [jnp.all(jnp.isfinite(x)) for x in _inexact_leaves(tree)]
    return jnp.all(jnp.stack(flags)) if flags else jnp.array(True)


def all_finite(tree: PyTree) -> jax.Array:
    r"""``all_finite_plain(tree)``, one fused reduction per leaf.

    :math:`\sum_i 0 \cdot x_i` is 0 when every :math:`x_i` is finite and NaN as soon as one is
    :math:`\pm\infty` or NaN (:math:`0 \cdot \infty = \mathrm{NaN}`), so one float sum per
    leaf replaces ``all(isfinite(x))`` (which XLA:CPU runs as several unfused passes).
    """
    sums = [jnp.sum(x * jnp.zeros((), x.dtype)).real for x in _inexact_leaves(tree)]
    return jnp.isfinite(sum(sums)) if sums else jnp.array(True)


# ---------------------------------------------------------------------------------------------
# Evaluation: the forward pass over a large chunk, a piece at a time
# ---------------------------------------------------------------------------------------------

EVAL_PIECE = 500


def _piece_size(size: int, target: int) -> int:
    """The largest divisor of ``size`` that is at most ``target`` (``size`` if none > 1)."""
    best = max((d for d in range(1, min(size, target) + 1) if size % d == 0), default=size)
    return size if best == 1 else best


def forward_plain(apply: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``apply(x)``: the outputs of the whole evaluation chunk at once.

    Where ``forward_in_pieces`` splits the chunk, its outputs come out of a loop, stored in
    memory before the loss reads them; here they are stored too (an optimization barrier),
    since XLA would otherwise fuse the loss and its sum into the forward pass and round the
    sum in another order. The outputs themselves are computed alike either way.
    """
    out = apply(x)
    if _piece_size(x.shape[0], EVAL_PIECE) < x.shape[0]:
        out = jax.lax.optimization_barrier(out)
    return out


def forward_in_pieces(apply: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """``apply(x)`` computed ``EVAL_PIECE`` examples at a time (a sequential ``lax.map``).

    Each example's outputs are the same; the activations of many members stay small enough
    for the cache instead of (members, chunk, width).
    """
    size = x.shape[0]
    piece = _piece_size(size, EVAL_PIECE)
    if piece == size:
        return apply(x)
    pieces = x.reshape((size // piece, piece) + x.shape[1:])
    out = jax.lax.map(apply, pieces)
    return out.reshape((size,) + out.shape[2:])


class Kernels(NamedTuple):
    """The operations the training program takes from this module."""

    permutation: Callable[[jax.Array, int], jax.Array]
    all_finite: Callable[[PyTree], jax.Array]
    forward: Callable[[Callable[[jax.Array], jax.Array], jax.Array], jax.Array]


FAST = Kernels(permutation, all_finite, forward_in_pieces)
PLAIN = Kernels(permutation_plain, all_finite_plain, forward_plain)


def kernels(fast: bool) -> Kernels:
    """The fast or the plain set."""
    return FAST if fast else PLAIN


# ---------------------------------------------------------------------------------------------
# Compilation: the init program at a lower LLVM optimization level
# ---------------------------------------------------------------------------------------------

# The init program is mostly threefry (one random stream per parameter leaf) and runs once,
# yet at LLVM's -O3 XLA:CPU takes 7-35 s to compile it (mlp 13 s, resnet 36 s at 2 cores),
# most of a short sweep's time to its first step. At -O1 it compiles in 1-5 s and gives the
# same parameters bit for bit (the same fused multiply-adds are formed; at -O0 they are not,
# and the last bit of about half the weights moves). The training program keeps -O3: there
# -O1 saves little compilation and its loops run slower.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_compiler_options(devices: Sequence[jax.Device], fast: bool = True) -> dict | None:
    """XLA options for the ``init`` program on ``devices`` (None: XLA's defaults)."""
    if fast and all(d.platform == "cpu" for d in devices):
        return dict(INIT_COMPILER_OPTIONS)
    return None

"""Grid × seeds as one flat member axis, its padding, and the way back to grid axes.

Members are ordered as ``itertools.product(*grid.values(), range(seeds))``: the last grid name
varies fastest but one, the seed fastest of all. Member ``m`` uses the key
``jax.random.key(seed)``, so every grid point sees the same seeds (common random numbers) and a
member reproduces ``train(hparams, jax.random.key(seed))`` exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import jax
import numpy as np


def members(
    grid: Mapping[str, Sequence[float]], seeds: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flattens ``grid × range(seeds)``: (hyperparameters ``{name: (M,) float32}``, seeds (M,))."""
    names = list(grid)
    rows = list(itertools.product(*(grid[k] for k in names), range(seeds)))
    hparams = {k: np.array([r[i] for r in rows], np.float32) for i, k in enumerate(names)}
    return hparams, np.array([r[-1] for r in rows], np.int64)


def seed_keys(seeds: np.ndarray) -> np.ndarray:
    """Raw key data (M, ...) uint32 of ``jax.random.key(s)`` for each member's seed."""
    return np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s)))) for s in seeds])


def padded_size(num: int, chunk_size: int | None, devices: int) -> tuple[int, int]:
    """(chunk, number of chunks): chunks are a multiple of ``devices`` and cover ``num``."""
    chunk = num if chunk_size is None else min(chunk_size, num)
    chunk = math.ceil(chunk / devices) * devices
    return chunk, math.ceil(num / chunk)


def pad(x: np.ndarray, total: int) -> np.ndarray:
    """Pads the leading (member) axis to ``total`` by repeating the last member."""
    extra = total - len(x)
    if extra <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])


def grid_shape(grid: Mapping[str, Sequence[float]], seeds: int) -> tuple[int, ...]:
    """The shape of the member axis unflattened: (len(values) per grid name..., seeds)."""
    return tuple(len(v) for v in grid.values()) + (seeds,)

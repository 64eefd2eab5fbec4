r"""Closed loops for every point of a grid of hyperparameters, in one vectorised program.

``linearize_grid`` gives a batched :class:`~gdyn_jax.linearize.LinearSystem` from one
``jax.jit(jax.vmap(jax.jacfwd(...)))`` over the grid's points, with one structural proof of
exactness for the whole grid (:func:`grid_proof`: the factory traced with its hyperparameters
as tracers). The compiled functions and the proofs are cached per (factory, names, fixed
values).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.exactness import Verdict, structural_verdict
from gdyn_jax.linearize.loop import build_loop
from gdyn_jax.linearize.system import INPUTS, LinearSystem, state_space, validate_hessian

__all__ = ["cache_key", "cached", "grid_matrices", "grid_points", "grid_proof", "linearize_grid"]


def linearize_grid(
    factory: Callable[..., optax.GradientTransformation], grid: dict, hessian, **fixed
) -> LinearSystem:
    r"""Closed loops for every point of a cartesian grid of hyperparameters, vectorised.

    ``grid`` maps hyperparameter names to 1-D arrays; the result is a batched
    :class:`~gdyn_jax.linearize.LinearSystem` whose ``A`` has shape ``grid_shape + (k, k)``,
    computed with one ``jax.jit(jax.vmap(jax.jacfwd(...)))``. ``fixed`` are further constant
    hyperparameters.
    ``exact``/``reason`` come from :func:`~gdyn_jax.linearize.grid.grid_proof`: one
    structural proof for the whole grid.
    """
    h = validate_hessian(hessian)
    names, _, _ = grid_points(grid)
    proof, C = grid_proof(factory, tuple(names), h.shape[0], fixed)
    A, B = grid_matrices(factory, grid, h, **fixed)
    n = h.shape[0]
    batch = A.shape[:-2]
    C = np.broadcast_to(C, batch + C.shape).copy()
    D = np.zeros(batch + (n, 2 * n))
    return LinearSystem(
        A,
        B,
        C,
        D,
        exact=proof.exact,
        inputs=INPUTS,
        num_params=n,
        hessian=h,
        reason=proof.reason,
        notes=proof.notes,
    )


def grid_points(grid: dict) -> tuple[list[str], tuple[int, ...], list[np.ndarray]]:
    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid: expected a non-empty dict name -> 1-D array of values")
    names = list(grid)
    axes = []
    for name in names:
        values = np.asarray(grid[name], dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"grid: {name!r} must be a non-empty 1-D array of values")
        axes.append(values)
    mesh = np.meshgrid(*axes, indexing="ij")
    shape = mesh[0].shape
    return names, shape, [m.ravel() for m in mesh]


def cache_key(factory, names: tuple[str, ...], fixed: dict) -> tuple | None:
    """A hashable key for (factory, names, fixed values), or None when there is none."""
    try:
        key = (factory, names, tuple(sorted((k, float(v)) for k, v in fixed.items())))
        hash(key)
    except (TypeError, ValueError):
        return None
    return key


def cached(cache: dict, key, make: Callable):
    """``cache[key]``, made by ``make()`` on a miss (no caching when ``key`` is None)."""
    if key is not None and key in cache:
        return cache[key]
    value = make()
    if key is not None:
        if len(cache) > 32:
            cache.clear()
        cache[key] = value
    return value


_GRID_CACHE: dict = {}
_PROOF_CACHE: dict = {}


def grid_proof(factory, names: tuple[str, ...], n: int, fixed: dict) -> tuple[Verdict, np.ndarray]:
    r"""The exactness proof and the output matrix C shared by every point of a grid.

    The factory is called once with the grid's hyperparameters *traced* (``jax.eval_shape``),
    so its one-step program is the one the vectorised grid runs for every point, and a
    structural proof on it (``gdyn_jax.linearize.exactness.structural_verdict``: affinity,
    dependence on an advancing clock, randomness) holds for all points at once. A value-based
    choice in Python cannot happen there (it would fail on a tracer), so no point can take
    another program. The numerical cross-check is :func:`~gdyn_jax.linearize.linearize`'s, on
    single systems.
    """
    found: list = []

    def trace(values):
        hp = dict(fixed)
        hp.update(zip(names, values, strict=True))
        loop = build_loop(factory(**hp), n)
        found.append((structural_verdict(loop), loop.output_matrix()))
        return jnp.zeros(())

    def make():
        with jax.enable_x64(True):
            jax.eval_shape(trace, jax.ShapeDtypeStruct((len(names),), jnp.float64))
        return found[0]

    key = cache_key(factory, names, fixed)
    return cached(_PROOF_CACHE, None if key is None else (*key, n), make)


def _grid_fn(factory, names: tuple[str, ...], fixed: dict):
    """``jit(vmap(state_space))`` over grid points, cached per (factory, names, fixed)."""

    def one(values, hessian):
        hp = dict(fixed)
        hp.update(zip(names, values, strict=True))
        return state_space(factory(**hp), hessian)

    return cached(
        _GRID_CACHE,
        cache_key(factory, names, fixed),
        lambda: _compile.jit(jax.vmap(one, in_axes=(0, None))),
    )


def grid_matrices(factory, grid: dict, hessian: np.ndarray, **fixed):
    """(A, B) as float64 numpy arrays of shape ``grid_shape + (k, k)`` / ``(k, 2n)``."""
    names, shape, flat = grid_points(grid)
    with jax.enable_x64(True):
        fn = _grid_fn(factory, tuple(names), fixed)
        A, B = fn(np.stack(flat, axis=1), np.asarray(hessian, np.float64))  # numpy: no eager ops
        A, B = np.asarray(A), np.asarray(B)
    return A.reshape(shape + A.shape[1:]), B.reshape(shape + B.shape[1:])

"""Each speed trick of ``gdyn_jax.sweep.cpu_speedups`` against its plain twin, and the whole
engine with the fast tricks against the engine with the plain ones, bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdyn_jax import models
from gdyn_jax.sweep import SweepConfig, cpu_speedups, groups, losses, run_sweep


@pytest.mark.parametrize("n", [1, 2, 100, 4000])
def test_permutation_is_jax_random_permutation_bit_for_bit(n):
    keys = jax.random.split(jax.random.key(3), 4)
    plain = jax.vmap(lambda k: cpu_speedups.permutation_plain(k, n))(keys)
    np.testing.assert_array_equal(plain, jax.vmap(lambda k: jax.random.permutation(k, n))(keys))
    fast = jax.jit(jax.vmap(lambda k: cpu_speedups.permutation(k, n)))(keys)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.parametrize(
    "bad", [None, np.inf, -np.inf, np.nan], ids=["finite", "inf", "-inf", "nan"]
)
def test_all_finite_equals_isfinite_on_every_leaf(bad):
    tree = {
        "w": np.ones((3, 4), np.float32),
        "count": np.array(7, np.int32),  # integer leaves are never non-finite
        "b": np.zeros(5, np.float16),
        "c": np.ones(2, np.complex64),
    }
    if bad is not None:
        tree["b"] = tree["b"].copy()
        tree["b"][2] = bad
    expected = all(
        bool(np.all(np.isfinite(x)))
        for x in jax.tree.leaves(tree)
        if np.issubdtype(x.dtype, np.inexact)
    )
    assert bool(jax.jit(cpu_speedups.all_finite_plain)(tree)) is expected
    assert bool(jax.jit(cpu_speedups.all_finite)(tree)) is expected
    assert bool(cpu_speedups.all_finite({})) and bool(cpu_speedups.all_finite_plain({}))


@pytest.mark.parametrize("size", [256, 1000, 4000, 997])  # no split, 2 and 8 pieces, a prime
def test_forward_in_pieces_equals_one_forward_with_the_same_loss_sum(size):
    x = jax.random.normal(jax.random.key(0), (size, 40))
    y = jax.random.randint(jax.random.key(1), (size,), 0, 10)
    model = models.get("logistic")
    params = jax.vmap(lambda k: model.init(k, x[:1]))(jax.random.split(jax.random.key(2), 4))

    def stats(forward):
        def one(p):
            out = forward(lambda xb: model.apply(p, xb), x)
            return out, jnp.sum(losses.mse(out, y))

        return jax.jit(jax.vmap(one))(params)

    fast, plain = stats(cpu_speedups.forward_in_pieces), stats(cpu_speedups.forward_plain)
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])


@pytest.mark.parametrize("members, width", [(48, 16), (64, 16), (40, 8), (8, 8)])
def test_member_groups_keep_each_members_result(members, width):
    def one(data, hp, carry, start):
        new = {"a": carry["a"] * hp["lr"] + data + start, "b": carry["b"] + hp["lr"]}
        return new, jnp.sum(new["a"])

    fn = jax.vmap(one, in_axes=(None, 0, 0, None))
    hp = {"lr": np.arange(members, dtype=np.float32)}
    carry = {"a": np.arange(members * 3, dtype=np.float32).reshape(members, 3), "b": hp["lr"]}
    expected = fn(np.float32(0.5), hp, carry, np.float32(2.0))
    got = jax.jit(groups.grouped(fn, width))(np.float32(0.5), hp, carry, np.float32(2.0))
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_array_equal(g, e)


def test_engine_with_speedups_equals_plain_engine_bit_for_bit(mnist1d_data_dir):
    """32 members in member groups of 4: the fast engine permutes with packed sorts,
    evaluates the 4,000 training examples in pieces and checks divergence with one sum per
    leaf; the plain engine does none of that. Some members diverge."""
    config = SweepConfig(
        model="logistic", optimizer="momentum", loss="mse", steps=20, batch_size=50, eval_every=10
    )
    grid = {"learning_rate": [float(v) for v in np.geomspace(0.01, 3.0, 16)]}
    fast = run_sweep(config, grid, 2, progress=False)
    with cpu_speedups.plain():
        plain = run_sweep(config, grid, 2, progress=False)
    assert 0 < int((fast["diverged_at"] >= 0).sum()) < 32
    for name in fast.data_vars:
        np.testing.assert_array_equal(fast[name], plain[name])


@pytest.mark.parametrize("name", ["logistic", "fc"])  # uniform and truncated-normal inits
def test_init_compiler_options_give_the_same_parameters_bit_for_bit(name):
    model = models.get(name)
    x = np.zeros((1, 40), np.float32)
    keys = jax.random.split(jax.random.key(0), 3)

    def init(key):
        return model.init(key, x)

    options = cpu_speedups.init_compiler_options(jax.devices()[:1])
    assert options == cpu_speedups.INIT_COMPILER_OPTIONS
    plain = jax.jit(jax.vmap(init))(keys)
    fast = jax.jit(jax.vmap(init), compiler_options=options)(keys)
    for p, f in zip(jax.tree.leaves(plain), jax.tree.leaves(fast), strict=True):
        np.testing.assert_array_equal(f, p)
    assert cpu_speedups.init_compiler_options(jax.devices()[:1], fast=False) is None


def test_seed_keys_equal_one_eager_key_per_member():
    from gdyn_jax.sweep import grid as grid_lib

    seeds = np.array([3, 0, 1, 3, 2**31 - 1, 12345, 0, 7])
    assert np.array_equal(grid_lib.seed_keys(seeds), grid_lib.seed_keys_plain(seeds))
    large = np.array([2**40, 5])  # beyond int32: the plain twin itself
    assert np.array_equal(grid_lib.seed_keys(large), grid_lib.seed_keys_plain(large))

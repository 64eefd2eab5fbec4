"""The MNIST-1D CNN's training step against its plain twin (flax's convolution), in one process.

The 1-D CNN computes its strided convolutions as one matrix product over extracted windows
(``gdyn_jax.models._layers.PatchConv1D``); its plain twin is flax's ``nn.Conv``
(``lax.conv_general_dilated``), equal to rounding (``tests/test_models.py``). This times a
compiled, vmapped training step (Adam, batch 100, as the ``mnist1d`` experiment trains) of
each at ``--members`` members, interleaved, and prints milliseconds per step and the ratio
plain / fast, with the 1-minute load average.

    python benchmarks/conv1d.py [--members 1 2 4] [--steps 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.models import mnist1d
from gdyn_jax.models._layers import torch_uniform


class PlainCNN1D(mnist1d.CNN1D):
    """``CNN1D`` through flax's ``nn.Conv`` (the plain twin)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h, c_in = x[..., None], 1
        for k, s, p in ((5, 2, 1), (3, 2, 1), (3, 2, 1)):
            init = torch_uniform(c_in * k)
            conv = nn.Conv(self.channels, (k,), (s,), [(p, p)], kernel_init=init, bias_init=init)
            h, c_in = nn.relu(conv(h)), self.channels
        h = jnp.swapaxes(h, -1, -2).reshape(h.shape[0], -1)
        return nn.Dense(self.num_classes)(h)


def compiled_steps(model: nn.Module, members: int, steps: int):
    """A jitted function running ``steps`` vmapped Adam steps of ``members`` members."""
    x = jax.random.normal(jax.random.key(0), (100, 40))
    y = jax.random.randint(jax.random.key(1), (100,), 0, 10)
    params = jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(2), members))
    tx = optax.adam(1e-2)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    def step(carry, _):
        p, s = carry
        u, s = jax.vmap(tx.update)(jax.vmap(jax.grad(loss))(p), s, p)
        return (optax.apply_updates(p, u), s), None

    run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps)[0])
    carry = (params, jax.vmap(tx.init)(params))
    jax.block_until_ready(run(carry))  # compile
    return lambda: jax.block_until_ready(run(carry))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"jax {jax.__version__}, devices {jax.devices()}, load {os.getloadavg()[0]:.2f}")
    plain, fast = PlainCNN1D(), mnist1d.CNN1D()
    for m in args.members:
        runs = [compiled_steps(model, m, args.steps) for model in (plain, fast)]
        times = [[], []]
        for _ in range(args.repeats):
            for i, run in enumerate(runs):
                start = time.perf_counter()
                run()
                times[i].append((time.perf_counter() - start) / args.steps * 1e3)
        plain_ms, fast_ms = (float(np.median(t)) for t in times)
        print(
            f"cnn1d, {m} members: plain {plain_ms:.3f} ms/step, fast {fast_ms:.3f} ms/step, "
            f"plain/fast {plain_ms / fast_ms:.2f} (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()

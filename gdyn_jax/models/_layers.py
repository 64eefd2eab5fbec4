r"""Shared pieces: PyTorch-default initialisers and input reshaping.

PyTorch initialises ``nn.Linear``, ``nn.Conv1d`` and ``nn.GRU`` weights and biases uniformly:
Linear/Conv use ``kaiming_uniform_(a=sqrt(5))`` for weights and a uniform bias, both giving

.. math:: w, b \sim \mathcal{U}(-1/\sqrt{\text{fan\_in}},\, 1/\sqrt{\text{fan\_in}}),

with fan_in = in_features (Linear) or in_channels * kernel_size (Conv1d); GRU uses
:math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})` for every parameter. The MNIST-1D reference
models were trained with these, so gdyn_jax's versions use them too (the learning dynamics
depend on the initial scale).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def torch_uniform(fan_in: int) -> Initializer:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, PyTorch's default for Linear/Conv/GRU."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_dense(features: int, fan_in: int, name: str | None = None) -> nn.Dense:
    """A Dense layer initialised like ``torch.nn.Linear(fan_in, features)``."""
    init = torch_uniform(fan_in)
    return nn.Dense(features, kernel_init=init, bias_init=init, name=name)


def check_flat(x: jax.Array, features: int | None = None) -> None:
    """Raise ``ValueError`` naming ``x`` unless it is (batch, features)."""
    if x.ndim != 2 or (features is not None and x.shape[1] != features):
        want = f"(batch, {features})" if features is not None else "(batch, features)"
        raise ValueError(f"x: expected a flat batch of shape {want}, got shape {x.shape}")

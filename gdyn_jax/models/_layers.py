r"""Shared pieces: PyTorch-default initialisers, input reshaping and checks of module fields.

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
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gdyn_jax.errors import UsageError

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


def check_size(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    """A one-line ``UsageError`` naming the field ``name`` unless ``value`` is an integer
    ``>= minimum`` (checked when the module is constructed, not inside XLA)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UsageError(f"{name}: expected an integer >= {minimum} for {owner}, got {value!r}")


def check_flag(owner: str, name: str, value: Any) -> None:
    """A one-line ``UsageError`` naming the field ``name`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise UsageError(f"{name}: expected True or False for {owner}, got {value!r}")


def check_sizes(owner: str, name: str, value: Any, form: str | None = None) -> None:
    """A one-line ``UsageError`` naming ``name`` unless ``value`` is a tuple of integers
    ``>= 1`` (as many as the names in ``form``, e.g. ``"(H, W, C)"``, when given)."""
    length = None if form is None else form.count(",") + 1
    ok = isinstance(value, tuple) and (length is None or len(value) == length)
    ok = ok and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value
    )
    if not ok:
        what = "a tuple of integers" if form is None else f"{form}, {length} integers"
        raise UsageError(f"{name}: expected {what} >= 1 for {owner}, got {value!r}")

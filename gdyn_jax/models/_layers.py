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


class PatchConv1D(nn.Module):
    r"""A strided 1-D convolution as one matrix product over extracted windows (im2col).

    For input :math:`h` of shape (batch, L, C_in), zero-padded by ``padding`` on both ends,
    output position :math:`t` is

    .. math:: y_t = b + \sum_{k<K} h_{st + k}\, W_k, \qquad t < \lfloor (L + 2p - K)/s \rfloor + 1,

    the cross-correlation of ``flax.linen.Conv`` with the same ``kernel`` (K, C_in, C_out) and
    ``bias`` parameters (same names, shapes and initialisers), which it equals to rounding
    (``tests/test_models.py``). The K windows are strided slices concatenated channel-last,
    so forward and backward passes are plain matrix products: on XLA:CPU a vmapped training
    step of the MNIST-1D CNN runs 9-10x faster than through ``lax.conv_general_dilated``
    (``benchmarks/conv1d.py``, BENCHMARKS.md).
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        k, s, c_in = self.kernel_size, self.stride, h.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (k, c_in, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        pad = [(0, 0)] * (h.ndim - 2) + [(self.padding, self.padding), (0, 0)]
        h = jnp.pad(h, pad)
        length = (h.shape[-2] - k) // s + 1
        windows = [h[..., i : i + s * (length - 1) + 1 : s, :] for i in range(k)]
        patches = jnp.concatenate(windows, axis=-1)  # (..., length, k * c_in), window-major
        return patches @ kernel.reshape(k * c_in, self.features) + bias


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

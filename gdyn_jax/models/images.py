r"""Image models: a LeNet-5-style CNN and a small CIFAR ResNet (purely functional, no state).

Inputs are flat (batch, H * W * C) float arrays, as :func:`gdyn_jax.data.load` returns them
(flattened in (H, W, C) order); the models reshape them with their ``input_shape``.

Normalisation choice for the ResNet: GroupNorm instead of BatchNorm. BatchNorm keeps running
statistics (a mutable ``batch_stats`` collection) and couples the examples of a batch, which
breaks the "one pure ``apply(params, x)``" contract the sweep engine vmaps over; GroupNorm
(Wu & He, ECCV 2018) normalises each example on its own and has only ordinary parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gdyn_jax.errors import UsageError
from gdyn_jax.models._layers import check_flat, check_size, check_sizes


def _to_images(x: jax.Array, input_shape: Sequence[int]) -> jax.Array:
    check_flat(x, math.prod(input_shape))
    return x.reshape((x.shape[0], *input_shape))


class CNN2D(nn.Module):
    r"""LeNet-5 style (LeCun et al., 1998) with ReLU and max pooling.

    conv 5x5 -> 6, ReLU, max-pool 2; conv 5x5 -> 16 (valid), ReLU, max-pool 2; Dense 120,
    ReLU; Dense 84, ReLU; Dense ``num_classes``. The first convolution pads so that its output
    is 28x28 (LeNet-5's 32x32 input: no padding for 32x32x3 CIFAR-10, 2 pixels for 28x28x1
    MNIST), so both end in 5x5x16 = 400 features: 61,706 parameters on MNIST, 62,006 on
    CIFAR-10. Flax default initialisation (LeCun normal weights, zero biases).
    """

    num_classes: int = 10
    input_shape: tuple[int, int, int] = (28, 28, 1)

    def __post_init__(self) -> None:
        check_size("CNN2D", "num_classes", self.num_classes)
        check_sizes("CNN2D", "input_shape", self.input_shape, "(H, W, C)")
        # conv 5x5 (padding `pad`), pool 2, conv 5x5 (valid), pool 2 must leave a pixel:
        # ((s + 2 pad - 4) // 2 - 4) // 2 >= 1, i.e. s >= 16 - 2 pad.
        smallest = 16 - 2 * self._pad
        if min(self.input_shape[:2]) < smallest:
            raise UsageError(
                f"input_shape: expected images of at least {smallest}x{smallest} pixels for "
                f"CNN2D (two 5x5 convolutions and 2x2 poolings), got {self.input_shape!r}"
            )
        super().__post_init__()

    @property
    def _pad(self) -> int:
        """The first convolution's padding: to LeNet-5's 32x32 (0 for larger images)."""
        return max(0, (32 - self.input_shape[0]) // 2)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _to_images(x, self.input_shape)
        pad = self._pad
        h = nn.relu(nn.Conv(6, (5, 5), padding=[(pad, pad), (pad, pad)], name="conv1")(h))
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = nn.relu(nn.Conv(16, (5, 5), padding="VALID", name="conv2")(h))
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[0], -1)
        h = nn.relu(nn.Dense(120, name="fc1")(h))
        h = nn.relu(nn.Dense(84, name="fc2")(h))
        return nn.Dense(self.num_classes, name="fc3")(h)


class _Block(nn.Module):
    """A basic residual block: (conv3x3, GN, ReLU, conv3x3, GN) + shortcut, ReLU."""

    channels: int
    stride: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv_init = nn.initializers.kaiming_normal()
        h = nn.Conv(
            self.channels,
            (3, 3),
            strides=self.stride,
            padding=1,
            use_bias=False,
            kernel_init=conv_init,
        )(x)
        h = nn.relu(nn.GroupNorm(num_groups=self.groups)(h))
        h = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False, kernel_init=conv_init)(h)
        h = nn.GroupNorm(num_groups=self.groups, scale_init=nn.initializers.zeros)(h)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = nn.Conv(
                self.channels, (1, 1), strides=self.stride, use_bias=False, kernel_init=conv_init
            )(x)
            x = nn.GroupNorm(num_groups=self.groups)(x)
        return nn.relu(h + x)


class ResNet(nn.Module):
    r"""A CIFAR ResNet (He et al., CVPR 2016, section 4.2) with GroupNorm.

    conv3x3 -> ``width``, GN, ReLU; three stages of ``(depth - 2) // 6`` basic blocks with
    ``width``, 2 ``width``, 4 ``width`` channels (the second and third stages start with
    stride 2; 1x1 projection shortcuts where the shape changes); global average pooling;
    Dense ``num_classes``. ``depth=20``, ``width=16`` is ResNet-20 (about 0.27 M parameters);
    ``depth=8`` (one block per stage, about 78 k) is a CPU-friendly default for sweeps. Each
    block's last GroupNorm scale starts at zero (Goyal et al., 2017), so every block starts as
    the identity. Kaiming-normal convolutions, no BatchNorm state (see the module docstring).
    """

    num_classes: int = 10
    input_shape: tuple[int, int, int] = (32, 32, 3)
    depth: int = 8
    width: int = 16
    groups: int = 8

    def __post_init__(self) -> None:
        check_size("ResNet", "num_classes", self.num_classes)
        check_sizes("ResNet", "input_shape", self.input_shape, "(H, W, C)")
        check_size("ResNet", "depth", self.depth, 8)
        if (self.depth - 2) % 6:
            raise UsageError(
                f"depth: expected 6n + 2 with n >= 1 (8, 14, 20, ...), got {self.depth}"
            )
        check_size("ResNet", "width", self.width)
        check_size("ResNet", "groups", self.groups)
        if self.width % self.groups:
            raise UsageError(
                f"width: expected a multiple of groups={self.groups}, got {self.width}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _to_images(x, self.input_shape)
        h = nn.Conv(
            self.width,
            (3, 3),
            padding=1,
            use_bias=False,
            kernel_init=nn.initializers.kaiming_normal(),
        )(h)
        h = nn.relu(nn.GroupNorm(num_groups=self.groups)(h))
        for stage in range(3):
            for block in range((self.depth - 2) // 6):
                stride = 2 if stage > 0 and block == 0 else 1
                h = _Block(self.width * 2**stage, stride, self.groups)(h)
        h = jnp.mean(h, axis=(1, 2))
        return nn.Dense(self.num_classes)(h)

r"""The MNIST-1D paper's reference models, re-expressed in Flax linen.

Greydanus & Kobak, "Scaling down deep learning with MNIST-1D" (ICML 2024), public code
https://github.com/greydanus/mnist1d, ``notebooks/models.py`` (``LinearBase``, ``MLPBase``,
``ConvBase``, ``GRUBase``) as used in ``notebooks/mnist1d-classification.ipynb``. Same layer
shapes, activations, flattening order and PyTorch-default initialisation; with 40 inputs and
10 classes the parameter counts equal the ones the reference code prints there:

- ``logistic``: Linear(40, 10) -- 410 parameters;
- ``mlp``: Linear(40, 100), Linear(100, 100) with a residual connection, Linear(100, 10)
  -- 15,210;
- ``cnn1d``: Conv1d(1, 25, k=5, stride 2, pad 1), two Conv1d(25, 25, k=3, stride 2, pad 1),
  Linear(25 * 5, 10) -- 5,210;
- ``gru``: bidirectional GRU(1 -> 6) over the 40 steps, Linear(2 * 6 * 40, 10) -- 5,134.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gdyn_jax.models._layers import (
    PatchConv1D,
    check_flag,
    check_flat,
    check_size,
    torch_dense,
    torch_uniform,
)


class Logistic(nn.Module):
    r"""Multinomial logistic regression: logits :math:`= W x + b` (``LinearBase``)."""

    num_classes: int = 10

    def __post_init__(self) -> None:
        check_size("Logistic", "num_classes", self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_flat(x)
        return torch_dense(self.num_classes, x.shape[-1])(x)


class MLP(nn.Module):
    r"""``MLPBase``: two ReLU layers with a residual connection around the second.

    .. math::
        h_1 = \mathrm{relu}(W_1 x + b_1),\quad
        h_2 = h_1 + \mathrm{relu}(W_2 h_1 + b_2),\quad
        \text{logits} = W_3 h_2 + b_3.
    """

    num_classes: int = 10
    hidden_size: int = 100

    def __post_init__(self) -> None:
        check_size("MLP", "num_classes", self.num_classes)
        check_size("MLP", "hidden_size", self.hidden_size)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_flat(x)
        h = nn.relu(torch_dense(self.hidden_size, x.shape[-1], name="linear1")(x))
        h = h + nn.relu(torch_dense(self.hidden_size, self.hidden_size, name="linear2")(h))
        return torch_dense(self.num_classes, self.hidden_size, name="linear3")(h)


class CNN1D(nn.Module):
    r"""``ConvBase``: three strided 1-D convolutions with ReLU, then a linear classifier.

    Input (batch, L) is read as (batch, L, 1). Conv(1 -> C, kernel 5, stride 2, padding 1),
    Conv(C -> C, 3, 2, 1), Conv(C -> C, 3, 2, 1), each followed by ReLU; for L = 40 the lengths
    are 40 -> 19 -> 10 -> 5. The features are flattened channel-major (as PyTorch's
    ``view`` of an (N, C, L) tensor) into C * 5 = 125 inputs of the final Linear layer.
    """

    num_classes: int = 10
    channels: int = 25

    def __post_init__(self) -> None:
        check_size("CNN1D", "num_classes", self.num_classes)
        check_size("CNN1D", "channels", self.channels)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_flat(x)
        h = x[..., None]
        in_channels = 1
        for i, (kernel, stride, padding) in enumerate(((5, 2, 1), (3, 2, 1), (3, 2, 1))):
            init = torch_uniform(in_channels * kernel)
            conv = PatchConv1D(
                self.channels,
                kernel,
                stride=stride,
                padding=padding,
                kernel_init=init,
                bias_init=init,
                name=f"conv{i + 1}",
            )
            h = nn.relu(conv(h))
            in_channels = self.channels
        h = jnp.swapaxes(h, -1, -2).reshape(h.shape[0], -1)  # channel-major, as torch
        return torch_dense(self.num_classes, h.shape[-1], name="linear")(h)


class TorchGRULayer(nn.Module):
    r"""One direction of ``torch.nn.GRU`` (PyTorch's parametrisation, both bias vectors).

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    with :math:`h_0 = 0`. Parameters: ``w_ih`` (I, 3H), ``w_hh`` (H, 3H), ``b_ih``, ``b_hh``
    (3H,), gate order (r, z, n) as in PyTorch, all initialised
    :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`: 3H(I + H + 2) parameters. (flax's
    ``GRUCell`` drops the redundant biases :math:`b_{hr}, b_{hz}`, 2H fewer, so it would not
    match the reference count.) Input (batch, T, I) -> all hidden states (batch, T, H).
    """

    hidden_size: int
    reverse: bool = False

    def __post_init__(self) -> None:
        check_size("TorchGRULayer", "hidden_size", self.hidden_size)
        check_flag("TorchGRULayer", "reverse", self.reverse)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = self.hidden_size
        init = torch_uniform(hidden)
        w_ih = self.param("w_ih", init, (x.shape[-1], 3 * hidden))
        w_hh = self.param("w_hh", init, (hidden, 3 * hidden))
        b_ih = self.param("b_ih", init, (3 * hidden,))
        b_hh = self.param("b_hh", init, (3 * hidden,))

        def step(h: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
            gi = x_t @ w_ih + b_ih
            gh = h @ w_hh + b_hh
            i_r, i_z, i_n = jnp.split(gi, 3, axis=-1)
            h_r, h_z, h_n = jnp.split(gh, 3, axis=-1)
            r = jax.nn.sigmoid(i_r + h_r)
            z = jax.nn.sigmoid(i_z + h_z)
            n = jnp.tanh(i_n + r * h_n)
            h = (1.0 - z) * n + z * h
            return h, h

        h0 = jnp.zeros((x.shape[0], hidden), x.dtype)
        xs = jnp.swapaxes(x, 0, 1)  # (T, batch, I)
        _, hs = jax.lax.scan(step, h0, xs, reverse=self.reverse)
        return jnp.swapaxes(hs, 0, 1)


class GRU(nn.Module):
    r"""``GRUBase``: a (bidirectional) GRU over the 40 time steps, then a linear classifier.

    Input (batch, T) is read as T steps of 1 feature. The outputs of both directions at every
    step, concatenated per step as PyTorch does ([forward, backward]), are flattened to
    (batch, T * 2H) and fed to Linear(T * 2H, num_classes). Defaults H = 6, bidirectional.
    """

    num_classes: int = 10
    hidden_size: int = 6
    bidirectional: bool = True

    def __post_init__(self) -> None:
        check_size("GRU", "num_classes", self.num_classes)
        check_size("GRU", "hidden_size", self.hidden_size)
        check_flag("GRU", "bidirectional", self.bidirectional)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_flat(x)
        seq = x[..., None]
        outs = [TorchGRULayer(self.hidden_size, name="forward")(seq)]
        if self.bidirectional:
            outs.append(TorchGRULayer(self.hidden_size, reverse=True, name="backward")(seq))
        h = jnp.concatenate(outs, axis=-1)
        h = h.reshape(h.shape[0], -1)
        return torch_dense(self.num_classes, h.shape[-1], name="linear")(h)


__all__ = ["CNN1D", "GRU", "MLP", "Logistic", "TorchGRULayer"]

r"""A plain fully connected network, the architecture of the edge-of-stability experiments.

Cohen, Kaur, Li, Kolter, Talwalkar, "Gradient descent on neural networks typically occurs at
the edge of stability", ICLR 2021, train "fc-tanh": two hidden layers of width 200 with tanh
(also elu/relu variants), PyTorch-default initialisation, no residual connection:

.. math::
    h_0 = x,\qquad h_{i} = \sigma(W_i h_{i-1} + b_i)\ (i = 1..L),\qquad
    \text{logits} = W_{L+1} h_L + b_{L+1}.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from gdyn_jax.errors import UsageError
from gdyn_jax.models._layers import check_flat, check_size, check_sizes, torch_dense

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu}


class FullyConnected(nn.Module):
    r"""``widths`` hidden layers with activation ``activation``, then a linear classifier."""

    num_classes: int = 10
    widths: tuple[int, ...] = (200, 200)
    activation: str = "tanh"

    def __post_init__(self) -> None:
        check_size("FullyConnected", "num_classes", self.num_classes)
        check_sizes("FullyConnected", "widths", self.widths)
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise UsageError(
                f"activation: expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_flat(x)
        sigma = ACTIVATIONS[self.activation]
        h, fan_in = x, x.shape[-1]
        for i, width in enumerate(self.widths):
            h = sigma(torch_dense(int(width), fan_in, name=f"linear{i + 1}")(h))
            fan_in = int(width)
        return torch_dense(self.num_classes, fan_in, name=f"linear{len(self.widths) + 1}")(h)

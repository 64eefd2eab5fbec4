"""Flax linen models taking flat (batch, features) inputs and returning logits.

``get(name, num_classes=10, **kwargs)`` returns a ``flax.linen.Module``; use it functionally::

    model = models.get("mlp")
    params = model.init(key, x)          # x: (batch, 40)
    logits = model.apply(params, x)      # (batch, 10)

Every model is a pure function of (params, x): no mutable collections (no BatchNorm state,
no dropout), so ``jax.vmap(model.init, (0, None))(keys, x)`` and
``jax.vmap(model.apply, (0, None))(params, x)`` train many models at once.

Models (keyword arguments with defaults):

- ``logistic``: linear classifier, the MNIST-1D paper's ``LinearBase``;
- ``mlp``: the paper's ``MLPBase``, residual MLP (``hidden_size=100``);
- ``cnn1d``: the paper's ``ConvBase``, 1-D CNN (``channels=25``);
- ``gru``: the paper's ``GRUBase``, GRU (``hidden_size=6``, ``bidirectional=True``);
- ``fc``: plain fully connected network, Cohen et al. (2021)'s "fc-tanh"
  (``widths=(200, 200)``, ``activation='tanh'``);
- ``cnn2d``: LeNet-5-style 2-D CNN (``input_shape=(28, 28, 1)``);
- ``resnet``: CIFAR ResNet with GroupNorm (``input_shape=(32, 32, 3)``, ``depth=8``,
  ``width=16``, ``groups=8``; ``depth=20`` is ResNet-20).

The MNIST-1D models use PyTorch's default initialisation, as the reference code did
(``gdyn_jax.models._layers``); ``cnn2d`` and ``resnet`` use flax/Kaiming initialisers.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from gdyn_jax.models.fully_connected import FullyConnected
from gdyn_jax.models.images import CNN2D, ResNet
from gdyn_jax.models.mnist1d import CNN1D, GRU, MLP, Logistic

_MODELS: dict[str, type[nn.Module]] = {
    "logistic": Logistic,
    "mlp": MLP,
    "cnn1d": CNN1D,
    "gru": GRU,
    "fc": FullyConnected,
    "cnn2d": CNN2D,
    "resnet": ResNet,
}


def names() -> tuple[str, ...]:
    """The model names :func:`get` accepts."""
    return tuple(_MODELS)


def get(name: str, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """The model ``name`` with ``num_classes`` outputs; ``kwargs`` are its module fields.

    Raises ``ValueError`` naming ``model`` for an unknown name, ``num_classes`` if it is not a
    positive integer, and the bad keyword for an unknown keyword argument.
    """
    if name not in _MODELS:
        raise ValueError(f"model: unknown model {name!r}; expected one of {', '.join(names())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    cls = _MODELS[name]
    fields = set(cls.__dataclass_fields__) - {"parent", "name"}
    for key in kwargs:
        if key not in fields:
            raise ValueError(
                f"{key}: not an argument of model {name!r} (expected one of "
                f"{', '.join(sorted(fields - {'num_classes'}))})"
            )
    if "widths" in kwargs:
        kwargs["widths"] = tuple(int(w) for w in kwargs["widths"])
    if "input_shape" in kwargs:
        kwargs["input_shape"] = tuple(int(d) for d in kwargs["input_shape"])
    return cls(num_classes=num_classes, **kwargs)


__all__ = [
    "CNN1D",
    "CNN2D",
    "GRU",
    "MLP",
    "FullyConnected",
    "Logistic",
    "ResNet",
    "get",
    "names",
]

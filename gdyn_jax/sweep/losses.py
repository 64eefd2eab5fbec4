r"""Per-example losses: ``loss(outputs, targets) -> (batch,)``; the sweep averages them.

Named losses (for integer class labels):

- ``'cross_entropy'``: :math:`-\log \mathrm{softmax}(z)_y`;
- ``'mse'``: :math:`\tfrac12 \sum_c (z_c - e_{y,c})^2`, the square loss on one-hot targets
  of Cohen et al. (2021) (summed over classes, averaged over examples by the sweep).

Any other function with that signature works as well (an import path ``"pkg.module:fn"``
on the command line), for targets of any dtype and shape: e.g. a regression loss
``lambda out, y: 0.5 * jnp.sum((out - y) ** 2, axis=-1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import imports

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer labels, per example."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def mse(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Half the squared distance of the outputs to the one-hot labels, per example."""
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)


NAMED: dict[str, Loss] = {"cross_entropy": cross_entropy, "mse": mse}
LOSSES = tuple(NAMED)


def resolve(loss: str | Loss) -> Loss:
    """The function for a loss name, an import path, or a function itself."""
    return imports.resolve(loss, "loss", NAMED, "pkg.module:fn")


def check_targets(loss: str | Loss, class_labels: bool, targets: np.ndarray) -> None:
    """The named losses need integer class labels; a one-line ``ValueError`` otherwise."""
    if isinstance(loss, str) and loss in NAMED and not class_labels:
        raise ValueError(
            f"loss: {loss!r} needs integer class labels of shape (N,), got targets "
            f"{targets.dtype} {targets.shape}; pass a loss function for other targets"
        )


def check_shape(loss: Loss, outputs: jax.ShapeDtypeStruct, targets: np.ndarray) -> None:
    """``loss`` on a batch must give one value per example (checked with ``eval_shape``)."""
    batch = outputs.shape[0]
    y = jax.ShapeDtypeStruct((batch,) + targets.shape[1:], targets.dtype)
    try:
        out = jax.eval_shape(loss, outputs, y)
    except Exception as error:  # the user's function: report it in one line
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"loss: fails on outputs {outputs.dtype} {outputs.shape} and targets "
            f"{targets.dtype} {y.shape}: {first}"
        ) from None
    if getattr(out, "shape", None) != (batch,):
        raise ValueError(
            f"loss: expected per-example losses of shape ({batch},), got "
            f"{getattr(out, 'shape', type(out).__name__)}"
        )

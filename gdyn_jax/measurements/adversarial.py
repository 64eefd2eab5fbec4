r"""Adversarial inputs by the fast gradient sign method (FGSM), through any model.

Goodfellow, Shlens, Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015: the
:math:`\ell_\infty` perturbation of size :math:`\epsilon` that increases the loss most to first
order is

.. math::
    x_{\text{adv}} = x + \epsilon\, \operatorname{sign}\bigl(\nabla_x \ell(f(x), y)\bigr),
    \qquad \ell(x_{\text{adv}}) - \ell(x) = \epsilon \|\nabla_x \ell\|_1 + O(\epsilon^2).

The input gradients go through the same model (a Flax ``apply`` or any function of the
inputs), one per example: the gradient of the summed per-example losses, so examples must not
interact inside the model (no batch statistics). Everything is pure: ``jax.vmap`` over trained
members' parameters evaluates a whole sweep at once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["fgsm", "fgsm_evaluate"]

Apply = Callable[[jax.Array], jax.Array]
ExampleLoss = Callable[[jax.Array, jax.Array], jax.Array]


def _direction(apply_fn: Apply, example_loss: ExampleLoss, x: jax.Array, y: jax.Array):
    """:math:`\\operatorname{sign}(\\nabla_x \\ell)` for every example."""
    grad = jax.grad(lambda inputs: jnp.sum(example_loss(apply_fn(inputs), y)))(x)
    return jnp.sign(grad)


def fgsm(
    apply_fn: Apply, example_loss: ExampleLoss, x: jax.Array, y: jax.Array, epsilon
) -> jax.Array:
    """The FGSM inputs :math:`x + \\epsilon\\,\\operatorname{sign}(\\nabla_x \\ell)`.

    Args:
      apply_fn: the model on a batch of inputs, ``apply_fn(x) -> outputs``.
      example_loss: per-example loss ``example_loss(outputs, y) -> (batch,)`` (e.g.
        ``gdyn_jax.sweep.losses.resolve('cross_entropy')``).
      x, y: the inputs (leading batch axis) and their targets.
      epsilon: the perturbation size (:math:`\\ell_\\infty`), a scalar.
    """
    return x + epsilon * _direction(apply_fn, example_loss, x, y)


def fgsm_evaluate(
    apply_fn: Apply, example_loss: ExampleLoss, x: jax.Array, y: jax.Array, epsilons: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Accuracy and mean loss under FGSM at each of ``epsilons`` (0 gives the clean values).

    The sign direction is computed once at the clean inputs and scaled by each
    :math:`\\epsilon`. Accuracy is the fraction of examples whose output's argmax is the label
    (``y``: integer class labels).

    Returns:
      ``(accuracy, loss)``, each of shape ``(len(epsilons),)``.
    """
    direction = _direction(apply_fn, example_loss, x, y)

    def at(epsilon):
        outputs = apply_fn(x + epsilon * direction)
        accuracy = jnp.mean(jnp.argmax(outputs, axis=-1) == y)
        return accuracy, jnp.mean(example_loss(outputs, y))

    return jax.vmap(at)(jnp.asarray(epsilons, x.dtype))

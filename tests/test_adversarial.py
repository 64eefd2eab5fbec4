"""FGSM against an analytic input gradient (softmax regression), finite differences of the loss
and other sign perturbations of the same size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.measurements import adversarial
from gdyn_jax.sweep import losses


def _model(seed=0):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    return (lambda inputs: inputs @ w + b), w, x, y


def test_fgsm_moves_each_input_by_epsilon_along_the_sign_of_its_loss_gradient():
    with jax.enable_x64(True):
        apply, w, x, y = _model()
        ce = losses.resolve("cross_entropy")
        x_adv = np.asarray(adversarial.fgsm(apply, ce, jnp.asarray(x), jnp.asarray(y), 0.1))
    logits = x @ w + _model()[0](np.zeros((1, 5)))  # x w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(3)[y]) @ w.T  # d CE / d x, per example, by hand
    np.testing.assert_allclose(x_adv - x, 0.1 * np.sign(grad), atol=1e-12)
    np.testing.assert_allclose(np.abs(x_adv - x), 0.1, rtol=1e-12)  # every coordinate moves


def test_fgsm_loss_increase_at_small_epsilon_is_first_order_and_beats_other_signs():
    with jax.enable_x64(True):
        apply, _, x, y = _model(1)
        ce = losses.resolve("cross_entropy")
        x, y = jnp.asarray(x), jnp.asarray(y)
        eps = np.array([0.0, 1e-4, 1e-3])
        accuracy, loss = (np.asarray(v) for v in adversarial.fgsm_evaluate(apply, ce, x, y, eps))
        grad = np.asarray(jax.grad(lambda inputs: jnp.mean(ce(apply(inputs), y)))(x))
        rng = np.random.default_rng(0)
        signs = rng.choice([-1.0, 1.0], size=(20,) + x.shape)
        other = [float(jnp.mean(ce(apply(x + 1e-3 * s), y))) for s in signs]
        clean = float(jnp.mean(ce(apply(x), y)))
        clean_accuracy = float(jnp.mean(jnp.argmax(apply(x), -1) == y))
        acc_big = np.asarray(adversarial.fgsm_evaluate(apply, ce, x, y, jnp.array([0.0, 1.0]))[0])
    assert loss[0] == clean and accuracy[0] == clean_accuracy
    # first order: L(x + eps sign g) - L(x) = eps ||g||_1 (g of the mean loss), finite difference
    for e, value in zip(eps[1:], loss[1:], strict=True):
        np.testing.assert_allclose((value - clean) / e, np.sum(np.abs(grad)), rtol=2e-2)
    assert loss[2] > max(other)  # no random sign perturbation of the same size does better
    assert acc_big[1] < acc_big[0]

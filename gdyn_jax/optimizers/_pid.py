r"""PID optimizer of An et al. (CVPR 2018): proportional, integral and derivative terms."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from gdyn_jax.optimizers._checks import check_decay, check_learning_rate, check_range
from gdyn_jax.state_structure import register_bookkeeping

__all__ = ["PIDState", "pid", "scale_by_pid"]


class PIDState(NamedTuple):
    """State of :func:`scale_by_pid`: integral, derivative and the previous gradient."""

    integral: optax.Updates
    derivative: optax.Updates
    prev_grad: optax.Updates


register_bookkeeping(PIDState, ())


def scale_by_pid(
    beta: jax.typing.ArrayLike = 0.9,
    ki: jax.typing.ArrayLike = 5.0,
    kd: jax.typing.ArrayLike = 10.0,
) -> optax.GradientTransformation:
    r"""PID control of the gradient: output :math:`g + k_i I + k_d D` (see :func:`pid`).

    Where the state update differs from the authors' PyTorch code (``PIDOptimizer`` in
    github.com/tensorboy/PIDOptimizer, ``pid.py``):

    * first step: the code sets :math:`g_{\text{prev}} = g_1` on the first step, so
      :math:`D_1 = 0`. Here :math:`g_{\text{prev}}` starts at zero, so
      :math:`D_1 = (1-\beta) g_1`: the rule is the same at every step (a time-invariant
      system, whose transfer function from zero initial state is exactly what ``linearize``
      computes). The trajectories differ only by the extra first-step term
      :math:`a k_d (1-\beta) g_1` and its echo through :math:`D`;
    * derivative term: the code scales :math:`g - g_{\text{prev}}` by the learning rate
      rather than by :math:`1-\beta`, and never stores the new gradient in its
      ``grad_buffer`` (it rebinds a local name), so after the first step its
      :math:`g_{\text{prev}}` stays zero. We follow the rule of :func:`pid` (a derivative of
      the gradient), not these artefacts.
    """
    check_decay("beta", beta)
    check_range("ki", ki, 0.0)
    check_range("kd", kd, 0.0)

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return PIDState(zeros(), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        integral = jax.tree.map(
            lambda g, i: (beta * i + g).astype(i.dtype), updates, state.integral
        )
        derivative = jax.tree.map(
            lambda g, d, g_prev: (beta * d + (1.0 - beta) * (g - g_prev)).astype(d.dtype),
            updates,
            state.derivative,
            state.prev_grad,
        )
        out = jax.tree.map(lambda g, i, d: g + ki * i + kd * d, updates, integral, derivative)
        prev_grad = jax.tree.map(lambda g, p: g.astype(p.dtype), updates, state.prev_grad)
        return out, PIDState(integral, derivative, prev_grad)

    return optax.GradientTransformation(init_fn, update_fn)


def pid(
    learning_rate: optax.ScalarOrSchedule,
    beta: jax.typing.ArrayLike = 0.9,
    ki: jax.typing.ArrayLike = 5.0,
    kd: jax.typing.ArrayLike = 10.0,
) -> optax.GradientTransformationExtraArgs:
    r"""The PID optimizer of An et al. (CVPR 2018).

    The gradient is the error signal of a PID controller: the proportional term is the gradient
    itself, the integral term a leaky sum of past gradients (the heavy-ball velocity) and the
    derivative term an average of gradient changes.

    .. math::
      \begin{align*}
      I &\leftarrow \beta I + g \\
      D &\leftarrow \beta D + (1 - \beta)(g - g_{\text{prev}}) \\
      g_{\text{prev}} &\leftarrow g \\
      \theta &\leftarrow \theta - a\,(g + k_i I + k_d D)
      \end{align*}

    with :math:`I_0 = D_0 = g_{\text{prev},0} = 0`. State: :math:`I, D, g_{\text{prev}}` (12
    bytes per float32 parameter). With :math:`k_i = k_d = 0` it is :func:`sgd`; with
    :math:`k_d = 0` it is SGD plus :math:`k_i` times heavy-ball momentum.

    Relation to the authors' public PyTorch code (``PIDOptimizer`` in
    github.com/tensorboy/PIDOptimizer, ``pid.py``):

    * followed: the integral buffer :math:`I \leftarrow \beta I + g` (its ``momentum`` with
      zero dampening), the final step :math:`\theta \leftarrow \theta - a(g + k_i I + k_d D)`,
      and the default gains ``I=5.``, ``D=10.`` of its constructor (its MNIST script uses
      ``I=1, D=200, lr=0.01, momentum=0.9``);
    * differs: the state update, at the first step and in the derivative term (see
      :func:`scale_by_pid`);
    * not included: the code's ``weight_decay``, ``dampening`` and ``nesterov`` options (chain
      :func:`optax.add_decayed_weights` for weight decay); its default ``momentum=0`` (which
      turns the I and D terms off) is replaced by :math:`\beta = 0.9`.

    Args:
      learning_rate: :math:`a \ge 0`, a scalar (may be traced) or an optax schedule.
      beta: decay of the integral and derivative buffers, :math:`\beta \in [0, 1)`, default 0.9.
      ki: integral gain :math:`k_i \ge 0`, default 5.0.
      kd: derivative gain :math:`k_d \ge 0`, default 10.0.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    References:
      An et al., `A PID Controller Approach for Stochastic Optimization of Deep
      Networks <https://openaccess.thecvf.com/content_cvpr_2018/html/An_A_PID_Controller_CVPR_2018_paper.html>`_,
      CVPR 2018
    """  # noqa: E501
    check_learning_rate(learning_rate)
    check_decay("beta", beta)
    check_range("ki", ki, 0.0)
    check_range("kd", kd, 0.0)
    return optax.chain(scale_by_pid(beta, ki, kd), optax.scale_by_learning_rate(learning_rate))

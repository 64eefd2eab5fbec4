r"""LARS: layer-wise adaptive rate scaling, composed from optax primitives."""

from __future__ import annotations

from typing import Any

import jax
import optax

from gdyn_jax.optimizers._checks import check_decay, check_learning_rate, check_range

__all__ = ["lars"]


def lars(
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    trust_coefficient: jax.typing.ArrayLike = 0.001,
    eps: jax.typing.ArrayLike = 0.0,
    momentum: jax.typing.ArrayLike = 0.9,
    *,
    weight_decay_mask: Any = True,
    trust_ratio_mask: Any = True,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""LARS (You et al., 2017), as ``optax.lars``.

    Per parameter array (layer) :math:`\theta_l`:

    .. math::
      \begin{align*}
      u_l &= g_l + \lambda \theta_l \\
      u_l &\leftarrow \eta\, \frac{\|\theta_l\|}{\|u_l\| + \epsilon}\, u_l
        \quad (\text{1 where a norm is } 0) \\
      v &\leftarrow \mu v - a\, u \\
      \theta &\leftarrow \theta + v
      \end{align*}

    Composition as ``optax.lars``: ``add_decayed_weights``, masked
    ``scale_by_trust_ratio``, ``scale_by_learning_rate``, ``trace``. State: the
    momentum trace (4 bytes per float32 parameter).

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      weight_decay: :math:`\lambda \ge 0`, default 0.0 (scalar or schedule).
      trust_coefficient: :math:`\eta \ge 0`, default 0.001.
      eps: :math:`\epsilon \ge 0`, default 0.0.
      momentum: :math:`\mu \in [0, 1)`, default 0.9.
      weight_decay_mask: keyword-only, optax mask for the weight decay.
      trust_ratio_mask: keyword-only, optax mask for the trust ratio.
      nesterov: keyword-only, Nesterov form of the momentum trace.

    References:
      You et al., `Large Batch Training of Convolutional Networks
      <https://arxiv.org/abs/1708.03888>`_, 2017
    """
    check_learning_rate(learning_rate)
    check_range("weight_decay", weight_decay, 0.0, schedule=True)
    check_range("trust_coefficient", trust_coefficient, 0.0)
    check_range("eps", eps, 0.0)
    check_decay("momentum", momentum)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        optax.masked(
            optax.scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps),
            mask=trust_ratio_mask,
        ),
        optax.scale_by_learning_rate(learning_rate),
        optax.trace(decay=momentum, nesterov=nesterov),
    )

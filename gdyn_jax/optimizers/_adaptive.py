r"""Adaptive optimizers composed from optax primitives, with optax's arguments.

``adagrad``, ``rmsprop``, ``adadelta``, ``adam``, ``adamw`` and ``amsgrad`` take the
same argument names, defaults and meaning as the optax aliases of the same name,
and produce the same updates. Differences: numeric hyperparameters are the
positional-or-keyword arguments (checked when concrete); structural options
(dtypes, masks, flags, and rmsprop's optional ``momentum``) are keyword-only;
``learning_rate=None`` is refused, except by ``adadelta``, where it means a unit descent
step (optax's ``adadelta(None)`` ascends).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from gdyn_jax.optimizers._checks import check_decay, check_learning_rate, check_range

__all__ = ["adadelta", "adagrad", "adam", "adam_preconditioner", "adamw", "amsgrad", "rmsprop"]


def _check_eps(name: str, value: Any) -> None:
    check_range(name, value, 0.0, low_open=True)


def _check_adam(b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
    check_decay("b1", b1)
    check_decay("b2", b2)
    _check_eps("eps", eps)
    check_range("eps_root", eps_root, 0.0)


def adagrad(
    learning_rate: optax.ScalarOrSchedule,
    initial_accumulator_value: jax.typing.ArrayLike = 0.1,
    eps: jax.typing.ArrayLike = 1e-7,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaGrad: per-coordinate steps scaled by the root of the summed squared gradients.

    .. math::
      \begin{align*}
      s &\leftarrow s + g^2, \quad s_0 = s_{\text{init}} \\
      \theta &\leftarrow \theta - a\, \frac{g}{\sqrt{s + \epsilon}}
      \end{align*}

    Composition: ``scale_by_rss`` then ``scale_by_learning_rate`` (as
    ``optax.adagrad``). State: :math:`s` (4 bytes per float32 parameter).

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      initial_accumulator_value: :math:`s_{\text{init}} \ge 0`, default 0.1.
      eps: :math:`\epsilon > 0` inside the square root, default 1e-7.

    References:
      Duchi et al., `Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, 2011
    """
    check_learning_rate(learning_rate)
    check_range("initial_accumulator_value", initial_accumulator_value, 0.0)
    _check_eps("eps", eps)
    return optax.chain(
        optax.scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: optax.ScalarOrSchedule,
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    *,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: jax.typing.ArrayLike | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""RMSProp (optax's flexible variant), by default without momentum.

    .. math::
      \begin{align*}
      \nu &\leftarrow \rho \nu + (1 - \rho) g^2, \quad \nu_0 = \nu_{\text{init}} \\
      \theta &\leftarrow \theta - a\, \frac{g}{\sqrt{\nu + \epsilon}}
      \end{align*}

    ``centered`` subtracts the squared mean gradient from :math:`\nu`;
    ``eps_in_sqrt=False`` uses :math:`\sqrt{\nu} + \epsilon` (PyTorch);
    ``momentum`` adds ``optax.trace(momentum, nesterov)`` after the learning rate.
    Composition as ``optax.rmsprop``. State: :math:`\nu` (4 bytes per float32
    parameter; +4 centered, +4 with momentum).

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      decay: :math:`\rho \in [0, 1)`, default 0.9.
      eps: :math:`\epsilon > 0`, default 1e-8.
      initial_scale: :math:`\nu_{\text{init}} \ge 0`, default 0.0.
      eps_in_sqrt: keyword-only, whether eps goes inside the square root.
      centered: keyword-only, whether to use the gradient variance.
      momentum: keyword-only, ``None`` (no momentum, the default) or a trace
        decay in [0, 1) (may be traced).
      nesterov: keyword-only, Nesterov form of the momentum trace.
      bias_correction: keyword-only, whether to debias the moment estimates.

    References:
      Hinton, `Overview of mini-batch gradient descent
      <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_, 2012
    """
    check_learning_rate(learning_rate)
    check_decay("decay", decay)
    _check_eps("eps", eps)
    check_range("initial_scale", initial_scale, 0.0)
    if momentum is not None:
        check_decay("momentum", momentum)
    scale = optax.scale_by_stddev if centered else optax.scale_by_rms
    return optax.chain(
        scale(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        ),
        optax.scale_by_learning_rate(learning_rate),
        (optax.identity() if momentum is None else optax.trace(decay=momentum, nesterov=nesterov)),
    )


def adadelta(
    learning_rate: optax.ScalarOrSchedule | None = None,
    rho: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-6,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    *,
    weight_decay_mask: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaDelta: steps scaled by the ratio of RMS update to RMS gradient.

    .. math::
      \begin{align*}
      E[g^2] &\leftarrow \rho E[g^2] + (1 - \rho) g^2 \\
      \Delta &= \frac{\sqrt{E[\Delta^2] + \epsilon}}{\sqrt{E[g^2] + \epsilon}}\, g \\
      E[\Delta^2] &\leftarrow \rho E[\Delta^2] + (1 - \rho) \Delta^2 \\
      \theta &\leftarrow \theta - a\, \Delta
      \end{align*}

    (``weight_decay`` adds :math:`\lambda \theta` to :math:`g` first.)
    Composition as ``optax.adadelta``, except for ``learning_rate=None`` (the default): Zeiler's
    rule has no learning rate, and ``None`` here means a unit *descent* step, :math:`a = 1`,
    where ``optax.adadelta(None)`` leaves :math:`\Delta` unscaled and unsigned, so that its
    update :math:`+\Delta` ascends. State: :math:`E[g^2], E[\Delta^2]` (8 bytes per float32
    parameter).

    Args:
      learning_rate: :math:`a \ge 0`, or ``None`` (the default) for :math:`a = 1`.
      rho: :math:`\rho \in [0, 1)`, default 0.9.
      eps: :math:`\epsilon > 0`, default 1e-6.
      weight_decay: :math:`\lambda \ge 0`, default 0.0 (scalar or schedule).
      weight_decay_mask: keyword-only, optax mask for the weight decay.

    References:
      Zeiler, `ADADELTA: An Adaptive Learning Rate Method
      <https://arxiv.org/abs/1212.5701>`_, 2012
    """
    if learning_rate is None:
        learning_rate = 1.0  # Zeiler's unit step, as a descent step (see above)
    check_learning_rate(learning_rate)
    check_decay("rho", rho)
    _check_eps("eps", eps)
    check_range("weight_decay", weight_decay, 0.0, schedule=True)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        optax.scale_by_adadelta(rho=rho, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    *,
    mu_dtype: Any | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam.

    .. math::
      \begin{align*}
      m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
      v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
      \hat m &= m / (1 - \beta_1^t), \quad \hat v = v / (1 - \beta_2^t) \\
      \theta &\leftarrow \theta - a\, \frac{\hat m}{\sqrt{\hat v + \epsilon_{\text{root}}} + \epsilon}
      \end{align*}

    Composition: ``scale_by_adam`` then ``scale_by_learning_rate`` (as
    ``optax.adam``). State: :math:`m, v` (8 bytes per float32 parameter) and the
    step count :math:`t` (bookkeeping).

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      b1: :math:`\beta_1 \in [0, 1)`, default 0.9.
      b2: :math:`\beta_2 \in [0, 1)`, default 0.999.
      eps: :math:`\epsilon > 0`, default 1e-8.
      eps_root: :math:`\epsilon_{\text{root}} \ge 0`, default 0.0.
      mu_dtype: keyword-only, dtype of the first moment.
      nesterov: keyword-only, use Nesterov's form of the first moment (NAdam).

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015
    """  # noqa: E501
    check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps, eps_root)
    return optax.chain(
        optax.scale_by_adam(
            b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: optax.ScalarOrSchedule = 1e-4,
    *,
    mu_dtype: Any | None = None,
    mask: Any = None,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW: Adam with decoupled weight decay.

    .. math::
      \theta \leftarrow \theta - a \left(
        \frac{\hat m}{\sqrt{\hat v + \epsilon_{\text{root}}} + \epsilon} + \lambda \theta
      \right)

    with :math:`\hat m, \hat v` as in :func:`adam`. Composition as
    ``optax.adamw``: ``scale_by_adam``, ``add_decayed_weights``,
    ``scale_by_learning_rate``. State: 8 bytes per float32 parameter.

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      b1: :math:`\beta_1 \in [0, 1)`, default 0.9.
      b2: :math:`\beta_2 \in [0, 1)`, default 0.999.
      eps: :math:`\epsilon > 0`, default 1e-8.
      eps_root: :math:`\epsilon_{\text{root}} \ge 0`, default 0.0.
      weight_decay: :math:`\lambda \ge 0`, default 1e-4 (scalar or schedule).
      mu_dtype: keyword-only, dtype of the first moment.
      mask: keyword-only, optax mask for the weight decay.
      nesterov: keyword-only, Nesterov's form of the first moment.

    References:
      Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, 2019
    """
    check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps, eps_root)
    check_range("weight_decay", weight_decay, 0.0, schedule=True)
    return optax.chain(
        optax.scale_by_adam(
            b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
        ),
        optax.add_decayed_weights(weight_decay, mask),
        optax.scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    *,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> optax.GradientTransformationExtraArgs:
    r"""AMSGrad: Adam with a non-decreasing second-moment estimate.

    .. math::
      \begin{align*}
      m &\leftarrow \beta_1 m + (1 - \beta_1) g, \quad
      v \leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
      \hat m &= m / (1 - \beta_1^t), \quad \hat v = v / (1 - \beta_2^t), \quad
      v_{\max} \leftarrow \max(v_{\max}, \hat v) \\
      \theta &\leftarrow \theta - a\, \frac{\hat m}{\sqrt{v_{\max} + \epsilon_{\text{root}}} + \epsilon}
      \end{align*}

    Composition as ``optax.amsgrad``. State: :math:`m, v, v_{\max}` (12 bytes
    per float32 parameter).

    Args:
      learning_rate: :math:`a \ge 0`, scalar (may be traced) or schedule.
      b1: :math:`\beta_1 \in [0, 1)`, default 0.9.
      b2: :math:`\beta_2 \in [0, 1)`, default 0.999.
      eps: :math:`\epsilon > 0`, default 1e-8.
      eps_root: :math:`\epsilon_{\text{root}} \ge 0`, default 0.0.
      mu_dtype: keyword-only, dtype of the first moment.
      bias_correction_mu: keyword-only, debias :math:`m`.
      bias_correction_nu: keyword-only, debias :math:`v`.

    References:
      Reddi et al., `On the Convergence of Adam and Beyond
      <https://openreview.net/forum?id=ryQu7f-RZ>`_, 2018
    """  # noqa: E501
    check_learning_rate(learning_rate)
    _check_adam(b1, b2, eps, eps_root)
    return optax.chain(
        optax.scale_by_amsgrad(
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            mu_dtype=mu_dtype,
            bias_correction_mu=bias_correction_mu,
            bias_correction_nu=bias_correction_nu,
        ),
        optax.scale_by_learning_rate(learning_rate),
    )


def adam_preconditioner(
    state: optax.OptState,
    b2: jax.typing.ArrayLike,
    eps: jax.typing.ArrayLike,
    eps_root: jax.typing.ArrayLike = 0.0,
) -> optax.Updates:
    r"""Adam's preconditioner frozen at ``state``.

    .. math::
        P = \sqrt{\hat\nu + \epsilon_{\text{root}}} + \epsilon, \qquad
        \hat\nu = \nu / (1 - \beta_2^c).

    With :math:`\nu` and the count :math:`c` held (``linearize``'s ``freeze=('nu', 'count')``),
    Adam is heavy ball on the preconditioned loss: its step is :math:`-a\,P^{-1}\hat m`, and the
    loop is stable while :math:`\lambda_{\max}(P^{-1}H) < (2 + 2\beta_1)/(a(1-\beta_1))` (for
    a late count; Cohen et al. 2022). Reads the one ``optax.ScaleByAdamState`` in ``state``
    (Adam, AdamW, NAdam: :func:`adam`, :func:`adamw`, ``optax.adam``, ...); ``b2``, ``eps``,
    ``eps_root`` are the rule's. NaN where :math:`c = 0` (no second moment yet).

    Returns:
      A pytree shaped like the parameters.

    Raises:
      ValueError: ``state`` holds no ``ScaleByAdamState``, or more than one.

    References:
      Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl, Gilmer,
      "Adaptive gradient methods at the edge of stability", arXiv:2207.14484, 2022.
    """
    found = [
        leaf
        for leaf in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
        if isinstance(leaf, optax.ScaleByAdamState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"state: expected one Adam second moment (optax.ScaleByAdamState), found {len(found)}"
        )
    adam_state = found[0]
    correction = 1 - jnp.asarray(b2) ** adam_state.count
    return jax.tree.map(lambda nu: jnp.sqrt(nu / correction + eps_root) + eps, adam_state.nu)

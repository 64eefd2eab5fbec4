"""The optimizer registry: names, constructors, hyperparameters and state size."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.errors import UsageError
from gdyn_jax.optimizers._adaptive import adadelta, adagrad, adam, adamw, amsgrad, rmsprop
from gdyn_jax.optimizers._lars import lars
from gdyn_jax.optimizers._momentum import ema_momentum, momentum, nesterov, sgd
from gdyn_jax.optimizers._pid import pid
from gdyn_jax.optimizers._triple_momentum import triple_momentum
from gdyn_jax.optimizers.state import dynamic_state_mask

__all__ = ["get", "hyperparameters", "names", "state_bytes_per_param"]

_CONSTRUCTORS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": sgd,
    "momentum": momentum,
    "ema_momentum": ema_momentum,
    "nesterov": nesterov,
    "pid": pid,
    "triple_momentum": triple_momentum,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
    "adamw": adamw,
    "amsgrad": amsgrad,
    "lars": lars,
}

# A small float pytree whose leaves have different shapes, for measuring state.
_PROBE_SHAPES = ((3, 5), (7,), ())


def names() -> tuple[str, ...]:
    """The registered optimizer names, in a stable order."""
    return tuple(_CONSTRUCTORS)


def get(name: str) -> Callable[..., optax.GradientTransformation]:
    """The constructor registered under ``name``.

    Raises:
      UsageError: (a ValueError) naming ``optimizer`` when ``name`` is unknown.
    """
    try:
        return _CONSTRUCTORS[name]
    except (KeyError, TypeError):
        raise UsageError(
            f"optimizer: unknown optimizer {name!r}; expected one of {', '.join(names())}"
        ) from None


def hyperparameters(name: str) -> dict[str, float | None]:
    """Numeric hyperparameter names of ``name``'s constructor -> default value.

    These are the constructor's positional-or-keyword parameters (each may be a
    traced scalar); the default is ``None`` where the argument is required
    (``learning_rate``), or where optax's default is ``None`` (adadelta's
    ``learning_rate``: no scaling). Keyword-only structural options are excluded.
    """
    signature = inspect.signature(get(name))
    result: dict[str, float | None] = {}
    for param in signature.parameters.values():
        if param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        default = param.default
        result[param.name] = (
            None if default is inspect.Parameter.empty or default is None else float(default)
        )
    return result


def _build(name: str) -> optax.GradientTransformation:
    kwargs: dict[str, Any] = {
        key: (0.1 if value is None else value) for key, value in hyperparameters(name).items()
    }
    return get(name)(**kwargs)


def state_bytes_per_param(
    name_or_opt: str | optax.GradientTransformation, dtype: Any = jnp.float32
) -> float:
    """Bytes of dynamic optimizer state per parameter.

    Measured from a real ``init`` (traced with :func:`jax.eval_shape`, nothing
    allocated) on a small pytree of ``dtype`` leaves; only leaves that
    :func:`dynamic_state_mask` marks dynamic count, so step counts and injected
    hyperparameters are excluded. SGD 0, momentum 4, Adam 8 in float32.

    Args:
      name_or_opt: a registered name (built with its defaults, learning rate
        0.1) or any optax ``GradientTransformation``.
      dtype: the parameters' dtype.
    """
    opt = _build(name_or_opt) if isinstance(name_or_opt, str) else name_or_opt
    params = {f"p{i}": jax.ShapeDtypeStruct(shape, dtype) for i, shape in enumerate(_PROBE_SHAPES)}
    num_params = sum(int(np.prod(shape)) for shape in _PROBE_SHAPES)
    state = jax.eval_shape(opt.init, params)
    mask = dynamic_state_mask(state)
    total = sum(
        int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
        for leaf, dynamic in zip(jax.tree.leaves(state), jax.tree.leaves(mask), strict=True)
        if dynamic
    )
    return total / num_params

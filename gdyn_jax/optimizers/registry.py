"""The optimizer registry: names, constructors, hyperparameters and state size.

Anything that returns an ``optax.GradientTransformation`` is an optimizer here: a registered
name, an import path ``"pkg.module:factory"`` or the factory itself. :func:`register` adds a
name for a user's factory (for this process); :func:`hyperparameters` reads the sweepable
numeric hyperparameters off any factory's signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import imports
from gdyn_jax.errors import UsageError
from gdyn_jax.optimizers._adaptive import adadelta, adagrad, adam, adamw, amsgrad, rmsprop
from gdyn_jax.optimizers._lars import lars
from gdyn_jax.optimizers._lookahead import lookahead_sgd
from gdyn_jax.optimizers._momentum import ema_momentum, momentum, nesterov, sgd
from gdyn_jax.optimizers._pid import pid
from gdyn_jax.optimizers._robust_momentum import robust_momentum
from gdyn_jax.optimizers._triple_momentum import triple_momentum
from gdyn_jax.state_structure import dynamic_state_mask

__all__ = [
    "get",
    "hyperparameters",
    "names",
    "register",
    "required_hyperparameters",
    "state_bytes_per_param",
]

Factory = Callable[..., optax.GradientTransformation]

_CONSTRUCTORS: dict[str, Factory] = {
    "sgd": sgd,
    "momentum": momentum,
    "ema_momentum": ema_momentum,
    "nesterov": nesterov,
    "pid": pid,
    "triple_momentum": triple_momentum,
    "robust_momentum": robust_momentum,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
    "adamw": adamw,
    "amsgrad": amsgrad,
    "lars": lars,
    "lookahead_sgd": lookahead_sgd,
}

# A small float pytree whose leaves have different shapes, for measuring state.
_PROBE_SHAPES = ((3, 5), (7,), ())


def names() -> tuple[str, ...]:
    """The registered optimizer names, in a stable order (built-ins first)."""
    return tuple(_CONSTRUCTORS)


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Registers ``factory`` under ``name`` for this process (``get(name)`` returns it).

    ``factory`` is any callable returning an ``optax.GradientTransformation``; its numeric
    keyword arguments are the hyperparameters a sweep may set (:func:`hyperparameters`).
    Registering a taken name raises ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UsageError(f"name: expected an identifier such as 'qhm', got {name!r}")
    if not callable(factory):
        raise UsageError(f"factory: expected a callable returning a transform, got {factory!r}")
    if name in _CONSTRUCTORS and not overwrite and _CONSTRUCTORS[name] is not factory:
        raise UsageError(f"name: optimizer {name!r} is already registered; pass overwrite=True")
    _CONSTRUCTORS[name] = factory


def get(name: str | Factory) -> Factory:
    """The constructor for ``name``: a registered name, an import path, or a factory itself.

    Raises:
      UsageError: (a ValueError) naming ``optimizer`` when ``name`` is unknown, cannot be
        imported, or is not callable.
    """
    return imports.resolve(name, "optimizer", _CONSTRUCTORS, "pkg.module:factory")


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _numeric_parameters(factory: Factory) -> list[inspect.Parameter]:
    """The positional-or-keyword parameters, and the keyword-only ones with a real default."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        raise UsageError(f"optimizer: cannot read the signature of {factory!r}") from None
    return [
        p
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        or (p.kind is inspect.Parameter.KEYWORD_ONLY and _is_real(p.default))
    ]


def hyperparameters(name_or_factory: str | Factory) -> dict[str, float | None]:
    """Numeric hyperparameter names of a registered optimizer or any factory -> default value.

    Read from the constructor's signature (a name, an import path or the factory itself): its
    positional-or-keyword parameters (each may be a traced scalar), plus keyword-only ones
    whose default is a real number (not a bool). The default is ``None`` where the argument
    is required (``learning_rate``) or where it is not a real number (adadelta's
    ``learning_rate=None``: a unit step).

    Raises:
      UsageError: (a ValueError) naming ``optimizer`` when a name is unknown or the argument
        is neither a name, a path nor a callable.
    """
    return {
        p.name: float(p.default) if _is_real(p.default) else None
        for p in _numeric_parameters(get(name_or_factory))
    }


def required_hyperparameters(name_or_factory: str | Factory) -> tuple[str, ...]:
    """The hyperparameters without a default, which every call must give."""
    return tuple(
        p.name
        for p in _numeric_parameters(get(name_or_factory))
        if p.default is inspect.Parameter.empty
    )


def _build(name: str) -> optax.GradientTransformation:
    required = required_hyperparameters(name)
    return get(name)(**{key: 1.0 if key == "L" else 0.1 for key in required})  # L > mu


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

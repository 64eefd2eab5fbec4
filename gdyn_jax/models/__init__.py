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

Bring your own: :func:`register` names a user's ``nn.Module`` instance or module factory (a
Module class or a function returning a module) for this process, and :func:`get` also takes
an import path ``"pkg.module:Net"`` or a module instance itself.

The MNIST-1D models use PyTorch's default initialisation, as the reference code did
(``gdyn_jax.models._layers``); ``cnn2d`` and ``resnet`` use flax/Kaiming initialisers.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from gdyn_jax import imports
from gdyn_jax.errors import UsageError
from gdyn_jax.models.fully_connected import FullyConnected
from gdyn_jax.models.images import CNN2D, ResNet
from gdyn_jax.models.mnist1d import CNN1D, GRU, MLP, Logistic

ModuleOrFactory = nn.Module | Callable[..., nn.Module]

_MODELS: dict[str, ModuleOrFactory] = {
    "logistic": Logistic,
    "mlp": MLP,
    "cnn1d": CNN1D,
    "gru": GRU,
    "fc": FullyConnected,
    "cnn2d": CNN2D,
    "resnet": ResNet,
}


def names() -> tuple[str, ...]:
    """The model names :func:`get` accepts (built-ins first, then registered ones)."""
    return tuple(_MODELS)


def register(name: str, module_or_factory: ModuleOrFactory, *, overwrite: bool = False) -> None:
    """Registers a model under ``name`` for this process (``get(name)`` builds it).

    ``module_or_factory`` is a ``flax.linen.Module`` instance (returned as it is, or cloned
    with ``get``'s keyword arguments as new field values), or a Module class or function
    that returns one (called with ``get``'s keyword arguments, and ``num_classes`` when it
    takes that argument). Registering a taken name raises ``ValueError`` unless
    ``overwrite=True``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier such as 'net', got {name!r}")
    if not (isinstance(module_or_factory, nn.Module) or callable(module_or_factory)):
        raise ValueError(
            f"module_or_factory: expected a flax.linen.Module or a callable returning one, "
            f"got {module_or_factory!r}"
        )
    if name in _MODELS and not overwrite and _MODELS[name] is not module_or_factory:
        raise ValueError(f"name: model {name!r} is already registered; pass overwrite=True")
    _MODELS[name] = module_or_factory


def lookup(name: str | ModuleOrFactory) -> ModuleOrFactory:
    """The registered entry for a name, the object at an import path, or ``name`` itself.

    Nothing is built; a one-line ``ValueError`` naming ``model`` for an unknown name or a
    path that cannot be imported.
    """
    if isinstance(name, nn.Module):
        return name
    return imports.resolve(name, "model", _MODELS, "pkg.module:Net")


def _field_names(cls: type) -> set[str] | None:
    fields = getattr(cls, "__dataclass_fields__", None)
    return None if fields is None else set(fields) - {"parent", "name"}


def _check_kwargs(name: Any, accepted: set[str] | None, kwargs: dict[str, Any]) -> None:
    if accepted is None:
        return
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"{key}: not an argument of model {name!r} (expected one of "
                f"{', '.join(sorted(accepted - {'num_classes'}))})"
            )


def _accepts_num_classes(factory: Callable[..., Any]) -> bool:
    fields = _field_names(factory) if isinstance(factory, type) else None
    if fields is not None:
        return "num_classes" in fields
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "num_classes" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_tuple(value: Any) -> Any:
    """A list or tuple of sizes as a tuple (JSON gives lists), integers as Python ints; any
    other value as it is, for the module's own check to refuse."""
    if not isinstance(value, list | tuple):
        return value
    return tuple(
        int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v for v in value
    )


def _check_callable_as_factory(name: Any, factory: Callable[..., Any], kwargs: dict) -> None:
    """A one-line error when ``factory`` cannot be called with ``kwargs`` alone: a plain
    function of inputs such as ``f(x)`` passed as a model (not a module factory), or a
    Module class with a field that has no default and is not given."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: let the call decide
        return
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        label = name if isinstance(name, str) else imports.path_of(factory)
        given = ", ".join(f"{k}=" for k in kwargs) or "no arguments"
        raise UsageError(
            f"model: {label!r} cannot be called with {given} ({error}); expected a "
            "flax.linen.Module instance or class, or a function of keyword arguments "
            "returning one (e.g. 'def net(num_classes): return Net(num_classes)')"
        ) from None


def get(name: str | ModuleOrFactory, num_classes: int = 10, **kwargs: Any) -> nn.Module:
    """The model ``name`` with ``num_classes`` outputs; ``kwargs`` are its module fields.

    ``name`` is a registered name, an import path ``"pkg.module:attr"``, a module instance
    or a module factory. An instance is returned as it is (``kwargs`` replace its fields
    through ``clone``; ``num_classes`` is not applied to it); a factory is called with
    ``kwargs``, plus ``num_classes`` when it takes that argument and ``kwargs`` do not set it.

    Raises ``ValueError`` (``UsageError``) naming ``model`` for an unknown name, a path that
    cannot be imported or a callable that cannot be called with keyword arguments alone (a
    plain function of inputs is not a model), ``num_classes`` if it is not a positive
    integer, the bad keyword for an unknown keyword argument of a Module class, and the
    field for a size out of range (the built-in modules check their fields when they are
    constructed, e.g. ``hidden_size: expected an integer >= 1 for MLP, got -5``).
    """
    entry = lookup(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes: expected a positive integer, got {num_classes!r}")
    for key in ("widths", "input_shape"):
        if key in kwargs:
            kwargs[key] = _as_tuple(kwargs[key])
    if isinstance(entry, nn.Module):
        _check_kwargs(name, _field_names(type(entry)), kwargs)
        return entry.clone(**kwargs) if kwargs else entry
    fields = _field_names(entry) if isinstance(entry, type) else None
    _check_kwargs(name, fields, kwargs)
    if "num_classes" not in kwargs and _accepts_num_classes(entry):
        kwargs["num_classes"] = num_classes
    _check_callable_as_factory(name, entry, kwargs)
    model = entry(**kwargs)
    if not isinstance(model, nn.Module):
        raise UsageError(f"model: {name!r} returned {type(model).__name__}, not a flax Module")
    return model


__all__ = [
    "CNN1D",
    "CNN2D",
    "GRU",
    "MLP",
    "FullyConnected",
    "Logistic",
    "ResNet",
    "get",
    "lookup",
    "names",
    "register",
]

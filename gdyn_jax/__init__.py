"""gdyn_jax: the learning dynamics of gradient-descent optimizers, seen as control systems.

The package is built in layers; a module imports only from its own layer and those below it
(``tests/test_layers.py`` holds the rule, ``docs/architecture.md`` explains it)::

    cli, commands     the ``gdyn`` command line              may import everything
    plotting          matplotlib figures                     everything below
    predictions       a rule's analysis beside measurements  everything below
    sweep             many networks in one jit + vmap        measurements and below, not linearize
    measurements      Hessian, kicks, noise, FGSM, curves    data, models, optimizers, foundation
    data | models     tfds loaders | Flax networks           foundation
    linearize         exact analysis on quadratics           optimizers, foundation
    optimizers        the update rules (optax-style)         foundation
    foundation        errors, extras, files, imports,        nothing of gdyn_jax
                      _deprecated, state_structure

(The experiments, outside the package, sit on top.) Subpackages are imported on first use:
``import gdyn_jax`` imports none of them, ``gdyn_jax.linearize`` imports linearize then,
through this module's ``__getattr__``, and ``from gdyn_jax import linearize`` works as usual.
Deferred imports have this one mechanism (PEP 562): heavy or optional third-party modules come
the same way from :mod:`gdyn_jax.extras`, never from an import inside a function.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = (
    "errors",
    "extras",
    "files",
    "imports",
    "state_structure",
    "optimizers",
    "linearize",
    "data",
    "models",
    "measurements",
    "sweep",
    "predictions",
    "plotting",
    "cli",
    "commands",
)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"gdyn_jax.{name}")
    raise AttributeError(f"module 'gdyn_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_SUBMODULES, "__version__"])

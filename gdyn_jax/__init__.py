"""gdyn_jax: the learning dynamics of gradient-descent optimizers, seen as control systems.

Subpackages are imported on first use (``import gdyn_jax`` is cheap; ``gdyn_jax.linearize``
imports linearize then, through this module's ``__getattr__``; ``from gdyn_jax import
linearize`` works as usual).

- ``gdyn_jax.optimizers``: optax-style (init, update) transforms and their registry.
- ``gdyn_jax.linearize``: exact z-domain transfer functions of update rules on quadratics.
- ``gdyn_jax.data`` and ``gdyn_jax.models``: tensorflow-datasets loaders and Flax models.
- ``gdyn_jax.sweep``: many models trained in one jit + vmap program.
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
    "optimizers",
    "linearize",
    "data",
    "models",
    "sweep",
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

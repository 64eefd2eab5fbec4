"""Heavy or optional third-party modules, imported on first attribute access (PEP 562).

This is the package's one mechanism for deferred imports: a module that needs, say, cvxpy
writes ``from gdyn_jax import extras`` at its top and ``extras.cvxpy`` where it uses it, so
``import gdyn_jax.linearize`` stays cheap and a missing optional dependency is reported, when
it is first needed, as a one-line :class:`~gdyn_jax.errors.MissingExtraError` naming the extra
to install. The package's own subpackages are deferred the same way through
``gdyn_jax.__getattr__`` (``import gdyn_jax`` then ``gdyn_jax.linearize``).

>>> from gdyn_jax import extras
>>> extras.scipy_linalg.solve_discrete_lyapunov.__name__
'solve_discrete_lyapunov'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gdyn_jax.errors import MissingExtraError

__all__ = ["MODULES"]

#: attribute -> (module imported, extra that provides it or None for a core dependency).
MODULES: dict[str, tuple[str, str | None]] = {
    "cm": ("matplotlib.cm", None),
    "colors": ("matplotlib.colors", None),
    "control": ("control", "control"),
    "cvxpy": ("cvxpy", "robust"),
    "experiments": ("experiments", None),  # the repository's experiments (gdyn reproduce, list)
    "fcntl": ("fcntl", None),
    "figure": ("matplotlib.figure", None),
    "flax": ("flax", None),
    "linen": ("flax.linen", None),
    "mnist1d_data": ("mnist1d.data", None),
    "multihost_utils": ("jax.experimental.multihost_utils", None),
    "scipy_linalg": ("scipy.linalg", None),
    "scipy_signal": ("scipy.signal", None),
    "tfds": ("tensorflow_datasets", None),
    "tqdm": ("tqdm.auto", None),
    "xarray": ("xarray", None),
}


def __getattr__(name: str) -> ModuleType:
    try:
        module, extra = MODULES[name]
    except KeyError:
        raise AttributeError(f"module 'gdyn_jax.extras' has no attribute {name!r}") from None
    try:
        return importlib.import_module(module)
    except ImportError as err:
        if extra is None:
            raise
        raise MissingExtraError(
            f'{module} is missing: install the [{extra}] extra (pip install -e ".[{extra}]")'
        ) from err


def __dir__() -> list[str]:
    return sorted([*MODULES, "MODULES"])

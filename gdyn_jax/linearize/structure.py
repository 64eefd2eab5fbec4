"""Deprecated: moved to :mod:`gdyn_jax.state_structure` (kept for one release).

The jaxpr analysis now lives in :mod:`gdyn_jax.state_structure.interpret` (``Abstract``,
``Interpretation``, ``join``, ``CONST``/``AFFINE``/``NONAFFINE``) and
:mod:`gdyn_jax.state_structure.roles` (``RuleStructure``, ``analyse``, ``trace_update``).
"""

from typing import Any

from gdyn_jax._deprecated import forwarder

_OLD = "gdyn_jax.linearize.structure"
_ROLES = forwarder(_OLD, "gdyn_jax.state_structure.roles")
_INTERPRET = forwarder(_OLD, "gdyn_jax.state_structure.interpret")


def __getattr__(name: str) -> Any:
    return (_ROLES if name in ("RuleStructure", "analyse", "trace_update") else _INTERPRET)(name)

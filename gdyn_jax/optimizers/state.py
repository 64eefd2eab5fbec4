"""Deprecated: moved to :mod:`gdyn_jax.state_structure` (kept for one release).

The mask and the registration stay importable from :mod:`gdyn_jax.optimizers`.
"""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder("gdyn_jax.optimizers.state", "gdyn_jax.state_structure")

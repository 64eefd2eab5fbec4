"""Deprecated: moved to :mod:`gdyn_jax.measurements.adversarial` (kept for one release)."""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder("gdyn_jax.adversarial", "gdyn_jax.measurements.adversarial")

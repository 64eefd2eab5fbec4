"""Deprecated: moved to :mod:`gdyn_jax.measurements.hessian` (kept for one release)."""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder("gdyn_jax.hessian", "gdyn_jax.measurements.hessian")

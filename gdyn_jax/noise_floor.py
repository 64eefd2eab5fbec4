"""Deprecated: moved to :mod:`gdyn_jax.measurements.noise` (the measured noise) and
:mod:`gdyn_jax.predictions.noise_floor` (the floor test); kept for one release."""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder(
    "gdyn_jax.noise_floor", "gdyn_jax.measurements.noise", "gdyn_jax.predictions.noise_floor"
)

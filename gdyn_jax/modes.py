"""Deprecated: moved to :mod:`gdyn_jax.measurements.modes` (the measured kicks) and
:mod:`gdyn_jax.predictions.modes` (the predicted ones, the regimes); kept for one release."""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder(
    "gdyn_jax.modes", "gdyn_jax.measurements.modes", "gdyn_jax.predictions.modes"
)

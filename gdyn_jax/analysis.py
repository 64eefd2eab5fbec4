"""Deprecated: moved to :mod:`gdyn_jax.measurements.curves` (the statistics of training curves)
and :mod:`gdyn_jax.predictions.spectral` (``quadratic_model_loss``); kept for one release."""

from gdyn_jax._deprecated import forwarder

__getattr__ = forwarder(
    "gdyn_jax.analysis", "gdyn_jax.measurements.curves", "gdyn_jax.predictions.spectral"
)

"""Measurements of a real network: curvature (Hessian-vector products, Lanczos), sharpness.

The network side of the library: it imports the rules (``optimizers``), data and models, never
the exact analysis (``linearize``); predictions join the two.
"""

from gdyn_jax.measurements.hessian import (
    METHODS,
    hvp,
    spectral_measure,
    top_eigenpairs,
    top_eigenvalue,
)

__all__ = ["METHODS", "hvp", "spectral_measure", "top_eigenpairs", "top_eigenvalue"]

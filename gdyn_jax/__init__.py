"""gdyn_jax: the learning dynamics of gradient-descent optimizers, seen as control systems.

Subpackages (import them explicitly; nothing heavy is imported here):

- ``gdyn_jax.optimizers``: optax-style (init, update) transforms and their registry.
- ``gdyn_jax.linearize``: exact z-domain transfer functions of update rules on quadratics.
- ``gdyn_jax.data`` and ``gdyn_jax.models``: tensorflow-datasets loaders and Flax models.
- ``gdyn_jax.sweep``: many models trained in one jit + vmap program.
"""

__version__ = "0.1.0"

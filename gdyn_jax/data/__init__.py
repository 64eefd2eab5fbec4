"""Datasets as whole in-memory arrays, read through tensorflow-datasets without TensorFlow.

- :func:`load` ``(name, split, data_dir=None) -> (x float32 (N, features), y int32 (N,))``;
- :func:`names`, :func:`info`, :func:`default_data_dir`;
- :func:`prepare_mnist1d`: the offline MNIST-1D builder (the default dataset);
- :func:`symmetric_label_noise`: a seeded, exact fraction of labels moved to other classes.

See ``gdyn_jax.data.loading`` for normalisation and the network policy.
"""

from gdyn_jax.data.catalogue import DEFAULT_DATASET, default_data_dir, info, names
from gdyn_jax.data.loading import load, prepare_mnist1d
from gdyn_jax.data.noise import symmetric_label_noise

__all__ = [
    "DEFAULT_DATASET",
    "default_data_dir",
    "info",
    "load",
    "names",
    "prepare_mnist1d",
    "symmetric_label_noise",
]

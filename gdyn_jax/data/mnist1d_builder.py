r"""A tensorflow-datasets builder for MNIST-1D that generates the data offline.

MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024;
https://github.com/greydanus/mnist1d) is a procedurally generated 1-D analogue of MNIST:
10 template signals, each padded, dilated, scaled, translated, given correlated and iid noise,
sheared and resampled to 40 points. The ``mnist1d`` package's ``make_dataset`` builds it from a
fixed seed without any network access (its ``get_dataset`` may download a pickle; we never call
it). With ``get_dataset_args()`` defaults: 5000 examples, the first 80 % (4000) train and the
last 1000 test, length 40, seed 42.

The builder stores ``x`` as a float32 ``Tensor`` of shape (40,) and ``y`` as a ``ClassLabel``,
in the array_record file format (random access, no TensorFlow needed), with shuffling disabled
so the examples keep ``make_dataset``'s order. Its ``DatasetInfo`` is built in code: no
metadata files ship with it. The class, ``Mnist1d``, is defined on first access (this module's
``__getattr__``), so importing the module does not import tfds; defining the class registers it
with tfds as ``mnist1d``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from typing import Any

import numpy as np

from gdyn_jax import extras

_CITATION = """@inproceedings{greydanus2024scaling,
  title={Scaling down deep learning with {MNIST-1D}},
  author={Greydanus, Sam and Kobak, Dmitry},
  booktitle={International Conference on Machine Learning},
  year={2024}
}"""


def generate() -> dict[str, np.ndarray]:
    """MNIST-1D from ``mnist1d.make_dataset`` with its default arguments.

    ``make_dataset`` reseeds numpy's and Python's global random generators; their states are
    saved and restored around the call so that generating the data has no side effects.
    Returns the dict ``make_dataset`` returns (``x``, ``y``, ``x_test``, ``y_test``, ...).
    """
    mnist1d_data = extras.mnist1d_data
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        return mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def __getattr__(name: str) -> Any:
    if name == "Mnist1d":
        return _builder_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _builder_class() -> type:
    """The tfds builder class ``Mnist1d``, defined (and registered with tfds) once."""
    tfds = extras.tfds

    class Mnist1d(tfds.core.GeneratorBasedBuilder):
        """MNIST-1D, generated offline by ``mnist1d.make_dataset`` (default arguments)."""

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {
            "1.0.0": "mnist1d.make_dataset(get_dataset_args()): 4000 train, 1000 test."
        }

        def _info(self) -> tfds.core.DatasetInfo:
            return tfds.core.DatasetInfo(
                builder=self,
                description=__doc__,
                features=tfds.features.FeaturesDict(
                    {
                        "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
                        "y": tfds.features.ClassLabel(num_classes=10),
                    }
                ),
                supervised_keys=("x", "y"),
                disable_shuffling=True,
                homepage="https://github.com/greydanus/mnist1d",
                citation=_CITATION,
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
            del dl_manager  # nothing to download
            data = generate()
            return {
                "train": self._generate_examples(data["x"], data["y"]),
                "test": self._generate_examples(data["x_test"], data["y_test"]),
            }

        def _generate_examples(self, xs: np.ndarray, ys: np.ndarray) -> Iterator:
            for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
                yield i, {"x": np.asarray(x, np.float32), "y": int(y)}

    return Mnist1d

"""The data a sweep trains on: a dataset name or the user's own arrays, loaded once.

``Arrays(x_train, y_train, x_test, y_test)`` holds in-memory data of any kind: inputs of
any shape, targets of any dtype and shape (class labels, regression targets, ...). A
dataset name (``gdyn_jax.data.names()``) is loaded into the same form, with float32 inputs
and int32 labels. ``device_arrays`` lays an ``Arrays`` out for the training program: the
training set whole, and each evaluation set in zero-weighted padded chunks.

Accuracy is recorded where it means something: the targets are integer class labels (an
integer dtype and shape ``(N,)``) and the model gives one score per class (outputs of shape
``(batch, classes)``); it is the fraction of examples whose output's argmax is the label.
Other targets (regression, sequences, ...) get losses only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax import data as datasets
from gdyn_jax import imports


def _host_array(name: str, value: Any) -> np.ndarray:
    try:
        x = np.asarray(value)
    except Exception:  # anything numpy cannot hold
        raise ValueError(f"{name}: expected an array, got {type(value).__name__}") from None
    if x.dtype == object or x.ndim == 0 or len(x) == 0:
        raise ValueError(f"{name}: expected a non-empty numeric array, got {x.dtype} {x.shape}")
    # 64-bit types would be narrowed by jax (without x64) anyway; do it here, once.
    if x.dtype == np.float64:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer) and x.dtype.itemsize == 8:
        return x.astype(np.int32)
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class Arrays:
    """A dataset in memory: training and test inputs and targets.

    Attributes:
      x_train, y_train, x_test, y_test: arrays with one example per leading index; the
        inputs of both splits share their trailing shape, and so do the targets. float64
        becomes float32 and int64 int32 (as JAX would without x64).
      num_outputs: the width a *named* model gets (its ``num_classes``); default: the number
        of classes (largest label + 1) for class labels, else the targets' trailing size.
      name: a label for the results record (default: the arrays' content hash).

    Two ``Arrays`` are equal only if they are the same object; the results record them by
    name, shapes, dtypes and a SHA-256 of their contents.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_outputs: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        for field in ("x_train", "y_train", "x_test", "y_test"):
            object.__setattr__(self, field, _host_array(field, getattr(self, field)))
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(
                    f"y_{split}: expected {len(x)} targets (one per row of x_{split}), got {len(y)}"
                )
        for a, b in (("x_train", "x_test"), ("y_train", "y_test")):
            sa, sb = getattr(self, a).shape[1:], getattr(self, b).shape[1:]
            if sa != sb:
                raise ValueError(f"{b}: expected examples of shape {sa} as in {a}, got {sb}")
        if self.num_outputs is not None and (
            isinstance(self.num_outputs, bool)
            or not isinstance(self.num_outputs, int)
            or self.num_outputs < 1
        ):
            raise ValueError(f"num_outputs: expected a positive integer, got {self.num_outputs!r}")

    @property
    def class_labels(self) -> bool:
        """Whether the targets are integer class labels of shape (N,) (accuracy applies)."""
        return self.y_train.ndim == 1 and np.issubdtype(self.y_train.dtype, np.integer)

    @property
    def outputs(self) -> int:
        """``num_outputs``, or the default described above."""
        if self.num_outputs is not None:
            return self.num_outputs
        if self.class_labels:
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return int(np.prod(self.y_train.shape[1:], dtype=np.int64))

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 of the four arrays' shapes, dtypes and bytes."""
        digest = hashlib.sha256()
        for x in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(f"{x.dtype.str}{x.shape}".encode())
            digest.update(np.ascontiguousarray(x).tobytes())
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """A JSON-able description of the arrays for the results."""
        return {
            "arrays": self.name or "in-memory",
            "sha256": self.sha256,
            "shapes": {
                k: [str(getattr(self, k).dtype), list(getattr(self, k).shape)]
                for k in ("x_train", "y_train", "x_test", "y_test")
            },
        }

    def first(self, n: int) -> Arrays:
        """The same data with only the first ``n`` training examples."""
        return dataclasses.replace(self, x_train=self.x_train[:n], y_train=self.y_train[:n])


def load_named(name: str, data_dir: str | None) -> Arrays:
    """A ``gdyn_jax.data`` dataset as ``Arrays`` (float32 inputs, int32 labels)."""
    x_train, y_train = datasets.load(name, "train", data_dir)
    x_test, y_test = datasets.load(name, "test", data_dir)
    return Arrays(
        np.asarray(x_train, np.float32),
        np.asarray(y_train, np.int32),
        np.asarray(x_test, np.float32),
        np.asarray(y_test, np.int32),
        num_outputs=int(datasets.info(name)["num_classes"]),
        name=name,
    )


def resolve(dataset: str | Arrays | dict, data_dir: str | None) -> Arrays:
    """The ``Arrays`` for a config's ``dataset``: a name, an import path, or ``Arrays``.

    An import path may name an ``Arrays`` or a function of no arguments returning one.
    """
    if isinstance(dataset, Arrays):
        return dataset
    if isinstance(dataset, dict):
        raise ValueError(
            f"dataset: the config records in-memory arrays ({json.dumps(dataset)[:80]}...); "
            "pass the arrays themselves as gdyn_jax.sweep.Arrays"
        )
    if imports.is_import_path(dataset):
        obj = imports.load(dataset, "dataset")
        if callable(obj) and not isinstance(obj, Arrays):
            obj = obj()
        if not isinstance(obj, Arrays):
            raise ValueError(
                f"dataset: {dataset!r} gave {type(obj).__name__}, expected gdyn_jax.sweep.Arrays"
            )
        return obj
    return load_named(dataset, data_dir)


def check_name(dataset: Any) -> None:
    """A one-line ``ValueError`` naming ``dataset`` unless it can be resolved (nothing loaded)."""
    if isinstance(dataset, Arrays | dict) or imports.is_import_path(dataset):
        return
    if dataset not in datasets.names():
        raise ValueError(
            f"dataset: unknown dataset {dataset!r}; known: {', '.join(datasets.names())}, or "
            "gdyn_jax.sweep.Arrays, or an import path 'pkg.module:arrays'"
        )


# ---------------------------------------------------------------------------------------------
# On the device
# ---------------------------------------------------------------------------------------------


class EvalChunks(NamedTuple):
    """An evaluation set padded to whole chunks: (chunks, size, ...) inputs, targets, weights."""

    x: jax.Array
    y: jax.Array
    w: jax.Array


class DeviceData(NamedTuple):
    """The arrays the training program reads (``x_sharp``/``y_sharp`` None when unused)."""

    x_train: jax.Array
    y_train: jax.Array
    eval_train: EvalChunks
    eval_test: EvalChunks
    x_sharp: jax.Array | None
    y_sharp: jax.Array | None


def chunked(x: np.ndarray, y: np.ndarray, size: int) -> EvalChunks:
    """Pads (x, y) to a multiple of ``size`` and reshapes to (chunks, size, ...) + weights."""
    n = len(x)
    size = min(size, n)
    k = math.ceil(n / size)
    pad = k * size - n
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
    return EvalChunks(
        x.reshape((k, size) + x.shape[1:]), y.reshape((k, size) + y.shape[1:]), w.reshape(k, size)
    )


def device_arrays(arrays: Arrays, eval_batch_size: int, sharpness_subset: int | None) -> DeviceData:
    """The training set, chunked evaluation sets and sharpness subset, as device arrays."""
    sharp = None if sharpness_subset is None else min(sharpness_subset, len(arrays.x_train))
    out = DeviceData(
        arrays.x_train,
        arrays.y_train,
        chunked(arrays.x_train, arrays.y_train, eval_batch_size),
        chunked(arrays.x_test, arrays.y_test, eval_batch_size),
        None if sharp is None else arrays.x_train[:sharp],
        None if sharp is None else arrays.y_train[:sharp],
    )
    return jax.tree.map(jnp.asarray, out)

r"""Does the task make sense? Data, model and loss checked together before any training.

``check_task(dataset, model, loss)`` decides, before anything is trained or the training
program compiled, whether the three fit; each misfit is a one-line ``UsageError`` (a
``ValueError``; the ``gdyn`` command exits 2) that names the dataset, model or loss and the
numbers, never a run reported as "diverged":

1. the model is a ``flax.linen.Module`` (a plain function of inputs is refused, with what is
   accepted: see ``gdyn_jax.models.get``);
2. the targets: the named losses need integer class labels of shape ``(N,)``, and both
   splits hold targets of one kind (integer, float, bool);
3. a scan of the arrays: every float input and target finite in both splits (the float64 sum
   of a float32 array is finite exactly when all its entries are, so the scan makes no
   temporary copy);
4. one abstract evaluation (``jax.eval_shape``): the model's outputs on two examples; for
   ``'cross_entropy'`` and ``'mse'`` one output per class, ``(batch, classes)``, where
   ``classes`` is the dataset's number of classes (``Arrays.outputs``); the loss gives one
   value per example on them;
5. labels: wherever accuracy is measured as the argmax of two or more outputs
   (any loss), the labels of both splits lie in ``[0, outputs)`` and every test label occurs
   in the training set (a class never trained on cannot be predicted);
6. the mean loss and its gradient at initialisation are finite on the first batch (at most
   ``CHECK_BATCH`` examples; parameters from ``jax.random.key(0)``), computed by one small
   program compiled at XLA's lowest optimisation level on CPU and cached by the model, the
   loss and the shapes.

The sweep (``gdyn_jax.sweep.setup``) runs it once per assembled sweep, on the training set it
trains on (after ``train_subset``); it is a plain function for anyone else with a dataset,
a model and a loss.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax import imports, models
from gdyn_jax.errors import UsageError
from gdyn_jax.sweep import data as data_lib
from gdyn_jax.sweep import losses

__all__ = ["CHECK_BATCH", "TaskCheck", "check_task"]

#: Examples of the first batch on which the initial loss and gradient are checked.
CHECK_BATCH = 64

# At -O0 XLA:CPU compiles the small check program in about a quarter of the default time;
# it runs once, and only whether its numbers are finite is read.
_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class TaskCheck:
    """What ``check_task`` found.

    Attributes:
      outputs: the model's outputs on two examples (shape and dtype).
      classes: the number of classes where the targets are class labels (integer, shape
        ``(N,)``), else None.
      accuracy: whether accuracy is measured (class labels, one output per class).
      initial_loss: the mean loss at initialisation on the checked batch.
    """

    outputs: jax.ShapeDtypeStruct
    classes: int | None
    accuracy: bool
    initial_loss: float


@dataclasses.dataclass(frozen=True)
class _Names:
    """How the messages name the dataset, the model and the loss."""

    dataset: str
    model: str
    loss: str


def check_task(
    dataset: str | data_lib.Arrays,
    model: nn.Module | str | Callable[..., nn.Module],
    loss: str | losses.Loss,
    *,
    batch_size: int | None = None,
    data_dir: str | None = None,
    dataset_name: str | None = None,
) -> TaskCheck:
    """Checks that ``dataset``, ``model`` and ``loss`` make a trainable task (module doc).

    Args:
      dataset: ``Arrays``, a ``gdyn_jax.data`` name or an import path (``data_dir``: where a
        named dataset is prepared).
      model: a ``flax.linen.Module``, or a name, import path or factory for
        ``gdyn_jax.models.get`` (built with the dataset's number of outputs).
      loss: ``'cross_entropy'``, ``'mse'``, an import path or a per-example loss function.
      batch_size: examples per training step (None: full batch); the first
        ``min(batch_size, CHECK_BATCH)`` examples are the checked batch.
      dataset_name: how messages name the dataset (default: its name, path or label).

    Returns:
      ``TaskCheck``. Raises ``UsageError`` (one line) at the first misfit.
    """
    arrays = data_lib.resolve(dataset, data_dir)
    if not isinstance(model, nn.Module):
        model = _built(model, arrays.outputs)
    loss_fn = losses.resolve(loss)
    names = _Names(
        dataset_name or _dataset_label(dataset, arrays),
        type(model).__name__,
        repr(loss if isinstance(loss, str) else imports.path_of(loss)),
    )
    named_loss = isinstance(loss, str) and loss in losses.NAMED
    losses.check_targets(loss if named_loss else loss_fn, arrays.class_labels, arrays.y_train)
    check_kinds(arrays, names.dataset)
    check_finite(arrays, names.dataset)
    outputs = output_shape(model, arrays)
    accuracy = arrays.class_labels and len(outputs.shape) == 2
    classes = arrays.outputs if arrays.class_labels else None
    if named_loss:
        _check_outputs_per_class(outputs, classes, names)
    losses.check_shape(loss_fn, outputs, arrays.y_train)
    if named_loss or (accuracy and outputs.shape[-1] >= 2):
        check_labels(arrays, outputs.shape[-1], names.dataset)
    b = len(arrays.x_train) if batch_size is None else min(batch_size, len(arrays.x_train))
    b = min(b, CHECK_BATCH)
    initial = initial_loss(model, loss_fn, arrays.x_train[:b], arrays.y_train[:b], names)
    return TaskCheck(outputs, classes, accuracy, initial)


def _built(model: Any, num_outputs: int) -> nn.Module:
    if not (isinstance(model, str) or callable(model)):
        raise UsageError(
            f"model: expected a flax.linen.Module, a model name, an import path or a function "
            f"returning a Module, got {type(model).__name__}"
        )
    return models.get(model, num_outputs)


def _dataset_label(dataset: Any, arrays: data_lib.Arrays) -> str:
    if isinstance(dataset, str):
        return repr(dataset)
    return repr(arrays.name) if arrays.name else "in-memory arrays"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------------------------
# The arrays
# ---------------------------------------------------------------------------------------------


def _kind(x: np.ndarray) -> str:
    if np.issubdtype(x.dtype, np.integer):
        return "integer"
    if np.issubdtype(x.dtype, np.bool_):
        return "bool"
    return "float" if np.issubdtype(x.dtype, np.floating) else str(x.dtype)


def check_kinds(arrays: data_lib.Arrays, dataset: str) -> None:
    """Both splits hold targets of one kind: integer, float or bool."""
    train, test = _kind(arrays.y_train), _kind(arrays.y_test)
    if train != test:
        raise UsageError(
            f"dataset: {dataset} has {train} training targets ({arrays.y_train.dtype}) but "
            f"{test} test targets ({arrays.y_test.dtype}); give both splits targets of one kind"
        )


def _all_finite(x: np.ndarray) -> bool:
    """Whether every entry of a float array is finite: its float64 sum is finite exactly
    then (float32 and narrower values cannot overflow a float64 sum; NaN and inf carry)."""
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return True
    if x.dtype.itemsize <= 4:
        return bool(np.isfinite(np.sum(x, dtype=np.float64)))
    return bool(np.isfinite(x).all())


def check_finite(arrays: data_lib.Arrays, dataset: str) -> None:
    """Every float input and target of both splits is finite."""
    for field in ("x_train", "x_test", "y_train", "y_test"):
        x = getattr(arrays, field)
        if _all_finite(x):
            continue
        bad = ~np.isfinite(x.reshape(len(x), -1))
        rows = np.flatnonzero(bad.any(axis=1))
        first = x.reshape(len(x), -1)[rows[0]][bad[rows[0]]][0]
        raise UsageError(
            f"dataset: {dataset} has {_plural(int(bad.sum()), 'non-finite value')} in "
            f"{field} ({_plural(len(rows), 'example')} of {len(x)}; the first, example "
            f"{rows[0]}, holds {first}); remove or replace them before training"
        )


def check_labels(arrays: data_lib.Arrays, classes: int, dataset: str) -> None:
    """Class labels of both splits in ``[0, classes)``; every test label seen in training."""
    for field in ("y_train", "y_test"):
        y = getattr(arrays, field)
        outside = (y < 0) | (y >= classes)
        if outside.any():
            rows = np.flatnonzero(outside)
            values = np.unique(y[rows])
            raise UsageError(
                f"dataset: {dataset} has {field} labels outside [0, {classes}): "
                f"{_some(values)} ({_plural(len(rows), 'example')} of {len(y)}, the first at "
                f"index {rows[0]}); class labels index the model's {classes} outputs"
            )
    unseen = np.setdiff1d(np.unique(arrays.y_test), np.unique(arrays.y_train))
    if len(unseen):
        rows = np.flatnonzero(np.isin(arrays.y_test, unseen))
        raise UsageError(
            f"dataset: {dataset} has test labels the training set never has: {_some(unseen)} "
            f"({_plural(len(rows), 'test example')} of {len(arrays.y_test)}, the first at "
            f"index {rows[0]}; {len(arrays.y_train)} training examples); no model can learn "
            "a class it is never shown"
        )


def _some(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


# ---------------------------------------------------------------------------------------------
# The model and the loss
# ---------------------------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def output_shape(model: Any, arrays: data_lib.Arrays) -> jax.ShapeDtypeStruct:
    """The model's outputs on two examples, shape and dtype only (``eval_shape``)."""
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"model: expected a flax.linen.Module, got {type(model).__name__} {model!r:.60}; "
            "pass a Module instance or class, or a function of keyword arguments returning one"
        )
    x = jax.ShapeDtypeStruct((2,) + arrays.x_train.shape[1:], arrays.x_train.dtype)
    try:
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        outputs = jax.eval_shape(model.apply, variables, x)
    except Exception as error:  # the user's module: report it in one line
        raise UsageError(
            f"model: {type(model).__name__} fails on inputs {x.dtype} {x.shape}: "
            f"{_first_line(error)}"
        ) from None
    if not isinstance(outputs, jax.ShapeDtypeStruct) or outputs.shape[:1] != (2,):
        raise UsageError(f"model: expected outputs with a leading batch axis, got {outputs}")
    if "params" not in variables:
        raise UsageError("model: has no 'params' collection to train")
    return outputs


def _check_outputs_per_class(
    outputs: jax.ShapeDtypeStruct, classes: int | None, names: _Names
) -> None:
    """A named loss reads one output per class: outputs of shape (batch, classes)."""
    if len(outputs.shape) == 2 and outputs.shape[1] == classes:
        return
    got = (
        f"{outputs.shape[1]} outputs per example"
        if len(outputs.shape) == 2
        else f"outputs of shape {outputs.shape} for 2 examples"
    )
    raise UsageError(
        f"model: {names.model} gives {got}, but dataset {names.dataset} has {classes} classes "
        f"and loss {names.loss} needs one output per class, (batch, {classes}); give the "
        f"model {classes} outputs (e.g. its num_classes)"
    )


def _initial(model: nn.Module, loss: losses.Loss, x: jax.Array, y: jax.Array):
    """(per-example losses, the gradient's finiteness per leaf) at initialisation, as the
    training program computes them (``train.init`` and ``train.mean_loss``)."""
    variables = dict(model.init(jax.random.key(0), x[:1]))
    params = variables.pop("params")

    def mean_loss(p):
        per_example = loss(model.apply({"params": p, **variables}, x), y)
        return jnp.mean(per_example), per_example

    (_, per_example), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
    return per_example, jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)), grads)


_INITIAL = {
    options: jax.jit(_initial, static_argnums=(0, 1), compiler_options=dict(options or {}))
    for options in (tuple(_CPU_OPTIONS.items()), None)
}


def _hashable(*objects: Any) -> bool:
    try:
        hash(objects)
    except TypeError:
        return False
    return True


def initial_loss(
    model: nn.Module, loss: losses.Loss, x: np.ndarray, y: np.ndarray, names: _Names
) -> float:
    """The mean loss at initialisation on ``(x, y)``; a one-line ``UsageError`` unless it
    and its gradient are finite."""
    options = tuple(_CPU_OPTIONS.items()) if jax.default_backend() == "cpu" else None
    if _hashable(model, loss):  # compiled once per model, loss and shapes
        per_example, finite = _INITIAL[options](model, loss, x, y)
    else:  # compiled for this call only
        once = functools.partial(_initial, model, loss)
        per_example, finite = jax.jit(once, compiler_options=dict(options or {}))(x, y)
    per_example = np.asarray(per_example, np.float64)
    where = f"the first {_plural(len(x), 'example')} of {names.dataset}"
    bad = ~np.isfinite(per_example)
    if bad.any():
        first = np.flatnonzero(bad)[0]
        raise UsageError(
            f"loss: {names.loss} of model {names.model} is not finite at initialisation: "
            f"{per_example[first]} on {bad.sum()} of {where} (the first, example {first}); a "
            "training run would stop at step 0"
        )
    leaves = jax.tree_util.tree_flatten_with_path(finite)[0]
    broken = [jax.tree_util.keystr(path) for path, ok in leaves if not bool(ok)]
    if broken:
        raise UsageError(
            f"loss: the gradient of {names.loss} is not finite at initialisation on {where} "
            f"(model {names.model}, "
            f"parameters {', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); a "
            "training run would stop at step 0"
        )
    return float(per_example.mean())

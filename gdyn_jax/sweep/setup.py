r"""From a ``SweepConfig`` to the static ``Task`` and the device data, on the host, once.

``build(config, fast)`` loads (or takes) the data of a validated config, resolves the model,
loss and optimizer from names, import paths or objects, and checks that the data, model and
loss fit together (``task_check.check_task``: shapes, classes, label ranges, finite inputs,
a finite loss and gradient at initialisation), so that a mismatch is a one-line
``UsageError`` before the training program compiles. ``prepare(config)``
validates the config first (the sweep's ``assembly`` validates once and calls ``build``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import flax.linen as nn
import optax

from gdyn_jax import models, optimizers
from gdyn_jax.sweep import cpu_speedups, losses, task_check
from gdyn_jax.sweep import data as data_lib
from gdyn_jax.sweep.config import SweepConfig, rule_of
from gdyn_jax.sweep.train import Task


def unit_schedule(name: str | None, steps: int, warmup_steps: int = 0) -> Callable | None:
    r"""A learning-rate multiplier :math:`s(t)` with peak 1; the sweep uses :math:`a\,s(t)`.

    optax schedule constructors reject traced arguments (their checks are Python ``if``\ s),
    so the traced peak multiplies a unit schedule instead.
    """
    if name in (None, "constant"):
        return None
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, steps)
    if name == "linear":
        return optax.linear_schedule(1.0, 0.0, steps)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(warmup_steps, 0), steps)
    raise ValueError(f"schedule: unknown schedule {name!r}")


def load_arrays(config: SweepConfig) -> data_lib.Arrays:
    """The training data of ``config`` (subset applied), checked against the batch size."""
    arrays = data_lib.resolve(config.dataset, config.data_dir)
    if config.train_subset is not None:
        if config.train_subset > len(arrays.x_train):
            raise ValueError(
                f"train_subset: {config.train_subset} is larger than the training set "
                f"({len(arrays.x_train)} examples)"
            )
        arrays = arrays.first(config.train_subset)
    n = len(arrays.x_train)
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(
            f"batch_size: {config.batch_size} is larger than the training set ({n} examples)"
        )
    return arrays


def build_model(config: SweepConfig, num_outputs: int) -> nn.Module:
    """The Flax module of ``config``: an instance as it is, else built by ``models.get``."""
    if isinstance(config.model, nn.Module):
        return config.model
    # JSON turns tuples (e.g. input_shape) into lists; flax module fields want tuples.
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in config.model_kwargs.items()}
    return models.get(config.model, num_outputs, **kwargs)


def adam_preconditioner_of(
    optimizer, fixed: dict[str, float], defaults: Mapping[str, float | None] | None = None
) -> Callable:
    """``(opt_state, hparams) -> P``: Adam's frozen preconditioner with the rule's ``b2``,
    ``eps`` and ``eps_root`` (swept, fixed or the factory's defaults: ``defaults``, else
    ``optimizers.hyperparameters(optimizer)``)."""
    if defaults is None:
        defaults = optimizers.hyperparameters(optimizer)
    if defaults.get("b2") is None or defaults.get("eps") is None:
        raise ValueError(
            "track_preconditioned_sharpness: needs an Adam-type optimizer with numeric "
            f"hyperparameters b2 and eps; {optimizer!r} has {', '.join(defaults) or 'none'}"
        )

    def preconditioner(opt_state, hparams):
        hp = {**defaults, **fixed, **hparams}
        eps_root = 0.0 if hp.get("eps_root") is None else hp["eps_root"]
        return optimizers.adam_preconditioner(opt_state, hp["b2"], hp["eps"], eps_root)

    return preconditioner


def prepare(config: SweepConfig) -> tuple[Task, data_lib.DeviceData]:
    """(Task, device data) for ``config``: validated, resolved, data loaded once."""
    return build(config.validate(), cpu_speedups.enabled())


def build(config: SweepConfig, fast: bool) -> tuple[Task, data_lib.DeviceData]:
    """(Task, device data) for a validated ``config``, with the ``fast`` kernels or not."""
    arrays = load_arrays(config)
    losses.check_targets(config.loss, arrays.class_labels, arrays.y_train)
    loss = losses.resolve(config.loss)
    model = build_model(config, arrays.outputs)
    found = task_check.check_task(
        arrays,
        model,
        config.loss,
        batch_size=config.batch_size,
        dataset_name=repr(config.dataset) if isinstance(config.dataset, str) else None,
    )
    n = len(arrays.x_train)
    rule, fixed = rule_of(config), config.fixed_hparams()
    precondition = config.track_preconditioned_sharpness
    task = Task(
        model=model,
        loss=loss,
        optimizer=rule.factory,
        fixed=fixed,
        schedule=unit_schedule(config.schedule, config.steps, config.warmup_steps),
        num_train=n,
        batch_size=n if config.batch_size is None else int(config.batch_size),
        eval_every=config.eval_every,
        # accuracy where it means something: class labels, and one score per class
        accuracy=found.accuracy,
        track_grad_norm=config.track_grad_norm,
        track_sharpness=config.track_sharpness,
        sharpness_iters=config.sharpness_iters,
        kernels=cpu_speedups.kernels(fast),
        preconditioner=(
            adam_preconditioner_of(rule.factory, fixed, rule.defaults) if precondition else None
        ),
        batch_sharpness_batches=config.batch_sharpness_batches * config.track_batch_sharpness,
        sharpness_tol=float(config.sharpness_tol),
    )
    tracked = config.track_sharpness or precondition
    sharpness = config.sharpness_subset if tracked else None
    return task, data_lib.device_arrays(arrays, config.eval_batch_size, sharpness)


__all__ = [
    "adam_preconditioner_of",
    "build",
    "build_model",
    "load_arrays",
    "prepare",
    "unit_schedule",
]

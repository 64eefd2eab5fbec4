"""The static description of a sweep (`SweepConfig`) and validation of grids against it.

Everything here runs on the host before anything is compiled, so a typo in an optimizer,
model, dataset or hyperparameter name is a one-line ``ValueError`` that names it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

LOSSES = ("cross_entropy", "mse")
SCHEDULES = (None, "constant", "cosine", "warmup_cosine", "linear")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Static settings of a sweep: everything that is not a swept number.

    Attributes:
      dataset: a ``gdyn_jax.data`` name.
      model: a ``gdyn_jax.models`` name.
      optimizer: a ``gdyn_jax.optimizers`` name.
      loss: ``'cross_entropy'`` or ``'mse'`` (square loss on one-hot targets, summed over
        classes and averaged over examples, as in Cohen et al. 2021).
      steps: number of optimizer steps.
      batch_size: examples per step; ``None`` (or the training-set size) means full batch.
      eval_every: steps between evaluations; must divide ``steps``. Metrics are recorded at
        steps ``0, eval_every, ..., steps``.
      hparams: fixed numeric optimizer hyperparameters; grid values override them.
      schedule: ``None``/``'constant'``, ``'cosine'``, ``'warmup_cosine'`` or ``'linear'``
        (decay to 0): a unit-peak schedule over ``steps`` multiplied by the traced
        ``learning_rate``.
      warmup_steps: warm-up length for ``'warmup_cosine'``.
      model_kwargs: extra keyword arguments of ``gdyn_jax.models.get``.
      train_subset: train on the first N training examples only (Cohen et al. use 5000).
      track_grad_norm: also record the full-batch gradient norm at eval points.
      track_sharpness: also record the top Hessian eigenvalue at eval points.
      sharpness_subset: examples (the first ones of the training set) for the sharpness.
      sharpness_iters: Lanczos iterations for the sharpness.
      eval_batch_size: examples per evaluation chunk (bounds evaluation memory).
      data_dir: where datasets are prepared (``None``: the data module's default).
    """

    dataset: str = "mnist1d"
    model: str = "mlp"
    optimizer: str = "sgd"
    loss: str = "cross_entropy"
    steps: int = 1000
    batch_size: int | None = 100
    eval_every: int = 100
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    schedule: str | None = None
    warmup_steps: int = 0
    model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train_subset: int | None = None
    track_grad_norm: bool = False
    track_sharpness: bool = False
    sharpness_subset: int = 1000
    sharpness_iters: int = 20
    eval_batch_size: int = 5000
    data_dir: str | None = None

    @property
    def num_evals(self) -> int:
        """Number of evaluation points, ``steps / eval_every + 1``."""
        return self.steps // self.eval_every + 1

    @property
    def eval_steps(self) -> list[int]:
        """The steps at which metrics are recorded."""
        return list(range(0, self.steps + 1, self.eval_every))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (``from_dict`` inverts it)."""
        out = dataclasses.asdict(self)
        out["hparams"] = dict(self.hparams)
        out["model_kwargs"] = dict(self.model_kwargs)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepConfig:
        """Builds a config from a dict; unknown keys raise a ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(d))

    def validate(self) -> SweepConfig:
        """Checks the static fields and names (no data loaded); returns ``self``."""
        _check_int("steps", self.steps, 1)
        _check_int("eval_every", self.eval_every, 1)
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every: must divide steps ({self.steps}), got {self.eval_every}")
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        if self.loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        _check_int("warmup_steps", self.warmup_steps, 0)
        if self.train_subset is not None:
            _check_int("train_subset", self.train_subset, 1)
        _check_int("sharpness_subset", self.sharpness_subset, 1)
        _check_int("sharpness_iters", self.sharpness_iters, 1)
        _check_int("eval_batch_size", self.eval_batch_size, 1)
        _check_name("dataset", self.dataset, "gdyn_jax.data")
        _check_name("model", self.model, "gdyn_jax.models")
        _check_name("optimizer", self.optimizer, "gdyn_jax.optimizers")
        known = optimizer_hyperparameters(self.optimizer)
        for name, value in self.hparams.items():
            _check_hp_name(name, known, self.optimizer)
            to_float(f"hparams: {name}", value)
        return self


def optimizer_hyperparameters(optimizer: str) -> dict[str, float | None]:
    """Numeric hyperparameter names of ``optimizer`` -> default (``None`` where required)."""
    from gdyn_jax import optimizers

    return dict(optimizers.hyperparameters(optimizer))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _check_name(field: str, value: str, module: str) -> None:
    import importlib

    known = tuple(importlib.import_module(module).names())
    if value not in known:
        raise ValueError(f"{field}: unknown {field} {value!r}; known: {', '.join(known)}")


def _check_hp_name(name: str, known: Mapping[str, Any], optimizer: str) -> None:
    if name not in known:
        raise ValueError(
            f"{name}: not a numeric hyperparameter of optimizer {optimizer!r}; "
            f"known: {', '.join(known)}"
        )


def to_float(what: str, value: Any) -> float:
    """``float(value)`` for real numbers (and numeric strings); a named ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if math.isnan(out):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    return out


def validate_grid(
    config: SweepConfig, grid: Mapping[str, Sequence[Any]], seeds: int
) -> dict[str, list[float]]:
    """Checks a grid against ``config`` and returns it as ``{name: [floats]}``.

    Raises ``ValueError`` naming the culprit for an unknown hyperparameter name, an empty list
    of values, a non-numeric value, a missing required hyperparameter (e.g. ``learning_rate``
    set neither in the grid nor in ``config.hparams``) or a bad ``seeds``.
    """
    _check_int("seeds", seeds, 1)
    known = optimizer_hyperparameters(config.optimizer)
    out: dict[str, list[float]] = {}
    for name, values in grid.items():
        _check_hp_name(name, known, config.optimizer)
        if isinstance(values, str | bytes):
            raise ValueError(f"grid: {name}: expected a list of numbers, got {values!r}")
        try:
            values = list(values)
        except TypeError:
            raise ValueError(f"grid: {name}: expected a list of numbers, got {values!r}") from None
        if len(values) == 0:
            raise ValueError(f"grid: {name}: empty list of values")
        floats = [to_float(f"grid: {name}", v) for v in values]
        if len(set(floats)) != len(floats):
            raise ValueError(f"grid: {name}: repeated values {floats}")
        out[name] = floats
    for name, default in known.items():
        if default is None and name not in out and name not in config.hparams:
            raise ValueError(
                f"{name}: required by optimizer {config.optimizer!r}; give it with "
                f"--grid {name}=... or --hp {name}=..."
            )
    if config.schedule not in (None, "constant") and "learning_rate" not in known:
        raise ValueError(f"schedule: optimizer {config.optimizer!r} has no learning_rate")
    return out

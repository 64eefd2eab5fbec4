"""The static description of a sweep (`SweepConfig`): everything that is not a swept number.

The dataset, model, optimizer and loss are each a registered name, an import path
``"pkg.module:attr"`` or the object itself (``Arrays``, a Flax module, an optimizer factory,
a loss function). ``validate`` checks the static fields and that every name resolves, on the
host, before any data is loaded or anything compiles, so a typo is a one-line ``ValueError``
that names it.

A config is recorded in the results as JSON (``to_dict``): names and import paths as they
are; a function or class by its ``module:qualname``; a Flax module instance by its class's
path, with its fields in ``model_kwargs``; in-memory arrays by name, shapes, dtypes and
SHA-256. ``from_dict`` reads such a record back. A record rebuilds the sweep when every path
in it can be imported and the module fields are plain JSON values; a function defined in
``__main__`` or inside another function cannot be imported back (a ``ValueError`` naming
the field says so when the config is used), and in-memory arrays must be passed again. A
sweep run again into the same ``out`` never imports anything from the record: it compares the
record of the objects it is given now with the one it saved.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import optax

from gdyn_jax import data as datasets
from gdyn_jax import imports, models, optimizers
from gdyn_jax.sweep import data as data_lib
from gdyn_jax.sweep import losses
from gdyn_jax.sweep.checks import check_int, to_float

LOSSES = losses.LOSSES
SCHEDULES = (None, "constant", "cosine", "warmup_cosine", "linear")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    r"""Static settings of a sweep: everything that is not a swept number.

    Attributes:
      dataset: a ``gdyn_jax.data`` name, an import path ``"pkg.module:attr"`` to an
        ``Arrays`` (or to a function of no arguments returning one), or ``Arrays`` itself.
      model: a ``gdyn_jax.models`` name (built-in or registered), an import path to a Module
        class, factory or instance, or a ``flax.linen.Module`` (instance or factory).
      optimizer: a ``gdyn_jax.optimizers`` name (built-in or registered), an import path, or
        any factory returning an ``optax.GradientTransformation``; its numeric keyword
        arguments are the hyperparameters a grid may sweep.
      loss: ``'cross_entropy'``, ``'mse'`` (square loss on one-hot targets, summed over
        classes and averaged over examples, as in Cohen et al. 2021), an import path, or a
        per-example loss ``loss(outputs, targets) -> (batch,)`` (see ``losses``).
      steps: number of optimizer steps.
      batch_size: examples per step; ``None`` (or the training-set size) means full batch.
      eval_every: steps between evaluations; must divide ``steps``. Metrics are recorded at
        steps ``0, eval_every, ..., steps``.
      hparams: fixed numeric optimizer hyperparameters; grid values override them.
      schedule: ``None``/``'constant'``, ``'cosine'``, ``'warmup_cosine'`` or ``'linear'``
        (decay to 0): a unit-peak schedule over ``steps`` multiplied by the traced
        ``learning_rate``.
      warmup_steps: warm-up length for ``'warmup_cosine'``.
      model_kwargs: keyword arguments of ``gdyn_jax.models.get`` (a model name or path).
      train_subset: train on the first N training examples only (Cohen et al. use 5000).
      track_grad_norm: also record the full-batch gradient norm at eval points.
      track_sharpness: also record the top Hessian eigenvalue at eval points.
      track_preconditioned_sharpness: also record Adam's preconditioned sharpness
        :math:`\lambda_{\max}(P^{-1}H)` at eval points, :math:`P` frozen at the current state
        (``optimizers.adam_preconditioner``; NaN at step 0, before any second moment), by
        Lanczos on :math:`P^{-1/2} H P^{-1/2}` on the sharpness subset. Needs an Adam-type
        optimizer (one ``optax.ScaleByAdamState``, hyperparameters ``b2``, ``eps``).
      track_batch_sharpness: also record the batch sharpness at eval points
        (``measurements.batch_sharpness``, Andreyev & Beneventano 2024, arXiv:2412.20553):
        :math:`\mathbb{E}_B[g_B^\top H_B g_B/\|g_B\|^2]`, the mean over
        ``batch_sharpness_batches`` mini-batches of the training batch size, each a uniformly
        random subset of the training set drawn from the member's sharpness key at that step.
        For full batch there is one batch, the training set: the curvature of the full
        training loss along its gradient.
      batch_sharpness_batches: mini-batches the batch sharpness averages over (16: each
        costs about three training steps; the standard error falls as one over its root).
      sharpness_subset: examples (the first ones of the training set) for the sharpness.
      sharpness_iters: Lanczos iterations for the sharpness (with ``sharpness_tol``: at most
        that many warm, then as many cold).
      sharpness_tol: the tracked (preconditioned) sharpness starts from the last evaluation's
        top eigenvector and stops once the relative residual of its Ritz pair is at most this
        (``measurements.hessian.tracked_top_eigenvalue``: a few Hessian-vector products where
        a cold start takes ``sharpness_iters``; a cold restart if the warm start fails). 0:
        ``sharpness_iters`` Lanczos steps from a random vector at every evaluation.
      eval_batch_size: examples per evaluation chunk (bounds evaluation memory).
      data_dir: where datasets are prepared (``None``: the data module's default).
    """

    dataset: str | data_lib.Arrays = "mnist1d"
    model: Any = "mlp"
    optimizer: str | Callable[..., Any] = "sgd"
    loss: str | losses.Loss = "cross_entropy"
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
    track_preconditioned_sharpness: bool = False
    track_batch_sharpness: bool = False
    batch_sharpness_batches: int = 16
    sharpness_subset: int = 1000
    sharpness_iters: int = 20
    sharpness_tol: float = 3e-3
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
        """A JSON-able record of the config (``from_dict`` reads it; see the module doc)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["hparams"] = dict(self.hparams)
        out["model_kwargs"] = dict(self.model_kwargs)
        if isinstance(self.dataset, data_lib.Arrays):
            out["dataset"] = self.dataset.record()
        out["optimizer"] = _record_callable(self.optimizer)
        out["loss"] = _record_callable(self.loss)
        out["model"], fields = _record_model(self.model)
        if fields is not None:
            out["model_kwargs"] = fields
        return out

    @property
    def optimizer_label(self) -> str:
        """The optimizer as error messages name it (its name or path, quoted)."""
        return repr(_record_callable(self.optimizer))

    def fixed_hparams(self) -> dict[str, float]:
        """``hparams`` as Python floats (constants of the compiled program)."""
        return {k: to_float(f"hparams: {k}", v) for k, v in self.hparams.items()}

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

    @functools.cached_property
    def _rule(self) -> Rule:
        """The optimizer, resolved (and its signature read) once per config."""
        factory = optimizers.get(self.optimizer)
        return Rule(factory, self.optimizer_label, optimizers.hyperparameters(factory))

    def validate(self) -> SweepConfig:
        """Checks the static fields and that every name resolves (no data loaded); ``self``."""
        check_int("steps", self.steps, 1)
        check_int("eval_every", self.eval_every, 1)
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every: must divide steps ({self.steps}), got {self.eval_every}")
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        losses.resolve(self.loss)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}")
        self._check_warmup()
        if self.train_subset is not None:
            check_int("train_subset", self.train_subset, 1)
        check_int("sharpness_subset", self.sharpness_subset, 1)
        check_int("sharpness_iters", self.sharpness_iters, 1)
        check_int("batch_sharpness_batches", self.batch_sharpness_batches, 1)
        tol = to_float("sharpness_tol", self.sharpness_tol)
        if not 0 <= tol < 1:
            raise ValueError(f"sharpness_tol: expected a number in [0, 1), got {tol!r}")
        check_int("eval_batch_size", self.eval_batch_size, 1)
        data_lib.check_name(self.dataset)
        self._check_data_dir()
        _check_model(self.model, self.model_kwargs)
        rule = self._rule
        for name, value in self.hparams.items():
            rule.check_names([name])
            to_float(f"hparams: {name}", value)
        return self

    def _check_warmup(self) -> None:
        check_int("warmup_steps", self.warmup_steps, 0)
        if self.schedule == "warmup_cosine" and self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps: expected fewer than steps ({self.steps}) for the cosine "
                f"decay after the warm-up, got {self.warmup_steps}"
            )
        if self.schedule != "warmup_cosine" and self.warmup_steps:
            raise ValueError(
                f"warmup_steps: only schedule 'warmup_cosine' warms up (schedule is "
                f"{self.schedule!r}), got {self.warmup_steps}"
            )

    def _check_data_dir(self) -> None:
        """A dataset name is read from a directory: it must not be a file."""
        if self.data_dir is not None and not isinstance(self.data_dir, str | os.PathLike):
            raise ValueError(f"data_dir: expected a path, got {self.data_dir!r}")
        if not isinstance(self.dataset, str) or imports.is_import_path(self.dataset):
            return
        path = Path(self.data_dir).expanduser() if self.data_dir else datasets.default_data_dir()
        if path.exists() and not path.is_dir():
            raise ValueError(f"data_dir: {path} is not a directory")


@dataclasses.dataclass(frozen=True, eq=False)
class Rule:
    """A config's optimizer, resolved once: the factory, its label in error messages, and its
    numeric hyperparameters with their defaults (``optimizers.hyperparameters``)."""

    factory: Callable[..., optax.GradientTransformation]
    label: str
    defaults: Mapping[str, float | None]

    def check_names(self, names: Iterable[str]) -> None:
        """A one-line ``ValueError`` for the first name that is not a hyperparameter."""
        for name in names:
            if name not in self.defaults:
                raise ValueError(
                    f"{name}: not a numeric hyperparameter of optimizer {self.label}; "
                    f"known: {', '.join(self.defaults)}"
                )

    def missing(self, given: Iterable[str]) -> list[str]:
        """The required hyperparameters (no default) not in ``given``, in signature order.

        Only a hyperparameter without a numeric default can be required, so the signature is
        read again only when such a one is not given.
        """
        given = set(given)
        if all(v is not None or k in given for k, v in self.defaults.items()):
            return []
        return [k for k in optimizers.required_hyperparameters(self.factory) if k not in given]


def rule_of(config: SweepConfig) -> Rule:
    """The optimizer ``Rule`` of ``config`` (resolved on first use, then kept)."""
    return config._rule


def _record_callable(obj: Any) -> Any:
    """A name or path as it is; a function (or other callable) by ``module:qualname``."""
    return obj if isinstance(obj, str) else imports.path_of(obj)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v) for k, v in value.items()}
    if callable(value):
        return imports.path_of(value)
    return repr(value)


def _record_model(model: Any) -> tuple[Any, dict[str, Any] | None]:
    """(model record, fields of a module instance or None)."""
    if isinstance(model, str):
        return model, None
    if isinstance(model, nn.Module):
        fields = {
            f.name: _jsonable(getattr(model, f.name))
            for f in dataclasses.fields(model)
            if f.name not in ("parent", "name")
        }
        return imports.path_of(type(model)), fields
    return imports.path_of(model), None


def _check_model(model: Any, model_kwargs: Mapping[str, Any]) -> None:
    if isinstance(model, nn.Module):
        if model_kwargs:
            raise ValueError(
                "model_kwargs: only with a model name, path or factory; set the fields of a "
                "module instance on the instance"
            )
        return
    if isinstance(model, str) and not imports.is_import_path(model):
        if model not in models.names():
            raise ValueError(
                f"model: unknown model {model!r}; known: {', '.join(models.names())}, or an "
                "import path 'pkg.module:Net', or a flax Module"
            )
        return
    if not isinstance(model, str) and not callable(model):
        raise ValueError(f"model: expected a name, a flax Module or a factory, got {model!r}")
    models.lookup(model)  # imports a path (a one-line error if it cannot)

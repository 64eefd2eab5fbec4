"""The swept hyperparameters: one ``Grid``, validated once, and its flat member axis.

``Grid.build(config, values, seeds)`` checks everything about the swept numbers before any
data is loaded or anything compiles, and raises a one-line ``ValueError`` naming the culprit:

- every name is a numeric hyperparameter of the optimizer's factory (its signature, as read
  by ``optimizers.hyperparameters``), every value a finite number, no value repeated (also
  after rounding to float32, the precision of training);
- every hyperparameter the factory requires is in the grid or in ``config.hparams``;
- the factory accepts every grid point: it is called on the host with each point (and the
  fixed hyperparameters), so its own range checks run (the package's constructors reject
  e.g. negative learning rates or decays >= 1; a user's factory checks what it checks). It
  sees the values as given, and once more rounded to float32 where that changes them, since
  training uses float32 (``beta=0.999999999`` trains as 1.0).

Members are ordered as ``itertools.product(*values, range(seeds))``: the last grid name
varies fastest but one, the seed fastest of all. Member ``m`` uses the key
``jax.random.key(seed)``, so every grid point sees the same seeds (common random numbers) and
a member reproduces ``train(hparams, jax.random.key(seed))`` exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from gdyn_jax.sweep.config import SweepConfig


def to_float(what: str, value: Any) -> float:
    """``float(value)`` for finite real numbers (and numeric strings); a named ValueError else."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return out


INT32_MAX = 2**31 - 1


def check_int(name: str, value: Any, minimum: int, maximum: int = INT32_MAX) -> None:
    """A one-line ``ValueError`` naming ``name`` unless ``value`` is an int in
    [``minimum``, ``maximum``] (default: the largest int32, the type of steps and indices in
    the compiled program)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name}: expected an integer in [{minimum}, {maximum}], got {value!r}")


def _value_list(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"grid: {name}: expected a list of numbers, got {values!r}")
    floats = tuple(to_float(f"grid: {name}", v) for v in values)
    if not floats:
        raise ValueError(f"grid: {name}: empty list of values")
    if len(set(floats)) != len(floats):
        raise ValueError(f"grid: {name}: repeated values {list(floats)}")
    as_f32 = [float(np.float32(v)) for v in floats]
    if len(set(as_f32)) != len(as_f32):
        raise ValueError(f"grid: {name}: values {list(floats)} repeat in float32 (training)")
    return floats


@dataclasses.dataclass(frozen=True)
class Grid:
    """Swept hyperparameter values × seeds, checked against one config's optimizer.

    Build it with :meth:`build`. Attributes: ``names`` (swept hyperparameters, in order),
    ``values`` (their values as given, one tuple per name; the results' coordinates) and
    ``seeds`` (seeds ``0 .. seeds-1`` per grid point).
    """

    names: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    seeds: int

    @classmethod
    def build(cls, config: SweepConfig, values: Mapping[str, Sequence[Any]], seeds: int = 1):
        """Validates ``values`` (name -> list of numbers) and ``seeds`` against ``config``."""
        from gdyn_jax import optimizers

        check_int("seeds", seeds, 1)
        if not isinstance(values, Mapping):
            raise ValueError(f"grid: expected a mapping name -> values, got {values!r}")
        if not values:
            raise ValueError("grid: empty; give at least one hyperparameter with its values")
        factory = optimizers.get(config.optimizer)
        known = optimizers.hyperparameters(factory)
        label = config.optimizer_label
        for name in values:
            if name not in known:
                raise ValueError(
                    f"{name}: not a numeric hyperparameter of optimizer {label}; "
                    f"known: {', '.join(known)}"
                )
        grid = cls(tuple(values), tuple(_value_list(k, v) for k, v in values.items()), seeds)
        for name in optimizers.required_hyperparameters(factory):
            if name not in values and name not in config.hparams:
                raise ValueError(
                    f"{name}: required by optimizer {label}; give it with "
                    f"--grid {name}=... or --hp {name}=..."
                )
        if config.schedule not in (None, "constant"):
            if "learning_rate" not in known:
                raise ValueError(f"schedule: optimizer {label} has no learning_rate")
            if "learning_rate" not in values and "learning_rate" not in config.hparams:
                raise ValueError(
                    f"schedule: {config.schedule!r} scales learning_rate, which is neither "
                    "in the grid nor in hparams"
                )
        grid._check_points(factory, label, config.fixed_hparams())
        return grid

    def _check_points(self, factory, label: str, fixed: Mapping[str, float]) -> None:
        """Calls ``factory`` once per grid point, with the values as given and, where float32
        rounds them (training's precision), once more with the rounded values."""
        for point in itertools.product(*self.values):
            given = dict(zip(self.names, point, strict=True))
            where = ", ".join(f"{k}={v!r}" for k, v in given.items())
            _call(factory, label, {**fixed, **given}, where)
            rounded = {k: float(np.float32(v)) for k, v in given.items()}
            if rounded != given:
                _call(factory, label, {**fixed, **rounded}, f"{where} (rounded to float32)")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the member axis unflattened, ``(len(values) per name..., seeds)``."""
        return tuple(len(v) for v in self.values) + (self.seeds,)

    @property
    def num_members(self) -> int:
        return math.prod(self.shape)

    def as_dict(self) -> dict[str, list[float]]:
        """``{name: [values]}`` (JSON-able)."""
        return {k: list(v) for k, v in zip(self.names, self.values, strict=True)}

    def members(self) -> tuple[np.ndarray, np.ndarray]:
        """(hyperparameters float32 (M, len(names)), seeds int64 (M,)) of the flat members."""
        rows = list(itertools.product(*self.values, range(self.seeds)))
        table = np.array([r[:-1] for r in rows], np.float32).reshape(len(rows), len(self.names))
        return table, np.array([r[-1] for r in rows], np.int64)


def _call(factory, label: str, kwargs: Mapping[str, float], where: str) -> None:
    """``factory(**kwargs)`` must return a transform; its error, if any, in one line."""
    import optax

    try:
        tx = factory(**kwargs)
    except Exception as error:  # the factory's own check, reported in one line
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"grid: optimizer {label} rejects {where}: {text}") from None
    if not isinstance(tx, optax.GradientTransformation):
        raise ValueError(
            f"optimizer: {label} returned {type(tx).__name__}, not an optax.GradientTransformation"
        )


def columns(names: Sequence[str], table: np.ndarray) -> dict[str, np.ndarray]:
    """The member table as ``{name: (M,) float32}``, the ``hparams`` that ``train`` takes."""
    return {k: table[:, i] for i, k in enumerate(names)}


def seed_keys(seeds: np.ndarray) -> np.ndarray:
    """Raw key data (M, ...) uint32 of ``jax.random.key(s)`` for each member's seed."""
    return np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s)))) for s in seeds])


def pad(x: np.ndarray, total: int) -> np.ndarray:
    """Pads the leading (member) axis to ``total`` by repeating the last member."""
    extra = total - len(x)
    if extra <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])

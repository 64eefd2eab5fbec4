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
from typing import Any

import jax
import numpy as np
import optax

from gdyn_jax._deprecated import forwarder
from gdyn_jax.sweep import checks
from gdyn_jax.sweep.config import Rule, SweepConfig, rule_of


def _value_list(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"grid: {name}: expected a list of numbers, got {values!r}")
    floats = tuple(checks.to_float(f"grid: {name}", v) for v in values)
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
        checks.check_int("seeds", seeds, 1)
        if not isinstance(values, Mapping):
            raise ValueError(f"grid: expected a mapping name -> values, got {values!r}")
        if not values:
            raise ValueError("grid: empty; give at least one hyperparameter with its values")
        rule = rule_of(config)
        rule.check_names(values)
        grid = cls(tuple(values), tuple(_value_list(k, v) for k, v in values.items()), seeds)
        for name in rule.missing([*values, *config.hparams]):
            raise ValueError(
                f"{name}: required by optimizer {rule.label}; give it with "
                f"--grid {name}=... or --hp {name}=..."
            )
        if config.schedule not in (None, "constant"):
            if "learning_rate" not in rule.defaults:
                raise ValueError(f"schedule: optimizer {rule.label} has no learning_rate")
            if "learning_rate" not in values and "learning_rate" not in config.hparams:
                raise ValueError(
                    f"schedule: {config.schedule!r} scales learning_rate, which is neither "
                    "in the grid nor in hparams"
                )
        grid._check_points(rule, config.fixed_hparams())
        return grid

    def _check_points(self, rule: Rule, fixed: Mapping[str, float]) -> None:
        """Calls the factory once per grid point, with the values as given and, where float32
        rounds them (training's precision), once more with the rounded values."""
        for point in itertools.product(*self.values):
            given = dict(zip(self.names, point, strict=True))
            where = ", ".join(f"{k}={v!r}" for k, v in given.items())
            _call(rule, {**fixed, **given}, where)
            rounded = {k: float(np.float32(v)) for k, v in given.items()}
            if rounded != given:
                _call(rule, {**fixed, **rounded}, f"{where} (rounded to float32)")

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


def _call(rule: Rule, kwargs: Mapping[str, float], where: str) -> None:
    """``rule.factory(**kwargs)`` must return a transform; its error, if any, in one line."""
    try:
        tx = rule.factory(**kwargs)
    except Exception as error:  # the factory's own check, reported in one line
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"grid: optimizer {rule.label} rejects {where}: {text}") from None
    if not isinstance(tx, optax.GradientTransformation):
        raise ValueError(
            f"optimizer: {rule.label} returned {type(tx).__name__}, not an "
            "optax.GradientTransformation"
        )


def columns(names: Sequence[str], table: np.ndarray) -> dict[str, np.ndarray]:
    """The member table as ``{name: (M,) float32}``, the ``hparams`` that ``train`` takes."""
    return {k: table[:, i] for i, k in enumerate(names)}


def seed_keys(seeds: np.ndarray) -> np.ndarray:
    """Raw key data (M, ...) uint32 of ``jax.random.key(s)`` for each member's seed.

    Each distinct seed is keyed once, all of them in one vmapped program (a million members
    in a tenth of a second, where one eager key per member took a minute per 200,000); the
    same bits as ``seed_keys_plain``, its twin (tested)."""
    seeds = np.asarray(seeds)
    if seeds.size == 0 or seeds.min() < 0 or seeds.max() > np.iinfo(np.int32).max:
        return seed_keys_plain(seeds)
    distinct, index = np.unique(seeds, return_inverse=True)
    return np.asarray(_keys_of(distinct.astype(np.int32)))[index.reshape(-1)]


def seed_keys_plain(seeds: np.ndarray) -> np.ndarray:
    """``seed_keys`` one eager ``jax.random.key`` per member (the plain twin)."""
    return np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s)))) for s in seeds])


@jax.jit
def _keys_of(seeds: jax.Array) -> jax.Array:
    return jax.vmap(lambda s: jax.random.key_data(jax.random.key(s)))(seeds)


def pad(x: np.ndarray, total: int) -> np.ndarray:
    """Pads the leading (member) axis to ``total`` by repeating the last member."""
    extra = total - len(x)
    if extra <= 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])


# to_float, check_int and INT32_MAX moved to gdyn_jax.sweep.checks (one release).
__getattr__ = forwarder("gdyn_jax.sweep.grid", "gdyn_jax.sweep.checks")

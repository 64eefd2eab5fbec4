r"""A sweep assembled once: ``assemble(config, grid, seeds) -> Program``.

This is the one place where a sweep is put together. ``make_train`` (one pure run, for
``jax.jit(jax.vmap(train))``) and ``run_sweep`` (members in chunks and groups, sharded,
checkpointed) are both built from its ``Program``, so the documented pure program is the
one the ``gdyn sweep`` command runs. Assembling:

1. validates the config, once (``SweepConfig.validate``: the static fields, every name, the
   fixed hyperparameters; the optimizer is resolved and its signature read there, once);
2. builds the grid, when there is one (``Grid.build``: names, values and every grid point
   through the optimizer's factory);
3. on first use of ``task`` or ``data`` (``run_sweep`` first claims its output directory):
   loads the data and checks the model, loss and optimizer together (``setup.build``).

The program's ``init(data, hparams, key)`` and
``advance(data, hparams, state, start_step, num_intervals)`` are ``train.init`` and
``train.advance`` with the task bound: pure functions of one member; ``members()`` is the
member table, one row per (grid point, seed) in the grid's order.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.sweep import cpu_speedups, setup
from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep import train as train_lib
from gdyn_jax.sweep.config import SweepConfig, rule_of
from gdyn_jax.sweep.data import DeviceData
from gdyn_jax.sweep.grid import Grid

__all__ = ["Program", "assemble", "make_train"]


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """A validated config (and grid), its task and data, and its pure per-member functions.

    Attributes:
      config: the validated ``SweepConfig``.
      grid: the validated ``Grid`` (None for ``make_train``, which takes any hyperparameters).
      fast: whether the task uses the fast kernels (``cpu_speedups``), fixed when assembled.
    """

    config: SweepConfig
    grid: Grid | None
    fast: bool

    @functools.cached_property
    def _built(self) -> tuple[train_lib.Task, DeviceData]:
        return setup.build(self.config, self.fast)

    @property
    def task(self) -> train_lib.Task:
        """The static pieces (built, and the data loaded, on first use)."""
        return self._built[0]

    @property
    def data(self) -> DeviceData:
        """The device data (loaded on first use)."""
        return self._built[1]

    @property
    def init(self) -> Callable[..., train_lib.TrainState]:
        """``init(data, hparams, key) -> TrainState`` of one member."""
        return functools.partial(train_lib.init, self.task)

    @property
    def advance(self) -> Callable[..., Any]:
        """``advance(data, hparams, state, start_step, num_intervals)`` of one member:
        ``(state, first, metrics)`` (see ``train.advance``)."""
        return functools.partial(train_lib.advance, self.task)

    def members(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The member table: ``{name: (M,) float32}`` and the members' raw keys (M, ...)."""
        if self.grid is None:
            raise ValueError("grid: this program was assembled without a grid")
        table, seeds = self.grid.members()
        return grid_lib.columns(self.grid.names, table), grid_lib.seed_keys(seeds)


def assemble(
    config: SweepConfig,
    grid: Mapping[str, Sequence[Any]] | Grid | None = None,
    seeds: int | None = None,
) -> Program:
    """The ``Program`` of ``config`` and ``grid`` (see the module doc), validated once.

    ``grid``: name -> values, or a ``Grid`` (checked again against ``config``); ``seeds``:
    per grid point (default 1, or the ``Grid``'s).
    """
    config.validate()
    if grid is not None and not isinstance(grid, Grid):
        grid = Grid.build(config, grid, 1 if seeds is None else seeds)
    elif grid is not None:
        if seeds is not None and seeds != grid.seeds:
            raise ValueError(f"seeds: the Grid has {grid.seeds} seeds, got seeds={seeds!r}")
        grid = Grid.build(config, grid.as_dict(), grid.seeds)
    return Program(config, grid, cpu_speedups.enabled())


def make_train(config: SweepConfig, *, return_state: bool = False) -> Callable[..., Any]:
    r"""A pure, jit- and vmap-able ``train(hparams, key) -> metrics`` for ``config``.

    ``hparams`` maps optimizer hyperparameter names to scalars (they override
    ``config.hparams``); ``key`` is a PRNG key (it determines the initialisation, the order of
    the mini-batches and the sharpness start vectors). The result maps each metric name
    (``train_loss``, ``test_loss``, ``test_accuracy`` for class labels and, when tracked,
    ``grad_norm``, ``sharpness`` and ``preconditioned_sharpness``) to an array over the
    ``config.num_evals`` evaluation steps ``0, eval_every, ..., steps``, plus ``diverged_at``
    (int32 scalar, -1 if never).
    ``config`` is validated and its data loaded here, once (``assemble``).

    With ``return_state=True``, ``train`` returns ``(metrics, state)``: the final
    :class:`~gdyn_jax.sweep.TrainState` (its ``params`` are the trained parameters, the last
    finite ones for a diverged member), e.g. to evaluate trained members in ways the metrics do
    not cover. Under ``jax.vmap`` every member's state comes back, parameters included.

    ``train(hparams, key, data)`` trains on ``data`` (a ``DeviceData`` with the shapes of the
    config's, e.g. ``setup.prepare(other_config)[1]`` for the same inputs with other labels)
    instead of the config's own; passed as an argument (``in_axes=None`` under vmap), it lets
    one compiled program serve many datasets.

    Example::

        train = make_train(SweepConfig(optimizer="momentum", steps=200, eval_every=50))
        lrs = jnp.array([0.01, 0.1])
        keys = jax.random.split(jax.random.key(0), 2)
        out = jax.jit(jax.vmap(train))({"learning_rate": lrs}, keys)
    """
    program = assemble(config)
    rule, names = rule_of(config), program.task.metric_names
    init, advance = program.init, program.advance
    num_intervals = config.steps // config.eval_every

    def train(hparams: Mapping[str, Any], key: jax.Array, data: DeviceData = program.data):
        unknown = sorted(set(hparams) - set(rule.defaults))
        if unknown:
            raise ValueError(
                f"{unknown[0]}: not a numeric hyperparameter of optimizer {rule.label}"
            )
        hp = train_lib.as_hparams(hparams)
        state = init(data, hp, key)
        state, first, rest = advance(data, hp, state, 0, num_intervals)
        out = {k: jnp.concatenate([first[k][None], rest[k]]) for k in names}
        out["diverged_at"] = state.diverged_at
        return (out, state) if return_state else out

    return train

"""Many models, one program: hyperparameter × seed sweeps under jit + vmap.

- ``SweepConfig``: the static settings. The dataset, model, optimizer and loss are each a
  registered name, an import path ``"pkg.module:attr"`` or the object itself: ``Arrays``
  (in-memory data, targets of any kind), a Flax module, any factory returning an
  ``optax.GradientTransformation``, a per-example loss ``loss(outputs, targets)``.
- ``Grid.build(config, values, seeds)``: the swept hyperparameters, validated once (names
  against the factory's signature, every grid point through the factory's own checks).
- ``assemble(config, grid, seeds) -> Program``: the sweep put together once (config and grid
  validated, optimizer resolved, data loaded on first use), with the pure per-member
  ``init`` and ``advance`` of ``gdyn_jax.sweep.train`` (``TrainState``, ``train_step``,
  ``evaluate``, ...) bound to its task; both entry points below are built from it.
- ``make_train(config) -> train(hparams, key)``: one pure, jit/vmap-able training run.
- ``run_sweep(config, grid, seeds, ...)``: grid × seeds flattened, chunked, computed in
  member groups of one fixed width (so a member's numbers do not depend on the sweep around
  it), sharded over a ``'sweep'`` mesh axis across devices and processes, checkpointed per
  block into an output directory it owns (re-running resumes); returns an ``xarray.Dataset``.
- ``load_results(dir)``: the Dataset a finished sweep wrote.
- ``check_task(dataset, model, loss)``: whether data, model and loss fit (classes, label
  ranges, finite inputs, a finite loss and gradient at initialisation), a one-line
  ``UsageError`` if not; every sweep runs it before its training program compiles.
- ``observe(listener)``: a context in which every ``run_sweep`` reports its progress (compiling,
  compiled, each block) to ``listener``, bar or no bar.

On CPU a sweep uses every core: importing this package asks JAX for one CPU device per core
(``cores.default_cpu_devices``) unless the user set a device count or JAX already runs.
"""

from gdyn_jax.sweep import cores
from gdyn_jax.sweep.assembly import Program, assemble, make_train
from gdyn_jax.sweep.config import LOSSES, SCHEDULES, SweepConfig
from gdyn_jax.sweep.data import Arrays
from gdyn_jax.sweep.execute import observe, run_sweep
from gdyn_jax.sweep.grid import Grid
from gdyn_jax.sweep.mesh import sweep_mesh
from gdyn_jax.sweep.results import load_results, save_results
from gdyn_jax.sweep.task_check import TaskCheck, check_task
from gdyn_jax.sweep.train import TrainState

cores.default_cpu_devices()  # before any JAX operation, if the user has not chosen

__all__ = [
    "LOSSES",
    "SCHEDULES",
    "Arrays",
    "Grid",
    "Program",
    "SweepConfig",
    "TaskCheck",
    "TrainState",
    "assemble",
    "check_task",
    "load_results",
    "make_train",
    "observe",
    "run_sweep",
    "save_results",
    "sweep_mesh",
]

"""Many models, one program: hyperparameter × seed sweeps under jit + vmap.

- ``SweepConfig``: the static settings (dataset, model, optimizer, loss, steps, batch size...).
- ``make_train(config) -> train(hparams, key)``: one pure, jit/vmap-able training run.
- ``run_sweep(config, grid, seeds, ...)``: grid × seeds flattened, chunked, sharded over a
  ``'sweep'`` mesh axis, checkpointed per block; returns an ``xarray.Dataset``.
- ``load_results(dir)``: the Dataset a finished sweep wrote.
"""

from gdyn_jax.sweep.config import LOSSES, SCHEDULES, SweepConfig, validate_grid
from gdyn_jax.sweep.execute import run_sweep, sweep_mesh
from gdyn_jax.sweep.results import load_results, save_results
from gdyn_jax.sweep.train import make_train

__all__ = [
    "LOSSES",
    "SCHEDULES",
    "SweepConfig",
    "load_results",
    "make_train",
    "run_sweep",
    "save_results",
    "sweep_mesh",
    "validate_grid",
]

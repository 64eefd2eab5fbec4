"""`gdyn list`: optimizers (hyperparameters, state size), models, datasets, experiments."""

from __future__ import annotations

import argparse

import gdyn_jax
from gdyn_jax import extras

HELP = "list the optimizers (with hyperparameters), models, datasets and experiments"
EXAMPLES = """\
examples:
  gdyn list                  everything
  gdyn list optimizers       names, optimizer-state bytes per parameter, hyperparameter defaults
  gdyn list experiments      what `gdyn reproduce NAME` runs

Besides these names, every command takes import paths `pkg.module:attr` for optimizers
(a factory), models (a Flax module), datasets (an Arrays or a function returning one) and
losses (a per-example loss); the working directory is importable. Datasets are prepared in
$GDYN_DATA_DIR, else $TFDS_DATA_DIR, else ~/tensorflow_datasets.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=("all", "optimizers", "models", "datasets", "experiments"),
        help="which list to print (default: all)",
    )


def _optimizer_lines() -> list[str]:
    optimizers = gdyn_jax.optimizers
    lines = [f"{'name':<14} {'state bytes/param':>17}  hyperparameters (defaults)"]
    for name in optimizers.names():
        defaults = optimizers.hyperparameters(name)
        hps = ", ".join(k if v is None else f"{k}={v:g}" for k, v in defaults.items())
        lines.append(f"{name:<14} {optimizers.state_bytes_per_param(name):>17g}  {hps}")
    return lines


def _model_lines() -> list[str]:
    return list(gdyn_jax.models.names())


def _dataset_lines() -> list[str]:
    return list(gdyn_jax.data.names())


def _experiment_lines() -> list[str]:
    experiments = extras.experiments
    return [f"{name:<18} {experiments.title(name)}" for name in experiments.names()]


SECTIONS = {
    "optimizers": _optimizer_lines,
    "models": _model_lines,
    "datasets": _dataset_lines,
    "experiments": _experiment_lines,
}


def run(args: argparse.Namespace) -> int:
    chosen = SECTIONS if args.what == "all" else {args.what: SECTIONS[args.what]}
    for title, lines in chosen.items():
        print(f"{title}:")
        for line in lines():
            print(f"  {line}")
    return 0

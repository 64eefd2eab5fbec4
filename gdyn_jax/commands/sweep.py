"""`gdyn sweep`: train a grid of models × seeds in one jit + vmap program and save the results.

Example::

    gdyn sweep --dataset mnist1d --model mlp --optimizer momentum \\
        --grid learning_rate=0.01,0.1 --grid beta=0.0,0.9 --seeds 4 --steps 2000 --out runs/demo

``--dataset``, ``--model``, ``--optimizer`` and ``--loss`` take a name or an import path
``pkg.module:attr`` (a factory returning an optax transform, a Flax Module class or instance,
a per-example loss function, an ``Arrays`` or a function returning one); the ``gdyn`` command
puts the working directory at the front of ``sys.path`` while it runs, so a ``rules.py``
beside you is ``--optimizer rules:qhm``.

A ``--config FILE`` (JSON) holds the same settings: the ``SweepConfig`` fields plus ``grid``
(``{name: [values]}``), ``seeds``, ``chunk_size``, ``devices``, ``member_group``,
``checkpoint_every``; flags given on the command line override it.

``--out DIR`` belongs to the sweep while it runs (``DIR/sweep.lock``). Running the same
command again after an interruption resumes from ``DIR/checkpoint`` (and after the end loads
the results); a directory holding results or a checkpoint of another sweep is refused unless
``--overwrite``; ``--resume`` insists that there is something of this sweep to resume.

Multi-host runs call ``jax.distributed.initialize`` when ``--coordinator`` (or
``$GDYN_COORDINATOR``) is set, with ``--num-processes`` and ``--process-id``; with
``--coordinator auto`` it reads them from the job scheduler (SLURM, Open MPI, ...). On CPU the
processes exchange data with gloo collectives.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

# The sweep is reached as gdyn_jax.sweep when the command runs (PEP 562: importing it, and
# jax with it, only then), so that `gdyn --help` stays instant.
import gdyn_jax
from gdyn_jax import files
from gdyn_jax.commands import analyze, plot

HELP = "train a hyperparameter grid × seeds in one jit + vmap program (sharded, resumable)"
EXAMPLES = """\
examples:
  gdyn sweep --optimizer momentum --grid learning_rate=0.01,0.1,1 --grid beta=0,0.9 \\
      --seeds 3 --steps 2000 --track-sharpness --out runs/demo --plot runs/demo.png
  gdyn sweep --config sweep.json --out runs/demo          settings from a JSON file
  gdyn sweep --dataset mydata:arrays --model nets:Net --optimizer rules:qhm \\
      --grid learning_rate=0.1 --out runs/mine            your own objects, by import path

Import paths pkg.module:attr name a function returning gdyn_jax.sweep.Arrays (or an Arrays),
a Flax module class or instance, a factory returning an optax.GradientTransformation, and a
per-example loss loss(outputs, targets); the working directory is importable. Running the
same command again resumes an interrupted sweep; `gdyn plot DIR` draws it at any time.
"""

_RUN_KEYS = ("grid", "seeds", "chunk_size", "devices", "member_group", "checkpoint_every")


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """The task's flags, shared with ``gdyn predict``: dataset, model, optimizer, --hp, loss,
    data directory (read by :func:`task_fields`, and --hp by :func:`settings`)."""
    a = parser.add_argument
    a(
        "--dataset",
        help="dataset name (`gdyn list datasets`) or pkg.module:arrays (default mnist1d)",
    )
    a("--model", help="model name (`gdyn list models`) or pkg.module:Net (default mlp)")
    a(
        "--optimizer",
        help="optimizer name (`gdyn list optimizers`) or pkg.module:factory (default sgd)",
    )
    a("--hp", action="append", metavar="NAME=V", help="fixed hyperparameter (repeat)")
    a("--loss", help="cross_entropy, mse or pkg.module:fn (default cross_entropy)")
    a(
        "--data-dir",
        help="dataset directory (default $GDYN_DATA_DIR, else $TFDS_DATA_DIR, else "
        "~/tensorflow_datasets)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What a sweep trains: the task, the grid, the run's length and what it tracks (shared
    with ``gdyn preflight``)."""
    a = parser.add_argument
    a("--config", metavar="FILE", help="JSON file with the sweep settings (flags override it)")
    add_task_arguments(parser)
    a("--grid", action="append", metavar="NAME=V1,V2,...", help="swept hyperparameter (repeat)")
    a("--seeds", type=int, help="seeds per grid point (default 1)")
    a("--steps", type=int, help="optimizer steps (default 1000)")
    a("--batch-size", help="examples per step, or 'full' (default 100)")
    a("--eval-every", type=int, help="steps between evaluations (default 100)")
    a(
        "--schedule",
        help="learning-rate schedule: constant (default), cosine, warmup_cosine, linear",
    )
    a("--warmup-steps", type=int, help="warm-up steps of warmup_cosine (default 0)")
    a("--train-subset", type=int, help="train on the first N training examples (default all)")
    a("--track-grad-norm", action="store_true", default=None, help="record the gradient norm")
    a("--track-sharpness", action="store_true", default=None, help="record the sharpness")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    a = parser.add_argument
    a("--chunk-size", type=int, help="members trained at once (bounds memory; default all)")
    a("--devices", type=int, help="devices to shard members over (default all)")
    a("--member-group", type=int, help="members computed side by side per device (1 on CPU)")
    a(
        "--checkpoint-every",
        type=int,
        help="steps per checkpointed block (default about a tenth of --steps)",
    )
    a("--out", required=True, metavar="DIR", help="output directory (owned while the sweep runs)")
    a(
        "--resume",
        action="store_true",
        default=None,
        help="require a checkpoint (or results) of this sweep in DIR (the default resumes "
        "one if there is one)",
    )
    a(
        "--overwrite",
        action="store_true",
        help="delete the results and checkpoint in DIR (of any sweep) and start afresh",
    )
    a("--no-progress", action="store_true", help="no progress bar")
    a(
        "--preflight",
        action="store_true",
        help="predict each member's phase before training (`gdyn preflight`), store it in "
        "DIR/preflight.json and, after the run, score it against the measured phases",
    )
    a(
        "--skip-predicted-divergent",
        action="store_true",
        help="with the pre-flight, train no member predicted divergent (marked skipped)",
    )
    a(
        "--plot",
        metavar="FILE",
        help="after the sweep, save its figure to FILE (as `gdyn plot DIR --out FILE`)",
    )
    _add_multihost_arguments(parser)


def _add_multihost_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a(
        "--coordinator",
        help="multi-host: coordinator address host:port, or 'auto' to take it from the job "
        "scheduler (calls jax.distributed.initialize; default $GDYN_COORDINATOR)",
    )
    a(
        "--num-processes",
        type=int,
        help="multi-host: number of processes (default $GDYN_NUM_PROCESSES)",
    )
    a(
        "--process-id",
        type=int,
        help="multi-host: this process's id (default $GDYN_PROCESS_ID)",
    )


def _env_int(flag: str, name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{flag}: ${name} must be an integer, got {value!r}") from None


def _split_assignment(flag: str, text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"{flag}: expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """``['lr=0.1,1', ...]`` -> ``{'lr': ['0.1', '1']}`` (a later NAME wins).

    The values stay text: ``Grid.build`` reads and checks the numbers, as for any grid.
    """
    grid: dict[str, list[str]] = {}
    for item in items or []:
        name, values = _split_assignment("grid", item)
        grid[name] = [v for v in (p.strip() for p in values.split(",")) if v]
    return grid


def parse_hp(items: list[str] | None) -> dict[str, float]:
    """``['beta=0.9', ...]`` -> ``{'beta': 0.9}``."""
    out: dict[str, float] = {}
    for item in items or []:
        name, value = _split_assignment("hp", item)
        out[name] = gdyn_jax.sweep.checks.to_float(f"hp: {name}", value)
    return out


def _batch_size(value: Any) -> Any:
    """'full'/'none' -> None, other text -> int; numbers are left to ``SweepConfig.validate``
    (which rejects 12.5 instead of training with 12)."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("full", "none"):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"batch_size: expected an integer or 'full', got {value!r}") from None


def _read_config(name: str) -> dict[str, Any]:
    """The JSON object in the ``--config`` file, with one-line errors naming it."""
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"config: no such file {name}")
    if path.is_dir():
        raise ValueError(f"config: {name} is a directory, expected a JSON file")
    try:
        cfg = json.loads(path.read_text())
    except OSError as e:
        raise ValueError(f"config: cannot read {name} ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config: {name} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"config: {name} must hold a JSON object")
    return cfg


def task_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The SweepConfig fields set by the task's flags (:func:`add_task_arguments`), those given."""
    fields = {k: getattr(args, k) for k in ("dataset", "model", "optimizer", "loss", "data_dir")}
    return {k: v for k, v in fields.items() if v is not None}


def settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SweepConfig fields, run_sweep options) from the config file and the flags."""
    cfg = _read_config(args.config) if args.config else {}
    run = {k: cfg.pop(k) for k in _RUN_KEYS if k in cfg}
    flags = {
        **task_fields(args),
        "steps": args.steps,
        "eval_every": args.eval_every,
        "schedule": args.schedule,
        "warmup_steps": args.warmup_steps,
        "train_subset": args.train_subset,
        "track_grad_norm": args.track_grad_norm,
        "track_sharpness": args.track_sharpness,
    }
    cfg.update({k: v for k, v in flags.items() if v is not None})
    if args.batch_size is not None:
        cfg["batch_size"] = _batch_size(args.batch_size)
    elif "batch_size" in cfg:
        cfg["batch_size"] = _batch_size(cfg["batch_size"])
    if args.hp:
        cfg["hparams"] = {**cfg.get("hparams", {}), **parse_hp(args.hp)}
    if args.grid:
        run["grid"] = {**run.get("grid", {}), **parse_grid(args.grid)}
    for key in ("seeds", "chunk_size", "devices", "member_group", "checkpoint_every"):
        value = getattr(args, key, None)  # `gdyn preflight` has only the seeds
        if value is not None:
            run[key] = value
    return cfg, run


def _distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from the flags (or ``$GDYN_*``); never on import."""
    coordinator = args.coordinator or os.environ.get("GDYN_COORDINATOR") or None
    num = args.num_processes
    num = _env_int("num_processes", "GDYN_NUM_PROCESSES") if num is None else num
    pid = args.process_id
    pid = _env_int("process_id", "GDYN_PROCESS_ID") if pid is None else pid
    if coordinator is None:
        if num is not None or pid is not None:
            raise ValueError("coordinator: --num-processes/--process-id need --coordinator")
        return
    if coordinator == "auto":
        coordinator = None  # jax.distributed.initialize asks the job scheduler
    elif num is None or pid is None:
        raise ValueError("coordinator: needs --num-processes and --process-id (or 'auto')")
    gdyn_jax.sweep.hosts.initialize(coordinator, num, pid)


def run(args: argparse.Namespace) -> int:
    """Builds the config from the flags, joins the processes, runs the sweep (which validates
    and assembles it, once) and prints a summary."""
    cfg, options = settings(args)
    if args.plot:
        analyze.check_plot_path(args.plot)  # before anything is trained
    config = gdyn_jax.sweep.SweepConfig.from_dict(cfg)
    _distributed(args)
    grid = options.pop("grid", {})
    seeds = options.pop("seeds", 1)
    pre = None
    if args.preflight or args.skip_predicted_divergent:
        pre = gdyn_jax.predictions.preflight(config, grid, seeds)
        if args.skip_predicted_divergent:
            options["skip"] = pre.diverges()
    start = time.perf_counter()
    ds = gdyn_jax.sweep.run_sweep(
        config,
        grid,
        seeds,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **options,
    )
    elapsed = time.perf_counter() - start
    if not gdyn_jax.sweep.hosts.is_main_process():  # process 0 speaks for the group
        return 0
    members = int(ds["diverged_at"].size)
    diverged = int((ds["diverged_at"] >= 0).sum())
    print(
        f"{members} members × {config.steps} steps in {elapsed:.1f} s; "
        f"{diverged} diverged; {_best(ds)}; results: {Path(args.out) / 'results.npz'}"
    )
    if pre is not None:
        _report_preflight(pre, ds, args.out)
    if args.plot:
        note = plot.draw(ds, args.plot, **plot.plot_options(args))
        print(f"wrote {args.plot}" + (f"; {note}" if note else ""))
    return 0


def _report_preflight(pre, ds, out: str) -> None:
    """Stores the predictions in ``out/preflight.json`` beside the results, and prints how
    they fared against each member's measured phase."""
    scored = gdyn_jax.predictions.score_sweep(pre, ds, pre.classes)
    record = pre.to_json() | {"measured": scored["measured"].tolist()}
    record["agreement"] = {k: list(v) for k, v in scored["agreement"].items()}
    record["divergence_call"] = scored["divergence_call"]
    files.write_text(Path(out) / "preflight.json", json.dumps(record, indent=1))
    parts = [f"{p} {right}/{n}" for p, (right, n) in scored["agreement"].items() if n]
    print(
        f"pre-flight ({pre.seconds['total']:.1f} s): measured phase as predicted: "
        + "; ".join(parts)
        + f"; divergent or not called right for {100 * scored['divergence_call']:.0f} %"
    )


def _best(ds) -> str:
    """The best final test accuracy (class labels), else the best final test loss."""
    if "test_accuracy" in ds:
        final = ds["test_accuracy"].isel(step=-1)
        best = float(final.max()) if bool(final.notnull().any()) else float("nan")
        return f"best final test accuracy {best:.4f}"
    final = ds["test_loss"].isel(step=-1)
    best = float(final.min()) if bool(final.notnull().any()) else float("nan")
    return f"best final test loss {best:.4g}"

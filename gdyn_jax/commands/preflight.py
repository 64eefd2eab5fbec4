"""`gdyn preflight`: the phase of every grid point of a sweep, predicted before any training.

Takes the flags of ``gdyn sweep`` that say what is trained (dataset, model, optimizer, loss,
``--grid``, ``--hp``, seeds, steps, batch size, schedule, import paths, ``--config``) and
refuses what ``gdyn sweep`` refuses, the same way; it trains nothing, so there is no
``--out``. At each seed's initialisation it measures the sharpness (Lanczos; the batch
sharpness for mini-batches; the preconditioned one for Adam-type rules after ``--warmup``
updates of their statistics) and the cubic and quartic behaviour of the loss along the top
eigenvector, and joins them to the rule's loop at every grid point and every step of the
schedule (``gdyn_jax.predictions.preflight``); above the rule's limit, the divergence edge
in the learning rate is probed by ``--probe-rounds`` runs of ``--probe-steps`` steps (by
default the run's own ``--steps``; the rounds scout 32 steps, and the bracket is confirmed
over the whole run) of the rule itself, all seeds at once
(``gdyn_jax.predictions.probe``; ``--probe-steps 0``: the second-order model decides).
Below the limit, the edge of stability within the run is timed by the sharpening rate at
init, or with ``--flow-steps N`` by one gradient flow per seed of at most N steps, read at
each rule's effective step (``gdyn_jax.predictions.preflight_flow``; full batch, non-adaptive
rules).
Prints a table, or ``--json``: one object whose ``points`` is a list of ``{hparams, phase,
limit, curvature, margin, ...}``, plus ``seconds``. ``--plot FILE`` draws the phase map over
the grid, with the measured boundary of a finished sweep given by ``--results DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import gdyn_jax
from gdyn_jax import extras, files
from gdyn_jax.commands import analyze, sweep

HELP = "predict each grid point's phase (stable, edge of stability, catapult, divergent)"
EXAMPLES = """\
examples:
  gdyn preflight --optimizer momentum --hp beta=0.9 --loss mse --batch-size full \\
      --grid learning_rate=0.01,0.03,0.1,0.3,1 --seeds 2 --steps 200
  gdyn preflight --model nets:Net --dataset mydata:arrays --optimizer adam \\
      --grid learning_rate=1e-4,1e-3,1e-2 --json          your own model and data
  gdyn preflight --config sweep.json --plot phases.png --results runs/demo
"""

_COLOURS = {
    "stable": "tab:green",
    "edge of stability": "tab:olive",
    "catapult": "tab:orange",
    "divergent": "tab:red",
    "unknown": "tab:gray",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sweep.add_run_arguments(parser)
    a = parser.add_argument
    a("--examples", default="1000", help="examples of the measurements at init, or 'all'")
    a("--iters", type=int, default=20, help="Lanczos steps (default 20)")
    a("--batches", type=int, default=16, help="mini-batches of the batch sharpness (16)")
    a("--warmup", type=int, default=10, help="updates of an adaptive rule's statistics (10)")
    a(
        "--probe-steps",
        type=int,
        default=None,
        help="steps of the runs that probe the divergence edge (default: the run's --steps, "
        "since momentum with cross-entropy can diverge late; 0: the second-order model "
        "decides catapult against divergence)",
    )
    a(
        "--probe-rounds",
        type=int,
        default=20,
        help="most bracketing rounds of the probe (default 20; they stop once every bracket "
        "is within 5 %% and checked by three rates below it)",
    )
    a(
        "--flow-steps",
        type=int,
        default=0,
        help="time the edge of stability by one gradient flow per seed of at most this many "
        "steps (full batch, non-adaptive rules; default 0: by the sharpening rate at init)",
    )
    a("--json", action="store_true", help="print one JSON object instead of the table")
    a("--plot", metavar="FILE", help="save the phase map over the grid to FILE")
    a("--results", metavar="DIR", help="a finished sweep: its measured boundary on --plot")


def _options(args: argparse.Namespace) -> dict:
    """The measurement options, checked before anything is loaded."""
    examples = args.examples
    if str(examples).lower() == "all":
        examples = None
    else:
        try:
            examples = int(examples)
        except ValueError:
            raise ValueError(
                f"examples: expected a positive integer or 'all', got {examples!r}"
            ) from None
        if examples < 1:
            raise ValueError(f"examples: expected a positive integer or 'all', got {examples}")
    options = {
        "iters": args.iters,
        "batches": args.batches,
        "warmup": args.warmup,
        "probe_steps": args.probe_steps,
        "probe_rounds": args.probe_rounds,
        "flow_steps": args.flow_steps,
    }
    gdyn_jax.predictions.check_preflight_options(**options)
    return {"examples": examples, **options}


def run(args: argparse.Namespace) -> int:
    """Validates the flags, predicts, prints (and draws)."""
    cfg, options = sweep.settings(args)
    measure = _options(args)
    if args.plot:
        analyze.check_plot_path(args.plot)
    if args.results and not Path(args.results).is_dir():
        raise ValueError(f"results: expected the folder of a finished sweep, got {args.results!r}")
    config = gdyn_jax.sweep.SweepConfig.from_dict(cfg)
    grid, seeds = options.get("grid", {}), options.get("seeds", 1)
    pre = gdyn_jax.predictions.preflight(config, grid, seeds, **measure)
    if args.json:
        print(json.dumps(pre.to_json()))
    else:
        print(_table(pre))
    if args.plot:
        draw(pre, args.plot, args.results)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def _table(pre) -> str:
    data = pre.to_json()
    head = [*pre.names, "phase", "limit", "curvature", "margin", "step", "edge"]
    rows = [
        [
            *(f"{v:.4g}" for v in p["hparams"].values()),
            p["phase"],
            *(f"{p[k]:.4g}" if p[k] is not None else "-" for k in ("limit", "curvature", "margin")),
            "-" if p["step"] is None else str(p["step"]),
            "-" if p.get("edge") is None else f"{p['edge']:.4g}",
        ]
        for p in data["points"]
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]
    ]
    s = pre.seconds
    lines.append(
        f"{len(rows)} points × {pre.phase.shape[1]} seeds in {s['total']:.2f} s (measuring "
        f"{s['measure']:.2f} s, the rule's loops {s['rule']:.2f} s, probing the divergence "
        f"edge {s['probe']:.2f} s"
        + (f", the gradient flow {s['flow']:.2f} s" if "flow" in s else "")
        + f"; compiling {s['compile']:.1f} s apart)"
        + (f"; unknown: {pre.reason}" if pre.reason else "")
    )
    return "\n".join(lines)


def draw(pre, path: str, results: str | None) -> None:
    """The phase of each (point, seed) over the first grid axis; the measured boundary (half
    the seeds diverged) of the sweep in ``results``, if given."""
    fig = extras.figure.Figure(figsize=(7, 3))
    ax = fig.subplots()
    x = [float(p[0]) for p in pre.points] if pre.names else [0.0] * len(pre.points)
    for seed in range(pre.phase.shape[1]):
        colours = [_COLOURS[p] for p in pre.phase[:, seed]]
        ax.scatter(x, [seed] * len(x), c=colours, s=30)
    for phase, colour in _COLOURS.items():
        ax.scatter([], [], c=colour, label=phase)
    if results:
        ds = gdyn_jax.sweep.load_results(results)
        measured = gdyn_jax.predictions.score_sweep(pre, ds, pre.classes)["measured"]
        frac = (measured == "divergent").mean(axis=1).tolist()
        for i in range(len(frac) - 1):
            if frac[i] < 0.5 <= frac[i + 1]:
                ax.axvline(
                    math.sqrt(abs(x[i] * x[i + 1])), color="k", ls="--", label="measured boundary"
                )
    if pre.names and min(x) > 0:
        ax.set_xscale("log")
    ax.set(xlabel=pre.names[0] if pre.names else "", ylabel="seed")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    files.save_figure(fig, path)

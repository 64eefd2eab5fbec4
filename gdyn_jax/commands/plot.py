"""`gdyn plot DIR`: the figure of a sweep, finished or still running.

``gdyn plot DIR [--out FILE] [--metric NAME] [--x NAME] [--select NAME=VALUE ...]
[--sharpness initial|max|none]``

Reads ``DIR/results.npz`` (a finished sweep), else ``DIR/checkpoint/state.npz`` (a running or
interrupted one: the members trained so far). Top row: the training curves of the metric
coloured by the swept value ``--x`` (default: the first grid axis), mean ± sd over the seeds;
bottom row: the final metric (each run's last evaluation) over ``--x``, diverged points marked
with the step they diverged at. One column per value of the other grid axes (fix some with
``--select`` when there are many). Where the rule is a linear time-invariant loop and the sweep
tracked the sharpness (``--track-sharpness``), the bottom panels draw the swept value at which
the rule's stability limit on a quadratic (``linearize.max_stable_curvature`` at each grid
point) meets the measured sharpness (at initialisation, or its largest value over the run).
The computation is :mod:`gdyn_jax.commands.sweep_figure`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gdyn_jax import commands
from gdyn_jax.commands import analyze

HELP = "plot a sweep's training curves, final metric over the grid and stability limit"
EXAMPLES = """\
examples:
  gdyn plot runs/demo                                   writes runs/demo/sweep.png
  gdyn plot runs/demo --out lr.pdf --metric train_loss
  gdyn plot runs/demo --x beta --select learning_rate=0.1
  gdyn sweep ... --track-sharpness --out runs/demo --plot demo.png   (the same, after a sweep)

A running or interrupted sweep is drawn from its checkpoint (the members trained so far).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("dir", metavar="DIR", help="a sweep's output directory (`gdyn sweep --out DIR`)")
    a("--out", metavar="FILE", help="the figure's file (default DIR/sweep.png)")
    a(
        "--metric",
        help="the metric drawn: train_loss, test_loss, test_accuracy, sharpness, ... (default "
        "test_accuracy for class labels, else test_loss)",
    )
    a("--x", metavar="NAME", help="the grid axis on the x axis (default: the first)")
    a(
        "--select",
        action="append",
        metavar="NAME=VALUE",
        help="fix a grid axis at one of its values (repeat); other axes give one column each",
    )
    a(
        "--sharpness",
        default="initial",
        choices=("initial", "max", "none"),
        help="the measured sharpness the stability limit is drawn at: at initialisation "
        "(default), its largest value over the run, or none (no limit)",
    )


def plot_options(options: argparse.Namespace) -> dict:
    """The keyword arguments of ``sweep_figure.figure`` from parsed ``gdyn plot`` options
    (their defaults where ``options`` lacks them, as ``gdyn sweep``'s do)."""
    return {
        "metric": getattr(options, "metric", None),
        "x": getattr(options, "x", None),
        "selections": getattr(options, "select", None),
        "sharpness_at": getattr(options, "sharpness", "initial"),
    }


def draw(ds, path: str, where: str = "finished", **options) -> str:
    """Draws the sweep ``ds`` into ``path``; returns the note on its stability limit."""
    helper = commands.sweep_figure
    fig, note = helper.figure(ds, where=where, **options)
    helper.save(fig, path)
    return note


def run(args: argparse.Namespace) -> int:
    if not Path(args.dir).is_dir():
        raise ValueError(f"DIR: {args.dir} is not a directory")
    out = args.out or str(Path(args.dir) / "sweep.png")
    analyze.check_plot_path(out, "--out")  # before anything is read
    ds, where = commands.sweep_figure.load(args.dir)
    note = draw(ds, out, where, **plot_options(args))
    state = "" if where == "finished" else f" ({where})"
    print(f"wrote {out}{state}" + (f"; {note}" if note else ""))
    return 0

"""`gdyn analyze`: an optimizer's closed loop on a quadratic, read as a control system.

``gdyn analyze NAME --hp k=v ... --curvature H [--steps N] [--json] [--plot FILE]
[--robust MU,L [--iqc IQC] [--pep N]]``

``--curvature`` is one positive curvature, or a comma-separated list (a diagonal Hessian).
With one curvature, ``num``/``den``/``zeros``/``dc_gain``/``step_info`` describe the transfer
function reference -> θ; with several, they are lists with one entry per eigenmode, and
``poles`` are all the closed-loop poles. ``--json`` prints one JSON object (fields: optimizer,
hyperparameters, curvature, num, den, poles, zeros, dc_gain, spectral_radius, stable, exact,
reason, max_stable_curvature, step_info; complex numbers as [re, im]; non-finite numbers as
null; floats rounded to 12 significant digits). ``reason`` lists why the system is not the
exact closed loop (one sentence per tag: nonlinear, random, time-varying, periodic; empty
when exact); the text output prints them under ``exact: False``. ``--plot FILE`` saves step
response, pole-zero map and root locus (in the learning rate) in one figure. ``--robust MU,L``
adds the rate certified over every MU-strongly convex, L-smooth loss (``linearize.robust_rate``,
needs the ``[robust]`` extra) beside the worst rate on quadratics with curvatures in [MU, L];
in JSON, the field ``robust`` (mu, L, iqc, certified_rate (null: no certificate),
quadratic_rate, bracket, status, outcome, reason). Answers that can fail numerically come with
one of three outcomes, proven, disproven or undecided, and a reason: the JSON field
``outcomes`` holds those of ``stable`` and ``max_stable_curvature``, ``robust`` its own; an
undecided answer is null in JSON and ``undecided (reason)`` in the text
(:mod:`gdyn_jax.commands.closed_loop`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import pathlib

import gdyn_jax
from gdyn_jax import commands, extras

HELP = "analyze an optimizer's update rule as a discrete-time control system on a quadratic"
EXAMPLES = """\
examples:
  gdyn analyze momentum --hp learning_rate=0.1 --hp beta=0.9 --curvature 1.0
  gdyn analyze sgd --hp learning_rate=0.1 --curvature 1,10 --json
  gdyn analyze nesterov --hp learning_rate=0.1 --curvature 1 --plot nesterov.png
  gdyn analyze momentum --hp learning_rate=0.1 --curvature 1 --robust 1,10   # [robust] extra
  gdyn analyze rules:qhm --hp learning_rate=0.1 --curvature 1   # a factory in ./rules.py

Hyperparameters not given take the optimizer's defaults (`gdyn list optimizers` shows them);
the text, the JSON and the --plot title show every value used.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        metavar="NAME",
        help="optimizer name (see `gdyn list optimizers`) or import path pkg.module:factory "
        "(a function returning an optax.GradientTransformation)",
    )
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="K=V",
        help="a hyperparameter, e.g. --hp learning_rate=0.1 (repeatable; the others take the "
        "optimizer's defaults)",
    )
    parser.add_argument(
        "--curvature",
        required=True,
        metavar="H",
        help="curvature h > 0, or comma-separated curvatures (diagonal Hessian)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="steps of the step response for step_info (default: until settled)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="save step response, pole-zero map and root locus (in the learning rate, 0.05x "
        "to 5x the value) to FILE (.png, .pdf, .svg, ...)",
    )
    parser.add_argument(
        "--robust",
        default=None,
        metavar="MU,L",
        help="also certify a rate over all MU-strongly convex, L-smooth losses (IQC, SDP)",
    )
    parser.add_argument(
        "--iqc",
        default="off_by_one",
        choices=("off_by_one", "sector"),
        help="IQC for --robust (default: off_by_one)",
    )
    parser.add_argument(
        "--pep",
        type=int,
        default=None,
        metavar="N",
        help="with --robust: also the exact worst case after N steps (PEP, linearize.rate_bracket)",
    )


def parse_hyperparameters(items: list[str], allowed: dict) -> dict[str, float]:
    """``['k=v', ...]`` -> {k: float(v)}, checked against the optimizer's names."""
    hp: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--hp: expected K=V, got {item!r}")
        if key not in allowed:
            raise ValueError(
                f"--hp: unknown hyperparameter {key!r}; expected one of {', '.join(allowed)}"
            )
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--hp: {key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"--hp: {key}: expected a finite number, got {value!r}")
        hp[key] = number
    return hp


def parse_class(text: str) -> tuple[float, float]:
    """``'MU,L'`` -> (mu, L) with 0 < mu <= L, both finite."""
    parts = str(text).split(",")
    try:
        mu, L = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--robust: expected MU,L (two numbers), got {text!r}") from None
    if not (math.isfinite(mu) and math.isfinite(L) and 0 < mu <= L):
        raise ValueError(f"--robust: expected MU,L with 0 < MU <= L, got {text!r}")
    return mu, L


def check_plot_path(path: str, flag: str = "--plot") -> None:
    """``flag`` names a file of a format matplotlib writes, in an existing directory."""
    target = pathlib.Path(path)
    if target.is_dir():
        raise ValueError(f"{flag}: {path} is a directory; give a file name such as {path}/a.png")
    formats = sorted(extras.figure.Figure().canvas.get_supported_filetypes())
    if target.suffix.lstrip(".").lower() not in formats:
        raise ValueError(
            f"{flag}: expected a file name ending in one of .{', .'.join(formats)}; got {path!r}"
        )
    if not target.parent.is_dir():
        raise ValueError(f"{flag}: directory {target.parent} does not exist")


def run(args: argparse.Namespace) -> int:
    optimizers = gdyn_jax.optimizers  # imported now, not by `gdyn --help`
    closed_loop = commands.closed_loop
    if args.plot:
        check_plot_path(args.plot)  # before any analysis
    allowed = optimizers.hyperparameters(args.name)  # ValueError naming `optimizer` if unknown
    hp = parse_hyperparameters(args.hp, allowed)
    params = inspect.signature(optimizers.get(args.name)).parameters
    for key in allowed:
        if params[key].default is inspect.Parameter.empty and key not in hp:
            raise ValueError(f"--hp: {key} is required, e.g. --hp {key}=0.1")
    hessian = closed_loop.parse_curvature(args.curvature)
    mu_L = None if args.robust is None else parse_class(args.robust)
    if args.pep is not None and mu_L is None:
        raise ValueError("--pep: needs --robust MU,L (the class of the worst case)")
    result = closed_loop.analyze(args.name, hp, hessian, args.steps)
    if mu_L is not None:
        result["robust"] = closed_loop.robust(optimizers.get(args.name)(**hp), *mu_L, args.iqc)
    if args.pep is not None:
        opt = optimizers.get(args.name)(**hp)
        result["pep"] = closed_loop.pep(opt, *mu_L, args.pep, result["robust"]["certified_rate"])
    result = closed_loop.clean(result)
    if args.plot:
        # Every hyperparameter the text shows, defaults included: the title names them and the
        # root locus sweeps the learning rate even when it is a default.
        used = {k: hp.get(k, v) for k, v in allowed.items() if hp.get(k, v) is not None}
        closed_loop.plot(args.plot, args.name, used, hessian, result, args.steps)
    print(json.dumps(result) if args.json else closed_loop.text(result))
    return 0

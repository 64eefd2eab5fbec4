"""`gdyn predict`: a network's training curve predicted from the optimizer's code, mode by mode.

Example::

    gdyn predict --model fc --loss mse --optimizer momentum --hp learning_rate=0.01 \\
        --hp beta=0.9 --examples 256 --steps 500 --check --json

The empirical NTK of the model at the sweep's initialisation of ``--seed`` on the first
``--examples`` training examples, its eigenmodes, and each mode's response through the rule's
own closed loop (:mod:`gdyn_jax.predictions.ntk_loop`): the predicted train loss at every step,
the continuous-time baseline beside it (what neural-tangents computes), and per mode its
curvature, pole modulus, regime and settling step. ``--check`` trains the real network with the
same initialisation and batches (the sweep's step) and adds the measured curve and the relative
errors. ``--json`` prints one object (``steps``, ``train_loss``, ``modes``, and with ``--check``
``measured_train_loss``, ``relative_error``, ``continuous_relative_error``,
``mode_relative_error``, ``continuous_mode_relative_error``, each ``{median, max}``).
``--schedule`` (and ``--warmup-steps``) scales the learning rate over ``--steps`` as in ``gdyn
sweep``: each mode's loop is then time-varying, run from the rule's code with the scheduled rate
at every step, and the continuous baseline integrates its ODE with the same rates.
``--batch-size B`` adds mini-batch SGD's expected curve (``expected_train_loss``: the mean
curve plus each mode's noise floor, ``noise_floor``; with ``--check``
``expected_relative_error`` against the one run of that seed's batch order).

Exact for the linearised network on the square loss (``--loss mse``) and any affine rule;
another loss is its Gauss-Newton model at initialisation (``exact: false``), and ``--exact``
refuses it. An adaptive rule (Adam: one ``optax.ScaleByAdamState``) is predicted with its
preconditioner frozen after ``--precondition-warmup`` updates of its statistics at
initialisation (:mod:`gdyn_jax.predictions.ntk_adam`: the modes of :math:`J P^{-1} J^\top`,
each through the rule's loop with ``nu`` held): an approximation of a real run, whose ``nu``
keeps moving (``exact: false``, ``preconditioner`` in the JSON; full batch, constant rate). A
rule that is not affine even so (clipping, sign-based) is refused with linearize's reason; more
examples than the kernel fits in memory are refused with the figure.
"""

from __future__ import annotations

import argparse
import json
import math

import gdyn_jax
from gdyn_jax import extras
from gdyn_jax.commands import analyze, sweep

HELP = "predict a network's training curve mode by mode from the NTK and the rule's closed loop"
EXAMPLES = """\
examples:
  gdyn predict --model fc --loss mse --optimizer sgd --hp learning_rate=0.02 --check
  gdyn predict --model fc --loss mse --optimizer momentum --hp learning_rate=0.005 \\
      --hp beta=0.9 --steps 500 --check --json > curve.json
  gdyn predict --model nets:Net --optimizer rules:qhm --hp learning_rate=0.1 --plot curve.png
  gdyn predict --model fc --loss mse --optimizer adam --hp learning_rate=1e-4 --check
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sweep.add_task_arguments(parser)
    a = parser.add_argument
    a("--examples", type=int, default=256, help="the first N training examples (default 256)")
    a("--steps", type=int, default=500, help="optimizer steps (default 500)")
    a("--seed", type=int, default=0, help="initialisation seed, as a sweep's (default 0)")
    a(
        "--batch-size",
        type=int,
        help="mini-batch SGD: also the expected curve with each mode's noise floor (default: "
        "full batch)",
    )
    a(
        "--schedule",
        help="learning-rate schedule over --steps: constant (default), cosine, warmup_cosine, "
        "linear (the loop is then time-varying; per-mode poles are at the peak rate)",
    )
    a("--warmup-steps", type=int, help="warm-up steps of warmup_cosine (default 0)")
    a(
        "--precondition-warmup",
        type=int,
        metavar="N",
        help="an adaptive rule (Adam): its preconditioner is frozen after N updates of its "
        "statistics at initialisation (default 10); the curve is then an approximation",
    )
    a("--check", action="store_true", help="also train the real network and report the errors")
    a("--exact", action="store_true", help="refuse a loss that is not quadratic in the outputs")
    a("--json", action="store_true", help="print one JSON object")
    a("--plot", metavar="FILE", help="save the predicted (and measured) curves and modes")


def _config(args: argparse.Namespace):
    cfg = {**sweep.task_fields(args), "batch_size": args.batch_size}
    cfg.update({k: getattr(args, k) for k in ("schedule", "warmup_steps") if getattr(args, k)})
    return gdyn_jax.sweep.SweepConfig.from_dict(cfg), sweep.parse_hp(args.hp)


def _check_counts(args: argparse.Namespace) -> None:
    if args.precondition_warmup is not None:
        gdyn_jax.predictions.ntk_adam.check_warmup(args.precondition_warmup)
    counts = [("examples", args.examples), ("steps", args.steps)]
    counts += [("batch_size", args.batch_size)] if args.batch_size is not None else []
    for flag, value in counts:
        if value < 1:
            raise ValueError(f"{flag}: expected an integer >= 1, got {value}")
    if args.batch_size is not None:  # before any work
        gdyn_jax.predictions.ntk_noise.check_constant_rate(args.schedule)


def run(args: argparse.Namespace) -> int:
    _check_counts(args)
    if args.plot:
        analyze.check_plot_path(args.plot)
    config, hp = _config(args)
    npred = gdyn_jax.predictions.ntk_predict
    program, hp, state = npred.prepare(
        config, hp, steps=args.steps, seed=args.seed, examples=args.examples
    )
    warmup = (
        {}
        if args.precondition_warmup is None
        else {"precondition_warmup": args.precondition_warmup}
    )
    prediction = npred.predict_program(program, hp, state, args.steps, args.exact, **warmup)
    measured = npred.measured_run(program, hp, args.seed, args.steps) if args.check else None
    out = gdyn_jax.predictions.ntk_report.summary(prediction, measured)
    if args.batch_size is not None and args.batch_size < args.examples:
        expected, floor = gdyn_jax.predictions.ntk_noise.minibatch_loss(prediction, args.batch_size)
        out.update(gdyn_jax.predictions.ntk_report.minibatch(expected, floor, measured))
    if args.json:
        print(json.dumps(out))
    else:
        _print(out)
    if args.plot:
        _plot(out, args.plot)
        if not args.json:
            print(f"wrote {args.plot}")
    return 0


def _fmt(value) -> str:
    return "nan" if value is None else f"{value:.4g}"


def _print(out: dict) -> None:
    steps = out["steps"][-1]
    print(
        f"{out['examples']} examples, {out['num_modes']} modes, top curvature "
        f"{_fmt(out['top_curvature'])}; prediction {out['seconds']:.1f} s"
        + ("" if out["exact"] or "preconditioner" in out else " (Gauss-Newton approximation)")
    )
    if "preconditioner" in out:
        print(f"approximation: {out['preconditioner']['note']}")
    marks = sorted({0, steps // 10, steps // 2, steps})
    for k in marks:
        line = f"step {k:>6}: predicted {_fmt(out['train_loss'][k])}"
        line += (
            f", continuous ({out['continuous']['kind']}) {_fmt(out['continuous_train_loss'][k])}"
        )
        if "measured_train_loss" in out:
            line += f", measured {_fmt(out['measured_train_loss'][k])}"
        print(line)
    if "relative_error" in out:
        for key in ("relative_error", "continuous_relative_error"):
            e = out[key]
            print(f"{key}: median {_fmt(e['median'])}, max {_fmt(e['max'])}")
        for key in ("mode_relative_error", "continuous_mode_relative_error"):
            e = out[key]
            print(f"{key} (fast modes, first 100 steps): median {_fmt(e['median'])}")
    print(f"{'mode':>6} {'curvature':>11} {'|pole|':>8} {'regime':>12} {'settling':>9}")
    for m in out["modes"]:
        settle = "-" if m["settling"] < 0 else str(m["settling"])
        print(
            f"{m['index']:>6} {_fmt(m['eigenvalue']):>11} {_fmt(m['pole_modulus']):>8} "
            f"{m['regime']:>12} {settle:>9}"
        )


def _plot(out: dict, path: str) -> None:
    fig = extras.figure.Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    steps = out["steps"]
    left.semilogy(steps, out["train_loss"], label="predicted (discrete loop)")
    left.semilogy(steps, out["continuous_train_loss"], "--", label="continuous time")
    if "measured_train_loss" in out:
        left.semilogy(steps, out["measured_train_loss"], ":", color="k", label="measured")
    left.set(xlabel="step", ylabel="train loss", title="training curve")
    left.legend()
    for m in out["modes"][:8]:
        scale = m["predicted"][0] or 1.0
        values = [math.nan if v is None else v / scale for v in m["predicted"]]
        (line,) = right.plot(steps, values, label=f"mode {m['index']} ({m['regime']})")
        if "measured" in m:
            right.plot(steps, [v / scale for v in m["measured"]], ":", color=line.get_color())
    right.set(xlabel="step", ylabel="projection / initial", title="per-mode responses")
    right.set_ylim(-1.5, 1.5)
    right.legend(fontsize=7)
    fig.savefig(path)

"""`gdyn analyze`: an optimizer's closed loop on a quadratic, read as a control system.

``gdyn analyze NAME --hp k=v ... --curvature H [--steps N] [--json] [--plot FILE]
[--robust MU,L [--iqc IQC]]``

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
quadratic_rate, bracket, status).
"""

from __future__ import annotations

import argparse
import json
import math

from gdyn_jax import files

HELP = "analyze an optimizer's update rule as a discrete-time control system on a quadratic"
_DIGITS = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="optimizer name (see `gdyn list optimizers`)")
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="K=V",
        help="a hyperparameter, e.g. --hp learning_rate=0.1 (repeatable)",
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
        help="save step response, pole-zero map and root locus to FILE",
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


def parse_curvature(text: str):
    """A float, or comma-separated floats (a diagonal Hessian), validated."""
    import numpy as np

    from gdyn_jax.linearize import validate_hessian

    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(
            f"--curvature: expected a number or comma-separated numbers, got {text!r}"
        ) from None
    hessian = values[0] if len(values) == 1 else np.diag(values)
    if len(values) > 1 and any(v <= 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"--curvature: expected curvatures > 0, got {text!r}")
    try:
        validate_hessian(hessian)
    except ValueError as error:
        raise ValueError(f"--curvature: {str(error).removeprefix('hessian: ')}") from None
    return hessian


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


def robust(opt, mu: float, L: float, iqc: str) -> dict:
    """The certified rate over S(mu, L) beside the quadratic one, as the JSON field."""
    from gdyn_jax import linearize

    try:
        result = linearize.robust_rate(opt, mu, L, iqc=iqc)
    except ImportError as error:
        raise ValueError(f"--robust: {error}") from None
    except ValueError as error:
        raise ValueError(f"--robust: {str(error).removeprefix('opt: ')}") from None
    return {
        "mu": mu,
        "L": L,
        "iqc": iqc,
        "certified_rate": result.rate,
        "quadratic_rate": result.quadratic_rate,
        "bracket": list(result.bracket),
        "status": result.status,
    }


def _num(x):
    x = float(x)
    return float(f"{x:.{_DIGITS}g}") if math.isfinite(x) else None


def _pairs(values):
    return [[_num(complex(v).real), _num(complex(v).imag)] for v in values]


def _clean(value):
    """JSON-able: numpy scalars/arrays to Python, non-finite floats to None."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.floating | np.integer):
        return _num(value)
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


def _overflow(hp: dict[str, float], hessian) -> ValueError:
    """The closed loop does not fit in float64: blame the largest number given."""
    import numpy as np

    given = {f"--hp: {k}": abs(v) for k, v in hp.items()}
    given["--curvature"] = float(np.max(np.abs(np.atleast_1d(np.diag(np.atleast_2d(hessian))))))
    culprit = max(given, key=given.get)
    value = hp.get(culprit.removeprefix("--hp: "), given["--curvature"])
    return ValueError(
        f"{culprit}: {value:g} is too large: the closed loop's transfer function overflows "
        "float64; expected a smaller value"
    )


def analyze(name: str, hp: dict[str, float], hessian, steps: int | None = None) -> dict:
    """The analysis as a dict (the JSON object's fields, before rounding)."""
    import numpy as np

    if steps is not None and steps < 1:
        raise ValueError(f"--steps: expected a positive integer, got {steps}")
    # Numbers so large that the closed loop overflows are reported (naming the culprit),
    # not warned about by numpy on the way.
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            out = _analysis(name, hp, hessian, steps)
        except np.linalg.LinAlgError:
            raise _overflow(hp, hessian) from None
    coefficients = np.concatenate([np.ravel(np.asarray(out[k], float)) for k in ("num", "den")])
    if not np.all(np.isfinite(coefficients)):
        raise _overflow(hp, hessian)
    return out


def _analysis(name: str, hp: dict[str, float], hessian, steps: int | None) -> dict:
    import numpy as np

    from gdyn_jax import linearize, optimizers

    factory = optimizers.get(name)
    try:
        opt = factory(**hp)
    except TypeError as error:
        raise ValueError(f"--hp: {error}") from None
    system = linearize.linearize(opt, hessian)
    rho = linearize.spectral_radius(system)
    out = {
        "optimizer": name,
        "hyperparameters": {
            k: hp.get(k, v)
            for k, v in optimizers.hyperparameters(name).items()
            if hp.get(k, v) is not None
        },
        "curvature": float(hessian) if np.ndim(hessian) == 0 else np.diag(hessian).tolist(),
    }
    if system.num_params == 1:
        tf = linearize.transfer_function(system)
        info = linearize.step_info(system, steps)
        out.update(
            num=tf.num.tolist(),
            den=tf.den.tolist(),
            poles=_pairs(tf.poles()),
            zeros=_pairs(tf.zeros()),
            dc_gain=tf.dcgain(),
        )
    else:
        modes = [linearize.transfer_function(s) for _, s in linearize.mode_systems(opt, hessian)]
        info = [linearize.step_info(s, steps) for _, s in linearize.mode_systems(opt, hessian)]
        poles = np.linalg.eigvals(system.A)
        out.update(
            num=[tf.num.tolist() for tf in modes],
            den=[tf.den.tolist() for tf in modes],
            poles=_pairs(np.sort_complex(poles)),
            zeros=[_pairs(tf.zeros()) for tf in modes],
            dc_gain=[tf.dcgain() for tf in modes],
        )
    out.update(
        spectral_radius=rho,
        stable=bool(rho < 1.0),
        exact=bool(system.exact),
        reason=list(system.notes),
        max_stable_curvature=linearize.max_stable_curvature(opt),
        step_info=info,
    )
    return out


def _plot(path: str, name: str, hp: dict, hessian, result: dict, steps: int | None) -> None:
    import numpy as np

    from gdyn_jax import linearize, optimizers, plotting

    factory = optimizers.get(name)
    system = linearize.linearize(factory(**hp), hessian)
    n_steps = steps or min(linearize.default_steps(system), 2000)
    step = linearize.step_response(system, n_steps)
    poles = [complex(*p) for p in result["poles"]]
    zeros = result["zeros"] if system.num_params == 1 else sum(result["zeros"], [])
    zeros = [complex(*z) for z in zeros]
    swept = "learning_rate" if "learning_rate" in hp else next(iter(hp))
    values = hp[swept] * np.geomspace(0.05, 5.0, 120)
    fixed = {k: v for k, v in hp.items() if k != swept}
    locus = linearize.root_locus(factory, swept, values, hessian, **fixed)
    fig = plotting.analysis_figure(
        step, poles, zeros, values, locus, title=f"{name} {hp}, curvature {result['curvature']}"
    )
    try:
        files.save_figure(fig, path, dpi=110)
    except OSError as error:
        raise ValueError(f"--plot: cannot write {path!r}: {error.strerror or error}") from None


def check_plot_path(path: str) -> None:
    """``--plot`` names a file of a format matplotlib writes, in an existing directory."""
    import pathlib

    from matplotlib.figure import Figure

    target = pathlib.Path(path)
    if target.is_dir():
        raise ValueError(f"--plot: {path} is a directory; give a file name such as {path}/a.png")
    formats = sorted(Figure().canvas.get_supported_filetypes())
    if target.suffix.lstrip(".").lower() not in formats:
        raise ValueError(
            f"--plot: expected a file name ending in one of .{', .'.join(formats)}; got {path!r}"
        )
    if not target.parent.is_dir():
        raise ValueError(f"--plot: directory {target.parent} does not exist")


def _text(result: dict) -> str:
    lines = [
        f"optimizer: {result['optimizer']}  {result['hyperparameters']}",
        f"curvature: {result['curvature']}",
    ]
    for key in (
        "num",
        "den",
        "poles",
        "zeros",
        "dc_gain",
        "spectral_radius",
        "stable",
        "exact",
        "max_stable_curvature",
    ):
        lines.append(f"{key}: {result[key]}")
        if key == "exact":
            lines += [f"  reason: {note}" for note in result["reason"]]
    info = result["step_info"]
    infos = info if isinstance(info, list) else [info]
    for i, one in enumerate(infos):
        prefix = "step_info" if len(infos) == 1 else f"step_info[mode {i}]"
        lines.append(f"{prefix}: " + ", ".join(f"{k}={v}" for k, v in one.items()))
    if "robust" in result:
        r = result["robust"]
        rate = "none (no certificate)" if r["certified_rate"] is None else r["certified_rate"]
        lines.append(
            f"rate over S({r['mu']:g}, {r['L']:g}): certified {rate}, "
            f"quadratic {r['quadratic_rate']} (iqc {r['iqc']}; {r['status']})"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import inspect

    from gdyn_jax import optimizers

    if args.plot:
        check_plot_path(args.plot)  # before any analysis
    allowed = optimizers.hyperparameters(args.name)  # ValueError naming `optimizer` if unknown
    hp = parse_hyperparameters(args.hp, allowed)
    params = inspect.signature(optimizers.get(args.name)).parameters
    for key in allowed:
        if params[key].default is inspect.Parameter.empty and key not in hp:
            raise ValueError(f"--hp: {key} is required, e.g. --hp {key}=0.1")
    hessian = parse_curvature(args.curvature)
    mu_L = None if args.robust is None else parse_class(args.robust)
    result = analyze(args.name, hp, hessian, args.steps)
    if mu_L is not None:
        result["robust"] = robust(optimizers.get(args.name)(**hp), *mu_L, args.iqc)
    result = _clean(result)
    if args.plot:
        _plot(args.plot, args.name, hp, hessian, result, args.steps)
    print(json.dumps(result) if args.json else _text(result))
    return 0

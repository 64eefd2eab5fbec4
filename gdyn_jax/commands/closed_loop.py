"""The analysis behind ``gdyn analyze``: an optimizer's closed loop as the command's JSON fields.

:func:`analyze` linearizes the rule on the quadratic (:mod:`gdyn_jax.linearize`) and reads it
as a control system (transfer function, poles and zeros, spectral radius, step response
characteristics); :func:`robust` adds the rate certified over smooth strongly convex losses,
:func:`clean` makes the result JSON-able and :func:`plot` draws it. The command's surface
(arguments, text output) is :mod:`gdyn_jax.commands.analyze`, which imports this module on
first use so that ``gdyn --help`` does not import numpy or jax.
"""

from __future__ import annotations

import math

import numpy as np

from gdyn_jax import files, linearize, optimizers, plotting

__all__ = ["analyze", "clean", "parse_curvature", "plot", "robust"]

_DIGITS = 12


def parse_curvature(text: str):
    """A float, or comma-separated floats (a diagonal Hessian), validated."""
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
        linearize.validate_hessian(hessian)
    except ValueError as error:
        raise ValueError(f"--curvature: {str(error).removeprefix('hessian: ')}") from None
    return hessian


def robust(opt, mu: float, L: float, iqc: str) -> dict:
    """The certified rate over S(mu, L) beside the quadratic one, as the JSON field."""
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


def clean(value):
    """JSON-able: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.floating | np.integer):
        return _num(value)
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    return value


def _overflow(hp: dict[str, float], hessian) -> ValueError:
    """The closed loop does not fit in float64: blame the largest number given."""
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


def plot(path: str, name: str, hp: dict, hessian, result: dict, steps: int | None) -> None:
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

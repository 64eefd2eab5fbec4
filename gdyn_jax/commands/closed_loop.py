"""The analysis behind ``gdyn analyze``: an optimizer's closed loop as the command's JSON fields.

:func:`analyze` linearizes the rule on the quadratic (:mod:`gdyn_jax.linearize`) and reads it
as a control system (transfer function, poles and zeros, spectral radius, step response
characteristics); :func:`robust` adds the rate certified over smooth strongly convex losses,
:func:`clean` makes the result JSON-able, :func:`text` writes it for people and :func:`plot`
draws it. The command's surface (arguments) is :mod:`gdyn_jax.commands.analyze`, which
imports this module on first use so that ``gdyn --help`` does not import numpy or jax.

Three outcomes, never two (``gdyn_jax.linearize.outcome``): the answers that can fail
numerically, ``stable``, ``max_stable_curvature`` and the certified rate, each come with an
outcome (``proven``, ``disproven``, ``undecided``) and its reason, in the JSON field
``outcomes`` (``{"stable": {"outcome": ..., "reason": ...}, "max_stable_curvature": ...}``)
and in ``robust`` (``outcome``, ``reason``); an undecided value is ``null`` in the JSON and
``undecided (reason)`` in the text, never a verdict.
"""

from __future__ import annotations

import math

import numpy as np

from gdyn_jax import files, linearize, optimizers, plotting

__all__ = ["analyze", "clean", "parse_curvature", "plot", "robust", "text"]

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
        "outcome": result.outcome.value,
        "reason": result.reason,
    }


def pep(opt, mu: float, L: float, n: int, upper: float | None) -> dict:
    """The worst ||x_n - x*||^2 / ||x_0 - x*||^2 after n steps (PEP) and the n-step rate, beside
    the certified rate ``upper``, as the JSON field ``pep``."""
    try:
        r = linearize.rate_bracket(opt, mu, L, n, iqc=None)
    except ImportError as error:
        raise ValueError(f"--pep: {error}") from None
    except ValueError as error:
        message = str(error).removeprefix("opt: ").removeprefix("n: ")
        raise ValueError(f"--pep: {message}") from None
    return {
        "n": n,
        "metric": "distance",
        "tau": r.tau,
        "n_step_rate": r.n_step_rate,
        "upper": upper,
        "outcome": r.outcome.value,
        "reason": r.reason,
    }


def _pep_line(r: dict) -> str:
    head = f"worst case after {int(r['n'])} steps (PEP, |x_n - x*|^2 / |x_0 - x*|^2): "
    if r["outcome"] != "proven":
        return f"{head}could not decide ({r['reason']})"
    upper = "none certified" if r["upper"] is None else r["upper"]
    return f"{head}{r['tau']}; n-step rate {r['n_step_rate']} (certified rate: {upper})"


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
        except (np.linalg.LinAlgError, linearize.LoopOverflowError):
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
    stable = linearize.decide_stable(system)
    limit = linearize.stability_limit(opt)
    out.update(
        spectral_radius=rho,
        stable=None if not stable.decided else stable.outcome is linearize.Outcome.PROVEN,
        exact=bool(system.exact),
        reason=list(system.notes),
        max_stable_curvature=limit.value if limit.outcome.decided else None,
        step_info=info,
        outcomes={
            "stable": stable.to_dict(),
            "max_stable_curvature": linearize.Decision(limit.outcome, limit.reason).to_dict(),
        },
    )
    return out


_TEXT_KEYS = ("num", "den", "poles", "zeros", "dc_gain", "spectral_radius", "stable", "exact")


def _decided(result: dict, key: str) -> str:
    """``key: value``, or ``key: undecided (reason)`` where the analysis could not decide."""
    outcome = result.get("outcomes", {}).get(key)
    if outcome is not None and outcome["outcome"] == "undecided":
        return f"{key}: undecided ({outcome['reason']})"
    return f"{key}: {result[key]}"


def _robust_line(r: dict) -> str:
    head = f"rate over S({r['mu']:g}, {r['L']:g}): "
    tail = f", quadratic {r['quadratic_rate']} (iqc {r['iqc']})"
    if r["outcome"] == "proven":
        return f"{head}certified {r['certified_rate']}{tail[:-1]}; {r['status']})"
    if r["outcome"] == "disproven":
        return f"{head}no certificate ({r['reason']}){tail}"
    return f"{head}could not decide ({r['reason']}){tail}"


def text(result: dict) -> str:
    """The analysis as ``gdyn analyze`` prints it without ``--json``: one ``key: value`` line
    each, the reasons a system is not exact under ``exact``, ``undecided (reason)`` where an
    answer could not be decided."""
    lines = [
        f"optimizer: {result['optimizer']}  {result['hyperparameters']}",
        f"curvature: {result['curvature']}",
    ]
    for key in (*_TEXT_KEYS, "max_stable_curvature"):
        lines.append(_decided(result, key))
        if key == "exact":
            lines += [f"  reason: {note}" for note in result["reason"]]
    info = result["step_info"]
    infos = info if isinstance(info, list) else [info]
    for i, one in enumerate(infos):
        prefix = "step_info" if len(infos) == 1 else f"step_info[mode {i}]"
        lines.append(f"{prefix}: " + ", ".join(f"{k}={v}" for k, v in one.items()))
    if "robust" in result:
        lines.append(_robust_line(result["robust"]))
    if "pep" in result:
        lines.append(_pep_line(result["pep"]))
    return "\n".join(lines)


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

r"""Time and frequency responses of the closed loop, step metrics and the second-order view.

All responses start from :math:`x_0 = 0`. The step response is :math:`\theta_k` for
:math:`k = 0 \dots N-1` with a unit reference :math:`r = 1` held from step 0: the convergence
from unit distance to the optimum (:math:`\theta_0 = 0`). Times are in optimizer steps.

:func:`step_info` follows ``control.step_info`` (python-control 0.10) exactly on the time vector
``0 .. steps-1``, with :math:`y_\infty` the DC gain :math:`C(I-A)^{-1}b`:

- RiseTime: first time :math:`y` reaches 90% of :math:`y_\infty` minus first time it reaches 10%;
- SettlingTime: first time after which :math:`|y/y_\infty - 1| < 2\%` for good;
- SettlingMin/Max: min/max of :math:`y` from the rise (90%) time on, and of :math:`y_\infty`;
- Overshoot/Undershoot in percent of :math:`y_\infty`; Peak :math:`\max|y|` and PeakTime;
- SteadyStateValue :math:`y_\infty`.

It is computed in JAX (jit/vmap-able), batched over systems. The one addition to
python-control's keys is ``'Stable'``: for an unstable or marginal loop (spectral radius
:math:`\ge 1`) it is False and every other value is NaN (python-control raises IndexError
or returns inf/NaN there); nothing raises.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.linearize.eig import eigvals, spectral_radius_of
from gdyn_jax.linearize.response_fast import step_info_batch
from gdyn_jax.linearize.system import LinearSystem, require_per_step
from gdyn_jax.linearize.timevarying import TimeVaryingSystem, simulate
from gdyn_jax.linearize.transfer import TransferFunction

__all__ = [
    "STEP_INFO_KEYS",
    "step_response",
    "impulse_response",
    "frequency_response",
    "step_info",
    "step_info_from_response",
    "default_steps",
    "damping",
    "second_order",
]

STEP_INFO_KEYS = (
    "RiseTime",
    "SettlingTime",
    "SettlingMin",
    "SettlingMax",
    "Overshoot",
    "Undershoot",
    "Peak",
    "PeakTime",
    "SteadyStateValue",
)
MAX_DEFAULT_STEPS = 100_000


def _check_thresholds(settling, rise) -> tuple[float, tuple[float, float]]:
    """python-control's step_info thresholds, each in (0, 1), the rise limits increasing."""
    try:
        settling = float(settling)
        lo, hi = (float(r) for r in rise)
    except (TypeError, ValueError):
        raise ValueError(
            f"RiseTimeLimits: expected two numbers (low, high) in (0, 1), got {rise!r}"
        ) from None
    if not 0.0 < settling < 1.0:
        raise ValueError(f"SettlingTimeThreshold: expected a value in (0, 1), got {settling}")
    if not (0.0 < lo < hi < 1.0):
        raise ValueError(f"RiseTimeLimits: expected 0 < low < high < 1, got {tuple(rise)}")
    return settling, (lo, hi)


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or int(steps) != steps or int(steps) < 1:
        raise ValueError(f"steps: expected a positive integer, got {steps!r}")
    return int(steps)


def _simulate(A, b, C, steps: int):
    """:math:`y_k = C x_k`, :math:`x_{k+1} = A x_k + b`, :math:`x_0 = 0` -> (steps, n)."""

    def body(x, _):
        return A @ x + b, C @ x

    _, ys = jax.lax.scan(body, jnp.zeros_like(b), None, length=steps)
    return ys


def _batched(system: LinearSystem):
    """Flatten leading batch dims: (m, k, k), (m, k, 2n), (k? ) and the batch shape."""
    shape = system.batch_shape
    A = np.asarray(system.A).reshape((-1,) + np.shape(system.A)[-2:])
    B = np.asarray(system.B).reshape((-1,) + np.shape(system.B)[-2:])
    C = np.asarray(system.C)
    if C.ndim > 2:
        C = C.reshape((-1,) + C.shape[-2:])
    else:
        C = np.broadcast_to(C, (A.shape[0],) + C.shape)
    return A, B, C, shape


@functools.partial(jax.jit, static_argnames=("steps", "impulse"))
def _responses(A, cols, C, steps: int, impulse: bool):

    def one(a, bu, c):
        if impulse:
            # y_0 = 0, x_1 = b, then the free response
            def body(x, _):
                return a @ x, c @ x

            _, ys = jax.lax.scan(body, bu, None, length=steps - 1)
            return jnp.concatenate([jnp.zeros((1, c.shape[0]), ys.dtype), ys], axis=0)
        return _simulate(a, bu, c, steps)

    u = jnp.sum(cols, axis=-1)  # unit on every component of the input block
    return jax.vmap(one)(A, u, C)


def _response(system: LinearSystem, steps, input: str, impulse: bool):  # noqa: A002
    require_per_step(system, "the impulse response" if impulse else "the step response")
    steps = _check_steps(steps)
    system.input_matrix(input)  # validates the name
    A, B, C, shape = _batched(system)
    cols = B[..., system.input_slice(input)]
    with jax.enable_x64(True):
        ys = np.asarray(
            _responses(jnp.asarray(A), jnp.asarray(cols), jnp.asarray(C), steps, impulse)
        )
    ys = ys.reshape(shape + ys.shape[1:])
    return ys[..., 0] if system.num_params == 1 else ys


def step_response(
    system: LinearSystem | TimeVaryingSystem,
    steps: int | None = None,
    input: str = "reference",  # noqa: A002
):
    r""":math:`\theta_k`, k = 0..steps-1, from :math:`x_0 = 0` with the input held at 1.

    Shape ``batch + (steps,)`` for one parameter, ``batch + (steps, n)`` otherwise (every
    component of the input set to 1). Equals ``scipy.signal.dstep`` of the transfer function.
    A :class:`~gdyn_jax.linearize.TimeVaryingSystem` is simulated with its own
    :math:`A_t, B_t` (``steps`` defaults to, and may not exceed, its horizon). A lifted
    periodic system (``period = k``) steps one period at a time.
    """
    if isinstance(system, TimeVaryingSystem):
        return simulate(system, system.horizon if steps is None else steps, input, False)
    if steps is None:
        raise ValueError("steps: expected a positive integer, got None")
    return _response(system, steps, input, impulse=False)


def impulse_response(
    system: LinearSystem | TimeVaryingSystem,
    steps: int | None = None,
    input: str = "reference",  # noqa: A002
):
    r""":math:`\theta_k` for a unit input at step 0 only (as ``scipy.signal.dimpulse``)."""
    if isinstance(system, TimeVaryingSystem):
        return simulate(system, system.horizon if steps is None else steps, input, True)
    if steps is None:
        raise ValueError("steps: expected a positive integer, got None")
    return _response(system, steps, input, impulse=True)


def frequency_response(
    system: LinearSystem | TransferFunction, omega=None, input: str = "reference"
):  # noqa: A002
    r""":math:`T(e^{i\omega})` for :math:`\omega` in rad/step (default 256 points in [0, π]).

    Returns ``(omega, response)``; for a LinearSystem the response has shape
    ``batch + (len(omega), n, n)`` (output, input), squeezed to ``(len(omega),)`` for one
    parameter: :math:`C(zI - A)^{-1}B`.
    """
    require_per_step(system, "the frequency response")
    omega = np.linspace(0.0, np.pi, 256) if omega is None else np.asarray(omega, np.float64)
    z = np.exp(1j * omega)
    if isinstance(system, TransferFunction):
        return omega, system(z)
    B = system.input_matrix(input)
    A, C = np.asarray(system.A), np.asarray(system.C)
    k = A.shape[-1]
    with jax.enable_x64(True):
        zi = jnp.asarray(z)[:, None, None] * jnp.eye(k)
        A_b = jnp.asarray(A)[..., None, :, :]
        sol = jnp.linalg.solve(zi - A_b, jnp.asarray(B)[..., None, :, :].astype(complex))
        resp = np.asarray(jnp.asarray(C)[..., None, :, :] @ sol)
    if system.num_params == 1:
        resp = resp[..., 0, 0]
    return omega, resp


# --------------------------------------------------------------------------- step_info


def _first(mask):
    """Index of the first True along the last axis (0 if none) and whether there is one."""
    return jnp.argmax(mask, axis=-1), jnp.any(mask, axis=-1)


def _at(y, index):
    return jnp.take_along_axis(y, index[..., None], axis=-1)[..., 0]


def _step_info_core(y, yinf, stable, settling: float, rise_lo: float, rise_hi: float):
    """python-control's step_info of responses ``y`` (..., N) with final values ``yinf`` (...).

    Written on whole batches (reductions along the last axis, no vmap) to keep compiles short.
    """
    n = y.shape[-1]
    t = jnp.arange(n)
    yi = yinf[..., None]
    ok = stable & jnp.isfinite(yinf) & (yinf != 0)
    sgn = jnp.sign(yi)
    i_lo, found_lo = _first(sgn * (y - rise_lo * yi) >= 0)
    i_hi, found_hi = _first(sgn * (y - rise_hi * yi) >= 0)
    found = found_lo & found_hi
    rise = jnp.where(found, (i_hi - i_lo).astype(y.dtype), jnp.nan)
    safe_inf = jnp.where(yinf != 0, yinf, 1.0)
    outside = jnp.abs(y / safe_inf[..., None] - 1) >= settling
    last_rev, any_out = _first(outside[..., ::-1])
    settled = jnp.where(any_out, n - last_rev, 0)
    settle_t = jnp.where(settled < n, settled.astype(y.dtype), jnp.nan)
    tail = (t >= i_hi[..., None]) & found[..., None]
    s_min = jnp.minimum(jnp.min(jnp.where(tail, y, jnp.inf), axis=-1), yinf)
    s_max = jnp.maximum(jnp.max(jnp.where(tail, y, -jnp.inf), axis=-1), yinf)
    s_min = jnp.where(found, s_min, jnp.nan)
    s_max = jnp.where(found, s_max, jnp.nan)
    sy = sgn * y
    dy_os = jnp.abs(jnp.max(sy, axis=-1)) - jnp.abs(yinf)
    overshoot = jnp.where(dy_os > 0, jnp.abs(100.0 * dy_os / safe_inf), 0.0)
    y_us = _at(y, jnp.argmin(sy, axis=-1))
    undershoot = jnp.where(sgn[..., 0] * y_us < 0, -100.0 * y_us / safe_inf, 0.0)
    i_peak = jnp.argmax(jnp.abs(y), axis=-1)
    values = (
        rise,
        settle_t,
        s_min,
        s_max,
        overshoot,
        undershoot,
        jnp.abs(_at(y, i_peak)),
        i_peak.astype(y.dtype),
        yinf,
    )
    out = {key: jnp.where(ok, v, jnp.nan) for key, v in zip(STEP_INFO_KEYS, values, strict=True)}
    out["Stable"] = stable
    return out


def step_info_from_response(
    y,
    final_value,
    *,
    stable=True,
    SettlingTimeThreshold: float = 0.02,
    RiseTimeLimits: tuple[float, float] = (0.1, 0.9),
) -> dict:
    """python-control's step metrics of a response ``y`` (last axis = time, t = 0, 1, ...).

    Traceable and vmap-able; leading axes of ``y``/``final_value``/``stable`` broadcast as a
    batch. This is the core :func:`step_info` uses on simulated responses.
    """
    settling, (lo, hi) = _check_thresholds(SettlingTimeThreshold, RiseTimeLimits)
    y = jnp.asarray(y)
    batch = y.shape[:-1]
    yinf = jnp.broadcast_to(jnp.asarray(final_value, y.dtype), batch)
    st = jnp.broadcast_to(jnp.asarray(stable), batch)
    return _step_info_core(y, yinf, st, settling, lo, hi)


def default_steps(system: LinearSystem, decay: float = 1e-6) -> int:
    r"""Steps for the slowest stable mode to decay by ``decay``:
    :math:`\ln(\mathrm{decay})/\ln\rho`.
    """
    require_per_step(system, "default_steps")
    with jax.enable_x64(True):
        rho = np.asarray(spectral_radius_of(np.asarray(system.A, np.float64)))
    rho = rho[rho < 1.0]
    if rho.size == 0:
        return 100
    r = float(np.max(rho))
    if r <= 0:
        return 10
    return int(np.clip(np.ceil(np.log(decay) / np.log(r)), 10, MAX_DEFAULT_STEPS))


def step_info(
    system: LinearSystem,
    steps: int | None = None,
    *,
    input: str = "reference",  # noqa: A002
    SettlingTimeThreshold: float = 0.02,
    RiseTimeLimits: tuple[float, float] = (0.1, 0.9),
) -> dict:
    """Step metrics with python-control's keys and definitions, plus ``'Stable'``.

    ``steps`` is the length of the time vector ``0 .. steps-1`` (default: until the slowest mode
    decayed by 1e-6, see :func:`default_steps`). For one parameter and an unbatched system the
    values are Python floats (``'Stable'`` a bool); a batched system (from
    :func:`~gdyn_jax.linearize.linearize_grid`) gives arrays of the batch shape, and n
    parameters add trailing (output, input) axes, like python-control's nested lists.
    """
    if isinstance(system, TimeVaryingSystem):
        raise ValueError(
            "system: step_info needs a time-invariant system (a final value); for a "
            "TimeVaryingSystem use step_info_from_response(step_response(system), final_value)"
        )
    require_per_step(system, "step_info")
    settling, rise = _check_thresholds(SettlingTimeThreshold, RiseTimeLimits)
    steps = default_steps(system) if steps is None else _check_steps(steps)
    A, B, C, shape = _batched(system)
    cols = B[..., system.input_slice(input)]
    with jax.enable_x64(True):
        out = step_info_batch(
            A,  # numpy arrays go to the jit as they are (no eager conversion kernels)
            np.ascontiguousarray(cols),
            C,
            steps,
            settling,
            rise,
        )
        out = np.asarray(out)  # (keys, m, n_out, n_in)
    n = system.num_params
    result = {}
    for key, value in zip((*STEP_INFO_KEYS, "Stable"), out, strict=True):
        value = value.reshape(shape + value.shape[1:])
        if key == "Stable":
            value = value.astype(bool)
        if n == 1:
            value = value[..., 0, 0]
        if value.ndim == 0:
            value = bool(value) if key == "Stable" else float(value)
        result[key] = value
    return result


# --------------------------------------------------------------------------- second order


def _poles(system) -> np.ndarray:
    if isinstance(system, TransferFunction):
        return system.poles()
    require_per_step(system, "damping")
    with jax.enable_x64(True):
        return np.asarray(eigvals(jnp.asarray(system.A)))


def damping(system: LinearSystem | TransferFunction):
    r"""Natural frequency and damping ratio of each pole, through :math:`s = \ln z` (dt = 1).

    :math:`\omega_n = |s|`, :math:`\zeta = -\operatorname{Re}(s)/|s|` (as ``control.damp``).
    Returns ``(wn, zeta, poles)``; a pole at 0 has :math:`\omega_n = \infty`, :math:`\zeta = 1`.
    """
    poles = _poles(system)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log(poles.astype(complex))
        wn = np.abs(s)
        zeta = np.where(np.isinf(wn), 1.0, -s.real / wn)
    return wn, zeta, poles


def second_order(system: LinearSystem | TransferFunction) -> dict:
    r"""The dominant-pole view: the pole(s) of largest modulus read as a second-order system.

    Returns ``pole`` (the dominant pole with non-negative imaginary part), ``zeta``, ``wn``,
    ``spectral_radius`` and ``settling_estimate`` :math:`= \ln 0.02 / \ln\rho` (steps to the
    2% band of the slowest mode; inf when not stable).
    """
    wn, zeta, poles = damping(system)
    if poles.size == 0:
        raise ValueError("system: has no poles")
    rho = float(np.max(np.abs(poles)))
    candidates = np.nonzero(np.abs(poles) >= rho * (1 - 1e-9))[0]
    i = max(candidates, key=lambda j: poles[j].imag)
    with np.errstate(divide="ignore"):
        settle = float(np.log(0.02) / np.log(rho)) if rho < 1 else float("inf")
    return {
        "pole": complex(poles[i]),
        "zeta": float(zeta[i]),
        "wn": float(wn[i]),
        "spectral_radius": rho,
        "settling_estimate": settle,
    }

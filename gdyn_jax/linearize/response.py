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

from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.eig import eigvals, spectral_radius_of
from gdyn_jax.linearize.system import LinearSystem
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


# Systems with at most this many states run the recurrence as unrolled elementwise products
# (fused into one kernel per step) instead of a batched matrix product.
_UNROLL_STATES = 4


def _rows(M, x):
    r"""``M x`` for batches of matrices ``M`` (m, r, k) and of states ``x`` (m, k, c) -> (m, r, c).

    Small k: written as :math:`\sum_j M_{ij} x_j` (elementwise, fuses with its neighbours).
    """
    r, k = M.shape[-2:]
    if k > _UNROLL_STATES:
        return M @ x
    rows = []
    for i in range(r):
        acc = M[:, i, 0, None] * x[:, 0]
        for j in range(1, k):
            acc = acc + M[:, i, j, None] * x[:, j]
        rows.append(acc)
    return jnp.stack(rows, axis=1)


def _dc_states(A, cols):
    r"""Steady state :math:`(I - A)^{-1} b` for (m, k, k) ``A`` and (m, k, c) ``b``.

    One and two states in closed form (Cramer's rule): a batched LU solve costs about a second
    of XLA compilation for a few microseconds of work. Unstable systems may give inf or NaN.
    """
    k = A.shape[-1]
    if k == 1:
        return cols / (1.0 - A)
    if k == 2:
        a, b = 1.0 - A[:, 0, 0, None], -A[:, 0, 1, None]
        c, d = -A[:, 1, 0, None], 1.0 - A[:, 1, 1, None]
        det = a * d - b * c
        u, v = cols[:, 0], cols[:, 1]
        return jnp.stack([(d * u - b * v) / det, (a * v - c * u) / det], axis=1)
    return jnp.linalg.solve(jnp.eye(k, dtype=A.dtype) - A, cols)


def _stack(rows):
    """``jnp.stack(rows)`` as selects on the row index, which XLA fuses into one kernel (a
    concatenate becomes one kernel per row on CPU, each costing compilation time)."""
    shape = (len(rows),) + (1,) * jnp.ndim(rows[0])
    row = np.arange(len(rows)).reshape(shape)  # numpy: the masks are compile-time constants
    out = jnp.broadcast_to(rows[-1], (len(rows),) + jnp.shape(rows[-1]))
    for i in range(len(rows) - 2, -1, -1):
        out = jnp.where(row == i, rows[i], out)
    return out


def _step_info_batch(A, cols, C, steps: int, settling: float, rise: tuple):
    """step_info of a batch of systems, as one (10, m, n_out, n_in) array (keys, then Stable).

    The metrics are accumulated while simulating (first crossings, last exit from the band,
    running extrema with first-occurrence ties), so no (m, steps) response is stored and
    the whole loop body fuses into a few kernels: this keeps the jit compilation short.
    Definitions as :func:`_step_info_core` (python-control's).
    """
    # cols: (m, k, n_in), the input block's columns of B
    yinf = _rows(C, _dc_states(A, cols))  # (m, n_out, n_in); garbage where unstable (masked)
    dt = yinf.dtype
    safe_inf = jnp.where(yinf != 0, yinf, 1.0)
    # the loop invariants in one array (one kernel), unpacked inside the loop body
    invariants = _stack([jnp.sign(yinf), rise[0] * yinf, rise[1] * yinf, safe_inf])
    # i_lo, i_hi (never: steps), last_out, s_min, s_max, max_sy, min_sy, y_us, peak, i_peak
    start = np.array([steps, steps, -1, np.inf, -np.inf, -np.inf, np.inf, 0, -np.inf, 0], dt)
    start = jnp.broadcast_to(start.reshape((10,) + (1,) * yinf.ndim), (10,) + yinf.shape)

    def body(i, carry):
        x, run = carry
        t = i.astype(dt)
        sgn, lo_thr, hi_thr, safe_inf = invariants
        i_lo, i_hi, last_out, s_min, s_max, max_sy, min_sy, y_us, peak, i_peak = run
        y = _rows(C, x)  # y_t = C x_t
        sy = sgn * y
        i_lo = jnp.where((i_lo == steps) & (sgn * (y - lo_thr) >= 0), t, i_lo)
        i_hi = jnp.where((i_hi == steps) & (sgn * (y - hi_thr) >= 0), t, i_hi)
        tail = i_hi < steps  # from the rise (90%) time on
        outside = jnp.abs(y / safe_inf - 1) >= settling
        lower = sy < min_sy  # strict: the first minimiser wins, as argmin
        ay = jnp.abs(y)
        higher = ay > peak  # strict: the first maximiser wins, as argmax
        run = _stack(
            [
                i_lo,
                i_hi,
                jnp.where(outside, t, last_out),
                jnp.where(tail, jnp.minimum(s_min, y), s_min),
                jnp.where(tail, jnp.maximum(s_max, y), s_max),
                jnp.maximum(max_sy, sy),
                jnp.where(lower, sy, min_sy),
                jnp.where(lower, y, y_us),
                jnp.where(higher, ay, peak),
                jnp.where(higher, t, i_peak),
            ]
        )
        return _rows(A, x) + cols, run

    _, run = jax.lax.fori_loop(0, steps, body, (jnp.zeros_like(cols), start))
    i_lo, i_hi, last_out, s_min, s_max, max_sy, _, y_us, peak, i_peak = run
    sgn = invariants[0]
    found = (i_lo < steps) & (i_hi < steps)
    settled = last_out + 1
    dy_os = jnp.abs(max_sy) - jnp.abs(yinf)
    values = (
        jnp.where(found, i_hi - i_lo, jnp.nan),
        jnp.where(settled < steps, settled, jnp.nan),
        jnp.where(found, jnp.minimum(s_min, yinf), jnp.nan),
        jnp.where(found, jnp.maximum(s_max, yinf), jnp.nan),
        jnp.where(dy_os > 0, jnp.abs(100.0 * dy_os / safe_inf), 0.0),
        jnp.where(sgn * y_us < 0, -100.0 * y_us / safe_inf, 0.0),
        peak,
        i_peak,
        yinf,
    )
    st = jnp.broadcast_to((spectral_radius_of(A) < 1.0)[:, None, None], yinf.shape)
    ok = st & jnp.isfinite(yinf) & (yinf != 0)
    return _stack([jnp.where(ok, v, jnp.nan) for v in values] + [st.astype(dt)])


_step_info_batch = _compile.jit(_step_info_batch, static_argnames=("steps", "settling", "rise"))


def default_steps(system: LinearSystem, decay: float = 1e-6) -> int:
    r"""Steps for the slowest stable mode to decay by ``decay``:
    :math:`\ln(\mathrm{decay})/\ln\rho`.
    """
    with jax.enable_x64(True):
        rho = np.asarray(spectral_radius_of(jnp.asarray(system.A)))
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
    settling, rise = _check_thresholds(SettlingTimeThreshold, RiseTimeLimits)
    steps = default_steps(system) if steps is None else _check_steps(steps)
    A, B, C, shape = _batched(system)
    cols = B[..., system.input_slice(input)]
    with jax.enable_x64(True):
        out = _step_info_batch(
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

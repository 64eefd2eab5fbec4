r"""The fast path of :func:`~gdyn_jax.linearize.step_info`: metrics accumulated while simulating.

:func:`step_info_batch` gives python-control's step metrics of a batch of systems without
storing their responses: first crossings, the last exit from the settling band and running
extrema with first-occurrence ties are carried through one ``fori_loop`` whose body fuses
into a few kernels, small systems run their recurrence as unrolled elementwise products and
their steady state in closed form, which keeps the jit compilation short on CPU
(:mod:`gdyn_jax.linearize._compile`). Its plain twin is the definition on stored responses,
:func:`~gdyn_jax.linearize.step_info_from_response`; the tests check that the two agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.linearize import _compile
from gdyn_jax.linearize.eig import spectral_radius_of

__all__ = ["UNROLL_STATES", "dc_states", "rows", "stack", "step_info_batch"]

# Systems with at most this many states run the recurrence as unrolled elementwise products
# (fused into one kernel per step) instead of a batched matrix product.
UNROLL_STATES = 4


def rows(M, x):
    r"""``M x`` for batches of matrices ``M`` (m, r, k) and of states ``x`` (m, k, c) -> (m, r, c).

    Small k: written as :math:`\sum_j M_{ij} x_j` (elementwise, fuses with its neighbours).
    """
    r, k = M.shape[-2:]
    if k > UNROLL_STATES:
        return M @ x
    rows = []
    for i in range(r):
        acc = M[:, i, 0, None] * x[:, 0]
        for j in range(1, k):
            acc = acc + M[:, i, j, None] * x[:, j]
        rows.append(acc)
    return jnp.stack(rows, axis=1)


def dc_states(A, cols):
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


def stack(rows):
    """``jnp.stack(rows)`` as selects on the row index, which XLA fuses into one kernel (a
    concatenate becomes one kernel per row on CPU, each costing compilation time)."""
    shape = (len(rows),) + (1,) * jnp.ndim(rows[0])
    row = np.arange(len(rows)).reshape(shape)  # numpy: the masks are compile-time constants
    out = jnp.broadcast_to(rows[-1], (len(rows),) + jnp.shape(rows[-1]))
    for i in range(len(rows) - 2, -1, -1):
        out = jnp.where(row == i, rows[i], out)
    return out


def _metrics(run, invariants, yinf, safe_inf, A, steps: int):
    """The metrics (and Stable) from the quantities the loop of :func:`step_info_batch` ran."""
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
    return stack([jnp.where(ok, v, jnp.nan) for v in values] + [st.astype(yinf.dtype)])


def step_info_batch(A, cols, C, steps: int, settling: float, rise: tuple):
    """step_info of a batch of systems, as one (10, m, n_out, n_in) array (keys, then Stable).

    The metrics are accumulated while simulating (first crossings, last exit from the band,
    running extrema with first-occurrence ties), so no (m, steps) response is stored and
    the whole loop body fuses into a few kernels: this keeps the jit compilation short.
    Definitions as :func:`~gdyn_jax.linearize.step_info_from_response` (python-control's).
    """
    # cols: (m, k, n_in), the input block's columns of B
    yinf = rows(C, dc_states(A, cols))  # (m, n_out, n_in); garbage where unstable (masked)
    dt = yinf.dtype
    safe_inf = jnp.where(yinf != 0, yinf, 1.0)
    # the loop invariants in one array (one kernel), unpacked inside the loop body
    invariants = stack([jnp.sign(yinf), rise[0] * yinf, rise[1] * yinf, safe_inf])
    # i_lo, i_hi (never: steps), last_out, s_min, s_max, max_sy, min_sy, y_us, peak, i_peak
    start = np.array([steps, steps, -1, np.inf, -np.inf, -np.inf, np.inf, 0, -np.inf, 0], dt)
    start = jnp.broadcast_to(start.reshape((10,) + (1,) * yinf.ndim), (10,) + yinf.shape)

    def body(i, carry):
        x, run = carry
        t = i.astype(dt)
        sgn, lo_thr, hi_thr, safe_inf = invariants
        i_lo, i_hi, last_out, s_min, s_max, max_sy, min_sy, y_us, peak, i_peak = run
        y = rows(C, x)  # y_t = C x_t
        sy = sgn * y
        i_lo = jnp.where((i_lo == steps) & (sgn * (y - lo_thr) >= 0), t, i_lo)
        i_hi = jnp.where((i_hi == steps) & (sgn * (y - hi_thr) >= 0), t, i_hi)
        tail = i_hi < steps  # from the rise (90%) time on
        outside = jnp.abs(y / safe_inf - 1) >= settling
        lower = sy < min_sy  # strict: the first minimiser wins, as argmin
        ay = jnp.abs(y)
        higher = ay > peak  # strict: the first maximiser wins, as argmax
        run = stack(
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
        return rows(A, x) + cols, run

    _, run = jax.lax.fori_loop(0, steps, body, (jnp.zeros_like(cols), start))
    return _metrics(run, invariants, yinf, safe_inf, A, steps)


step_info_batch = _compile.jit(step_info_batch, static_argnames=("steps", "settling", "rise"))

r"""Transfer functions in z of the closed loop (reference/noise -> θ) and of the optimizer alone.

A :class:`TransferFunction` is a ratio of polynomials in :math:`z` in descending powers, with a
monic denominator, leading (near-)zero coefficients trimmed and ``dt = 1`` (one optimizer step):

.. math:: T(z) = \frac{b_0 z^m + \dots + b_m}{z^p + a_1 z^{p-1} + \dots + a_p}.

It is built from the state space by the characteristic polynomials of :func:`scipy.signal.ss2tf`
(:math:`\det(zI - A)` and :math:`\det(zI - A + bc) - \det(zI - A)`, computed here with
:func:`numpy.poly` so that no scipy.signal import is needed); pole-zero pairs that coincide
(within a tolerance, e.g. delay states such as a stored previous gradient) are cancelled by
polynomial deflation, so the result is the minimal form a symbolic derivation gives.

The open loop (:func:`open_loop`) is the optimizer as a filter from gradient to accumulated
parameter change, the "status transfer function" of Wu et al. 2021: SGD :math:`-a/(z-1)`,
heavy ball :math:`-a z/((z-1)(z-\beta))`, Nesterov :math:`-a((1+\beta)z-\beta)/((z-1)(z-\beta))`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import optax

from gdyn_jax import extras
from gdyn_jax.linearize.system import LinearSystem, _linearize, require_per_step

__all__ = ["TransferFunction", "transfer_function", "open_loop"]

TRIM_TOL = 1e-10
CANCEL_TOL = 1e-7
CLUSTER_RADIUS = 1e-4


@dataclasses.dataclass(frozen=True, eq=False)
class TransferFunction:
    """A SISO discrete-time transfer function ``num(z) / den(z)`` with ``dt = 1``.

    ``num`` and ``den`` are float64 arrays of coefficients in descending powers of z; ``den``
    is monic (leading coefficient 1).
    """

    num: np.ndarray
    den: np.ndarray
    dt: int = 1

    def poles(self) -> np.ndarray:
        """Roots of ``den`` (complex)."""
        return np.roots(self.den).astype(complex)

    def zeros(self) -> np.ndarray:
        """Roots of ``num`` (complex)."""
        return np.roots(self.num).astype(complex) if self.num.size > 1 else np.zeros(0, complex)

    def dcgain(self) -> float:
        """:math:`T(1)`: the steady-state gain (inf/nan for a pole at z = 1)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.polyval(self.num, 1.0) / np.polyval(self.den, 1.0))

    def __call__(self, z):
        """Evaluate :math:`T(z)` at complex points."""
        z = np.asarray(z, dtype=complex)
        return np.polyval(self.num, z) / np.polyval(self.den, z)

    def to_control(self):
        """The same function as a ``control.TransferFunction`` with ``dt = 1`` (needs the
        ``[control]`` extra: python-control)."""
        return extras.control.tf(self.num.tolist(), self.den.tolist(), dt=self.dt)

    def to_scipy(self):
        """The same function as a ``scipy.signal.dlti`` with ``dt = 1``."""
        return extras.scipy_signal.dlti(self.num, self.den, dt=self.dt)

    def __repr__(self) -> str:
        return f"TransferFunction(num={self.num.tolist()}, den={self.den.tolist()}, dt={self.dt})"


def _trim(coeffs: np.ndarray, tol: float = TRIM_TOL) -> np.ndarray:
    """Set coefficients below ``tol`` times the largest to 0 and drop leading zeros."""
    coeffs = np.asarray(coeffs, dtype=np.float64).ravel()
    scale = float(np.max(np.abs(coeffs))) if coeffs.size else 0.0
    coeffs = np.where(np.abs(coeffs) > tol * scale, coeffs, 0.0)
    nonzero = np.nonzero(coeffs)[0]
    return coeffs[nonzero[0] :] if nonzero.size else np.zeros(1)


def _deflate(poly: np.ndarray, root: complex) -> np.ndarray:
    """``poly`` divided by the real factor of ``root`` ((z - p) or its conjugate pair)."""
    if abs(root.imag) > 0:
        factor = np.array([1.0, -2.0 * root.real, abs(root) ** 2])
    else:
        factor = np.array([1.0, -root.real])
    quotient, _ = np.polydiv(poly, factor)
    return quotient


def _clusters(roots: np.ndarray, radius: float) -> list[complex]:
    """Centroids of groups of roots closer than ``radius`` (relative): a multiple root is
    computed with error ~ eps^(1/m), but the mean of its m copies is accurate to ~eps."""
    remaining = list(np.asarray(roots, complex))
    centroids = []
    while remaining:
        r = remaining.pop(0)
        group = [r] + [q for q in remaining if abs(q - r) <= radius * max(1.0, abs(r))]
        remaining = [q for q in remaining if abs(q - r) > radius * max(1.0, abs(r))]
        c = complex(np.mean(group))
        if abs(c.imag) <= radius * max(1.0, abs(c)):
            c = complex(c.real, 0.0)
        centroids.append(c)
    return centroids


def _cancel(num: np.ndarray, den: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Cancel common roots of num and den (within ``tol``) by deflating both polynomials."""
    while num.size > 1 and den.size > 1:
        zeros = _clusters(np.roots(num), CLUSTER_RADIUS)
        poles = _clusters(np.roots(den), CLUSTER_RADIUS)
        best = None
        for zr in zeros:
            if zr.imag < 0:
                continue  # handle each conjugate pair once, from its upper member
            for pr in poles:
                dist = abs(pr - zr)
                if dist <= tol * max(1.0, abs(zr)) and (best is None or dist < best[0]):
                    best = (dist, zr, pr)
        if best is None:
            break
        _, zr, pr = best
        num, den = _deflate(num, zr), _deflate(den, pr)
    return num, den


def _ss2tf(A: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Numerator and denominator of :math:`c (zI - A)^{-1} b` (no feedthrough), as
    :func:`scipy.signal.ss2tf` computes them: :math:`\mathrm{den} = \det(zI - A)`,
    :math:`\mathrm{num} = \det(zI - A + bc) - \mathrm{den}` (the matrix determinant lemma),
    both with :func:`numpy.poly`; equal to scipy's bit for bit (tested)."""
    if A.size == 0:
        return np.zeros(1), np.ones(1)
    den = np.poly(A)
    return np.poly(A - b @ c) - den, den


def _siso(A, b, c, *, minimal: bool = True) -> TransferFunction:
    A = np.asarray(A, np.float64)
    b = np.asarray(b, np.float64).reshape(-1, 1)
    c = np.asarray(c, np.float64).reshape(1, -1)
    num, den = _ss2tf(A, b, c)
    num = num / den[0]
    den = den / den[0]
    num = _trim(num)
    if minimal and np.any(num != 0):
        num, den = _cancel(num, den, CANCEL_TOL)
    return TransferFunction(num=num, den=den)


def transfer_function(
    system: LinearSystem,
    input: str = "reference",
    *,  # noqa: A002
    output: int | None = None,
    index: int | None = None,
    minimal: bool = True,
):
    r"""The transfer function from ``input`` (``'reference'`` or ``'noise'``) to :math:`\theta`.

    For one parameter it is a :class:`TransferFunction`. For n parameters, pass ``output``
    (the θ component) and ``index`` (the input component) to get that pair's SISO function;
    with neither, a nested list ``[output][index]`` of all of them. The noise input of a lifted
    periodic system (``period = k``) has ``n * k`` components, one per step of the period.
    ``minimal`` cancels common pole-zero pairs. For the per-eigenmode view use
    :func:`gdyn_jax.linearize.mode_systems`.
    """
    if system.batch_shape:
        raise ValueError("system: expected a single system, got a batch; index it first")
    require_per_step(system, "the transfer function")
    B = system.input_matrix(input)
    n, m = system.num_params, B.shape[1]
    if n == 1 and m == 1 and output is None and index is None:
        return _siso(system.A, B[:, 0], system.C[0], minimal=minimal)
    outs = range(n) if output is None else [_check_index("output", output, n)]
    ins = range(m) if index is None else [_check_index("index", index, m)]
    table = [[_siso(system.A, B[:, j], system.C[i], minimal=minimal) for j in ins] for i in outs]
    if output is not None and index is not None:
        return table[0][0]
    return table


def _check_index(name: str, value: int, n: int) -> int:
    if not 0 <= int(value) < n:
        raise ValueError(f"{name}: expected an integer in [0, {n}), got {value}")
    return int(value)


def open_loop(opt: optax.GradientTransformation, *, minimal: bool = True) -> TransferFunction:
    r"""The optimizer alone: gradient :math:`g` -> accumulated parameter change :math:`\theta`.

    It is the loop with :math:`H = 0` seen from the noise input, so :math:`g = w`: SGD gives
    :math:`-a/(z-1)`, heavy ball :math:`-a z/((z-1)(z-\beta))`, Nesterov
    :math:`-a((1+\beta)z-\beta)/((z-1)(z-\beta))` (Wu et al. 2021, the status transfer
    function). Closing it with curvature :math:`h` gives :math:`T = -hL/(1 - hL)` for the
    reference input.
    """
    system = _linearize(opt, np.zeros((1, 1)))
    return transfer_function(system, "noise", minimal=minimal)

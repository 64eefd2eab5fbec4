r"""The rule as a linear system opened at the gradient, and the IQCs of :math:`S(\mu, L)`.

The rule's open loop :math:`\xi_{k+1} = A\xi_k + B g_k`, :math:`y_k = C\xi_k` comes from
:func:`gdyn_jax.linearize.linearize` (``jax.jacfwd`` of its own code); the integral quadratic
constraints that the gradient of every :math:`f \in S(\mu, L)` satisfies augment it to the
system of the LMI. The maths and the references are in :mod:`gdyn_jax.linearize.robust`.
"""

from __future__ import annotations

import numpy as np
import optax

from gdyn_jax.linearize.system import linearize

__all__ = [
    "IQCS",
    "check_class",
    "check_iqc",
    "iqc_system",
    "open_loop_matrices",
    "open_loop_of",
    "quadratic_rate",
]

IQCS = ("sector", "off_by_one")
NUM_CURVATURES = 257


def _check_opt(opt) -> None:
    if not isinstance(opt, optax.GradientTransformation):
        raise ValueError(f"opt: expected an optax.GradientTransformation, got {type(opt).__name__}")


def _not_linear(system) -> str:
    reason = getattr(system, "reason", None)
    detail = f" ({reason})" if reason else ""
    return (
        "opt: the update rule is not linear time-invariant in the gradient"
        f"{detail} (linearize: exact=False); robust_rate certifies rules such as sgd, momentum, "
        "nesterov, pid, triple_momentum, not adaptive or clipped ones"
    )


def open_loop_of(system) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C) of the loop opened at the gradient, from a loop closed with H = identity.

    The closed loop has :math:`A_{cl} = A + B H C` with :math:`B` the gradient-noise columns
    (the gradient is :math:`g = H(\\theta - r) + w`), so :math:`A = A_{cl} - B C` at H = I.
    """
    B = np.asarray(system.input_matrix("noise"), np.float64)
    C = np.asarray(system.C, np.float64)
    A = np.asarray(system.A, np.float64) - B @ C
    return A, B, C


def open_loop_matrices(opt: optax.GradientTransformation) -> tuple[np.ndarray, ...]:
    r"""The rule as the linear system :math:`(A, B, C)` from the gradient to the point where it is
    evaluated, for one coordinate: :math:`\xi_{k+1} = A\xi_k + B g_k`, :math:`y_k = C\xi_k`.

    Raises ValueError naming ``opt`` when ``linearize`` does not find the rule affine
    (``exact`` is False) or when the rule couples coordinates (its two-coordinate system is
    not the one-coordinate system repeated, :math:`A_0 \otimes I_2`).
    """
    _check_opt(opt)
    one = linearize(opt, 1.0)
    if not one.exact:
        raise ValueError(_not_linear(one))
    A, B, C = open_loop_of(one)
    two = linearize(opt, np.eye(2))
    if not two.exact:
        raise ValueError(_not_linear(two))
    A2, B2, C2 = open_loop_of(two)
    eye = np.eye(2)
    expected = (np.kron(A, eye), np.kron(B, eye), np.kron(C, eye))
    if any(
        x.shape != e.shape or not np.allclose(x, e, rtol=1e-12, atol=1e-12 * (1 + np.abs(e).max()))
        for x, e in zip((A2, B2, C2), expected, strict=True)
    ):
        raise ValueError(
            "opt: the update rule couples parameters (on two coordinates it is not the "
            "one-coordinate rule applied to each); robust_rate analyses coordinate-wise rules"
        )
    return A, B, C


def check_class(mu, L) -> tuple[float, float]:
    try:
        mu, L = float(mu), float(L)
    except (TypeError, ValueError):
        raise ValueError(f"mu, L: expected numbers, got {mu!r}, {L!r}") from None
    if not (np.isfinite(mu) and mu > 0):
        raise ValueError(f"mu: expected a finite strong convexity > 0, got {mu}")
    if not (np.isfinite(L) and L >= mu):
        raise ValueError(f"L: expected a finite smoothness >= mu = {mu:g}, got {L}")
    return mu, L


def quadratic_rate(A, B, C, mu: float, L: float, num: int = NUM_CURVATURES) -> float:
    r"""Worst spectral radius of :math:`A + hBC` over curvatures :math:`h \in [\mu, L]` (ends
    included, ``num`` linear and ``num`` geometric points): the rate on quadratics, a lower
    bound for any certificate over :math:`S(\mu, L)`."""
    hs = np.unique(np.concatenate([np.linspace(mu, L, num), np.geomspace(mu, L, num)]))
    closed = np.asarray(A)[None] + hs[:, None, None] * (np.asarray(B) @ np.asarray(C))[None]
    return float(np.max(np.abs(np.linalg.eigvals(closed))))


# --------------------------------------------------------------------------- the IQCs


def iqc_system(A, B, C, mu: float, L: float, iqc: str) -> tuple[np.ndarray, dict]:
    r"""The augmented system :math:`[\hat A\ \hat B]` and the quadratic forms :math:`Q_i`.

    Returns ``(AB, forms)``: ``AB`` is :math:`[\hat A\ \hat B]` of shape
    :math:`(\hat n, \hat n + 1)` and ``forms`` maps each multiplier's name (``'sector'``,
    ``'off_by_one'``) to its symmetric :math:`(\hat n+1) \times (\hat n+1)` matrix over
    :math:`[\eta; u]`.
    """
    A, B, C = (np.atleast_2d(np.asarray(x, np.float64)) for x in (A, B, C))
    n = A.shape[0]
    if iqc == "sector":
        AB = np.hstack([A, B])
        lipschitz = np.concatenate([L * C[0], [-1.0]])  # L y - u
        strong = np.concatenate([-mu * C[0], [1.0]])  # u - mu y
        return AB, {"sector": _form(lipschitz, strong)}
    # filter state zeta_{k+1} = u_k - L y_k
    A_hat = np.block([[A, np.zeros((n, 1))], [-L * C, np.zeros((1, 1))]])
    B_hat = np.vstack([B, [[1.0]]])
    AB = np.hstack([A_hat, B_hat])
    strong = np.concatenate([-mu * C[0], [0.0, 1.0]])
    sector = np.concatenate([L * C[0], [0.0, -1.0]])
    off = np.concatenate([L * C[0], [1.0, -1.0]])  # L y - u + zeta
    return AB, {"sector": _form(sector, strong), "off_by_one": _form(off, strong)}


def _form(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The symmetric matrix of the quadratic form 2 (a·v)(b·v)."""
    return np.outer(a, b) + np.outer(b, a)


def check_iqc(iqc: str) -> str:
    if iqc not in IQCS:
        raise ValueError(f"iqc: expected one of {', '.join(IQCS)}, got {iqc!r}")
    return iqc

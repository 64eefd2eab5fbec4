r"""The closed loop tested mode by mode on a real loss: predicted kicks along Hessian eigenvectors.

Near a minimum :math:`\theta^*` the loss is :math:`L(\theta^* + \delta) \approx L^* +
\tfrac12 \delta^\top H \delta`, and along an eigenvector :math:`q_i` (:math:`H q_i = \lambda_i
q_i`) a rule whose update reads the parameters only through the gradient moves the coordinate
:math:`p_i = q_i^\top \delta` as the scalar closed loop of :func:`gdyn_jax.linearize.linearize`
at :math:`h = \lambda_i`. A kick :math:`\delta_0 = c\, q_i` with the optimizer state at its
initial zero is that loop's free response; by shift invariance (the loop sees only
:math:`\theta - r`) it is the unit step response :math:`y_k` from the reference input seen from
the other side:

.. math::
    p_i(k) = c\,\bigl(1 - y_k(\lambda_i)\bigr).

:func:`predicted_kick_response` computes the right-hand side and :func:`kick_test` sets it
beside the response measured on the real loss
(:func:`gdyn_jax.measurements.kick_responses`); :func:`regime` names the loop's
behaviour from its dominant pole, and :func:`regime_learning_rates` finds step sizes that put a
curvature in each regime.

References: Wu, Jing, Du, Chen, Sci. China Inf. Sci. 64(5):150102, 2021 (optimizers as control
systems); Cohen et al., ICLR 2021 (the top Hessian direction at the stability limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import linearize
from gdyn_jax.measurements.modes import kick_responses, relative_error

__all__ = [
    "REGIMES",
    "KickTest",
    "kick_test",
    "mode_loops",
    "predicted_kick_response",
    "regime",
    "regime_learning_rates",
    "regimes_of",
]

#: The behaviours of a loop, named after its dominant pole z (in order, z real in (0, 1) for
#: a monotone decay; complex inside the unit circle for a decaying oscillation; real in
#: (-1, 0) for a sign flip every step; outside the unit circle for growth).
REGIMES = ("damped", "underdamped", "oscillating", "unstable")
PyTree = Any


def regimes_of(A) -> np.ndarray:
    """The regime (an entry of :data:`REGIMES`) of each loop matrix ``A`` (``(..., k, k)``).

    Read from the dominant pole (largest modulus; a complex pair wins a tie): ``'unstable'``
    when :math:`\\rho(A) \\ge 1`, else ``'underdamped'`` when the pole is complex,
    ``'oscillating'`` when it is real and negative, ``'damped'`` otherwise.
    """
    A = np.asarray(A, np.float64)
    poles = np.linalg.eigvals(A)
    rho = np.max(np.abs(poles), axis=-1)
    dominant = np.abs(poles) >= rho[..., None] * (1 - 1e-9)
    complex_ = np.any(dominant & (np.abs(poles.imag) > 1e-9 * np.maximum(rho, 1.0)[..., None]), -1)
    negative = np.any(dominant & (poles.real < 0), axis=-1)
    out = np.where(negative, "oscillating", "damped")
    out = np.where(complex_, "underdamped", out)
    return np.where(rho >= 1.0, "unstable", out)


def regime(system) -> str:
    """The regime of one :class:`~gdyn_jax.linearize.LinearSystem` (see :func:`regimes_of`)."""
    return str(regimes_of(system.A))


def regime_learning_rates(
    factory: Callable[..., optax.GradientTransformation],
    curvature: float,
    *,
    growth: float = 100.0,
    steps: int = 60,
    points: int = 2000,
    **fixed: float,
) -> dict[str, float]:
    r"""A learning rate per regime that the loop of ``factory(lr, **fixed)`` at ``curvature`` is in.

    The loops at :math:`a = c/h` for :math:`c` on a log grid of ``points`` values in
    :math:`[10^{-3}, 10]` (``linearize_grid``) are classified by :func:`regimes_of`; each stable
    regime gets the learning rate at the middle (in grid order) of its run of grid points, and
    ``'unstable'`` the one whose spectral radius is closest to ``growth ** (1 / steps)`` (the
    free response grows by about ``growth`` in ``steps`` steps), refined on a linear grid of
    ``points`` between the neighbours of the closest grid point. Regimes the rule never shows
    (GD is never underdamped) are absent.
    """
    h = float(curvature)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"curvature: expected a finite value > 0, got {curvature}")
    lrs = np.geomspace(1e-3, 10.0, int(points)) / h
    system = linearize.linearize_grid(factory, {"learning_rate": lrs}, h, **fixed)
    names = regimes_of(system.A)
    out = {}
    for name in REGIMES[:-1]:
        where = np.nonzero(names == name)[0]
        if where.size:
            out[name] = float(lrs[where[where.size // 2]])
    unstable = np.nonzero(names == "unstable")[0]
    if unstable.size:
        target = float(growth) ** (1.0 / int(steps))
        for fine in (False, True):  # the closest grid point, then a grid between its neighbours
            rho = np.asarray(linearize.spectral_radius(system))
            best = int(
                np.argmin(np.where(names == "unstable", np.abs(np.log(rho / target)), np.inf))
            )
            if fine:
                break
            lrs = np.linspace(lrs[max(best - 1, 0)], lrs[min(best + 1, lrs.size - 1)], int(points))
            system = linearize.linearize_grid(factory, {"learning_rate": lrs}, h, **fixed)
            names = regimes_of(system.A)
        out["unstable"] = float(lrs[best])
    return out


def mode_loops(
    factory: Callable[..., optax.GradientTransformation],
    curvatures: Sequence[float],
    **hparams: float,
):
    r"""The scalar closed loop of ``factory(**hparams)`` at each curvature, as one system.

    Each is :func:`gdyn_jax.linearize.linearize_grid` at one grid point and :math:`h =
    \lambda_i` (compiled once per factory); the result is a
    :class:`~gdyn_jax.linearize.LinearSystem` with batch shape ``(len(curvatures),)`` (its
    ``hessian`` is None: it differs along the batch), exact when every loop is.
    """
    grid = {k: np.asarray([v], np.float64) for k, v in hparams.items()}
    loops = [linearize.linearize_grid(factory, grid, float(h)) for h in curvatures]
    first = loops[0]
    A, B, C, D = (
        np.stack([np.asarray(getattr(s, m))[(0,) * len(grid)] for s in loops]) for m in "ABCD"
    )
    return linearize.LinearSystem(
        A,
        B,
        C,
        D,
        exact=all(s.exact for s in loops),
        inputs=first.inputs,
        num_params=1,
        reason=first.reason,
        notes=first.notes,
    )


def predicted_kick_response(
    factory: Callable[..., optax.GradientTransformation],
    curvatures: Sequence[float],
    steps: int,
    amplitude: float = 1.0,
    **hparams: float,
) -> np.ndarray:
    r""":math:`c\,(1 - y_k(\lambda_i))`, the coordinate along each eigenvector after a kick.

    ``y`` is :func:`gdyn_jax.linearize.step_response` (reference input) of the loop of
    ``factory(**hparams)`` at :math:`h = \lambda_i` (:func:`mode_loops`), ``k = 0 .. steps-1``.
    Valid for rules whose initial state is zero and whose update reads the parameters only
    through the gradient (SGD, heavy ball, Nesterov): the loop's one-step map then moves
    :math:`\theta` and :math:`r` together, :math:`A e_\theta + B_r = e_\theta`, which is checked;
    other rules (weight decay, a state initialised from the parameters) raise ``ValueError``.

    Returns shape ``(len(curvatures), steps)`` (float64).
    """
    with jax.enable_x64(True):
        state = factory(**hparams).init(jnp.ones(1, jnp.float64))
    if any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(state)):
        raise ValueError("factory: its initial state is not zero, so a kick is not a step response")
    loops = mode_loops(factory, curvatures, **hparams)
    shift = loops.A[..., :, 0] + loops.input_matrix("reference")[..., :, 0]
    if not np.allclose(shift, np.eye(loops.num_states)[0], rtol=0, atol=1e-10):
        raise ValueError(
            "factory: its update reads the parameters beyond the gradient (e.g. weight decay), so "
            "a kick is not a step response"
        )
    return float(amplitude) * (1.0 - np.asarray(linearize.step_response(loops, steps), np.float64))


@dataclasses.dataclass(frozen=True)
class KickTest:
    """One optimizer setting's kicks: per mode, the response measured and predicted.

    Attributes:
      hparams: the optimizer's hyperparameters.
      regimes: the regime of each mode's loop (:func:`regimes_of`), shape ``(k,)``.
      measured, predicted: :math:`p_i(t)/c`, shape ``(k, steps + 1)``.
      error: :func:`~gdyn_jax.measurements.relative_error` of each mode, shape ``(k,)``.
      growth: :math:`|p_i(T)|/c` at the last step, shape ``(k,)``.
    """

    hparams: dict[str, float]
    regimes: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    error: np.ndarray
    growth: np.ndarray


def kick_test(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    factory: Callable[..., optax.GradientTransformation],
    settings: Sequence[Mapping[str, float]],
    curvatures: Sequence[float],
    vectors: jax.Array,
    amplitude: float,
    steps: int,
) -> list[KickTest]:
    """:func:`~gdyn_jax.measurements.kick_responses` (one program for all ``settings``) beside
    :func:`predicted_kick_response` at ``curvatures``, one :class:`KickTest` per setting."""
    names = list(settings[0])
    grid = {k: np.array([float(hp[k]) for hp in settings]) for k in names}
    measured = np.asarray(kick_responses(loss_fn, params, factory, grid, vectors, amplitude, steps))
    out = []
    for hp, m in zip(settings, measured / amplitude, strict=True):
        hp = {k: float(v) for k, v in hp.items()}
        predicted = predicted_kick_response(factory, curvatures, steps + 1, 1.0, **hp)
        loops = mode_loops(factory, curvatures, **hp)
        out.append(
            KickTest(
                hp,
                regimes_of(loops.A),
                m,
                predicted,
                relative_error(m, predicted),
                np.abs(m[:, -1]),
            )
        )
    return out

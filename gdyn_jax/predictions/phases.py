r"""The phase of a training run, predicted from the rule's loop and a few numbers at init.

Four phases (Lewkowycz et al. 2020, "The large learning rate phase of deep learning: the
catapult mechanism"; Cohen et al. 2021, "Gradient descent on neural networks typically
occurs at the edge of stability"; Kalra & Barkeshli 2023):

- **stable**: the curvature stays below the rule's limit :math:`S^*` for the whole run;
- **edge of stability**: stable at init, but progressive sharpening brings the sharpness to
  :math:`S^*` within the run (timed by the sharpening rate measured at init, extrapolated
  linearly, or by the sharpness along gradient flow at the rule's effective step,
  :mod:`gdyn_jax.predictions.preflight_flow`);
- **catapult**: above :math:`S^*` at init (or at a step of the schedule), the oscillation
  along the top eigenvector grows and lowers the sharpness until the loop is stable again;
- **divergent**: above :math:`S^*`, and the oscillation *raises* the sharpness instead.

**The catapult's upper edge, for any rule.** Let :math:`u` be the top eigenvector of the
Gauss-Newton matrix :math:`G` (the network's kernel in parameter space, whose top eigenvalue
is the sharpness of Lewkowycz et al.'s analysis), :math:`S(\theta) = \lambda_{\max}(G(\theta))`,
and let the iterate oscillate along :math:`u` with amplitude :math:`x`, as the leaving pole
:math:`-\rho` of the loop makes it (:math:`x_{t+1} = -\rho x_t`, so the step along :math:`u`
is :math:`-(1+\rho)x`). The gradient's second-order term :math:`\tfrac12x^2T`,
:math:`T = \nabla^3L[u,u,\cdot]`, is an input growing as :math:`\rho^{2t}`, which the rule
turns into a drift per step of :math:`-\eta_{\rm eff}\tfrac12x^2T` with
:math:`\eta_{\rm eff} = -(z-1)G_{\rm rule}(z)` at :math:`z = \rho^2` (:math:`G_{\rm rule}` the
open loop from gradient to parameter: :math:`\eta` for gradient descent,
:math:`\eta\rho^2/(\rho^2-\beta)` for heavy ball; the effective step :math:`\eta/(1-\beta)` as
:math:`\rho \to 1`). A second-order Taylor expansion of :math:`S` along one step, averaged
over the period-2 oscillation, gives the sharpness change per step

.. math::
    \overline{\Delta S} = \tfrac12 x^2\left[\nabla^2S[u,u]\,(\rho^2-1)
        - \eta_{\rm eff}\,\nabla S\cdot T\right].

The sharpness falls (a catapult) when :math:`q = \nabla^2S[u,u](\rho^2-1) /
(\eta_{\rm eff}\nabla S\cdot T) < 1`, and rises (divergence) when :math:`q > 1`. For gradient
descent :math:`\rho = \eta\lambda-1`, so :math:`q<1 \iff \eta\lambda < 2 + \nabla S\cdot T /
(\lambda\nabla^2S[u,u])`. On Lewkowycz et al.'s wide two-layer linear network
:math:`\nabla S\cdot T = 4\lambda/m` and :math:`\nabla^2S[u,u] = 2/m`, which gives their
:math:`\eta\lambda < 4` (the tests check it, and training). :math:`\rho` and
:math:`\eta_{\rm eff}` come from the rule's own loop; :math:`\lambda`, :math:`\nabla S`,
:math:`T` and :math:`\nabla^2S[u,u]` are measured on the model
(:mod:`gdyn_jax.predictions.preflight`); nothing here is fitted. :math:`\nabla^2S[u,u]` is
:math:`u^\top G''u` plus the turning of the eigenvector,
:math:`2\sum_j (q_j^\top G'u)^2/(\lambda-\lambda_j)` over the directions :math:`q_j` whose
curvature is below the rule's limit (second-order perturbation theory; those above it
oscillate with :math:`u`).

**Where the model stops and the probe starts.** The expansion is local: it reads the
sharpness's derivatives at the initialisation and assumes the oscillation grows slowly. On a
real network at its divergence boundary :math:`\rho \approx 5`: the loss peaks by step 2 and
the sharpness has fallen several-fold by step 4, far from where it was expanded (on an
MNIST-1D MLP the model's edge is 30-35 % low for SGD and cross-entropy). The pre-flight
therefore decides divergent against catapult by the edge probed on the model
(:mod:`gdyn_jax.predictions.probe`, ``probed`` in :func:`decide_phases`) and reports
:math:`q` beside it.

**Loops of many rule instances at once.** The loop of an affine rule on
:math:`\tfrac12h\theta^2` is affine in :math:`h`: :math:`A(h) = A_0 + hD`. Two linearisations
(``linearize.linearize_grid`` at :math:`h = 1, 2`) give :math:`A_0, D` for a whole grid;
the limit is then found by a vectorised scan and bisection of :math:`\rho(A_0 + hD)`
(checked against ``linearize.max_stable_curvature`` in the tests).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gdyn_jax import linearize
from gdyn_jax.linearize.limit import affine_limits

__all__ = [
    "BLOWUP",
    "EOS_TOLERANCE",
    "MEASURED_PHASES",
    "PHASES",
    "Loops",
    "decide_phases",
    "effective_steps",
    "measured_phases",
    "radius",
    "stability_limits",
]

#: the phases a pre-flight predicts for a grid point (unknown: the rule is not analysable)
PHASES = ("stable", "edge of stability", "catapult", "divergent", "unknown")
#: the phases read from a run's curves: a cross-entropy run that blows up and falls back to
#: chance-level loss and accuracy is 'collapsed', a failure of its own
MEASURED_PHASES = ("stable", "edge of stability", "catapult", "divergent", "collapsed")
#: a loss grown this much over its value at step 0 counts as divergent
BLOWUP = 1e6
#: the edge of stability is measured where the sharpness comes within this of the limit
EOS_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class Loops:
    r"""Closed loops :math:`A(h) = A_0 + hD` of a batch of rule instances (any leading shape).

    ``effective_step`` is :math:`\eta_{\rm eff}` (:func:`effective_steps`); ``exact`` whether
    the loop is proven affine; ``reason`` linearize's reason where not.
    """

    A0: np.ndarray
    D: np.ndarray
    effective_step: np.ndarray
    exact: bool
    reason: str = ""
    b: np.ndarray | None = None
    c: np.ndarray | None = None

    def step_at(self, z: np.ndarray, index) -> np.ndarray:
        r"""The rule's step on a gradient that grows as :math:`z^t`: :math:`-(z-1)G(z)`, with
        :math:`G(z) = c(zI - A_0)^{-1}b` the open loop (the effective step at :math:`z = 1`)."""
        A0, b, c = (
            np.broadcast_to(x, self.A0.shape[:2] + x.shape[2:])[index]
            for x in (self.A0, self.b, self.c)
        )
        eye = np.eye(A0.shape[-1])
        solved = np.linalg.solve(z[..., None, None] * eye - A0, b[..., None])[..., 0]
        return -(z - 1) * np.einsum("...i,...i->...", c, solved)


def radius(A0: np.ndarray, D: np.ndarray, h) -> np.ndarray:
    """Spectral radius of :math:`A_0 + hD` (``h`` broadcast against the batch shape)."""
    h = np.asarray(h, np.float64)[..., None, None]
    return np.asarray(linearize.spectral_radius(A0 + h * D))


def stability_limits(A0: np.ndarray, D: np.ndarray) -> np.ndarray:
    r"""The end of the first stable interval of :math:`h \mapsto \rho(A_0 + hD)`, per loop:
    ``linearize.limit.affine_limits``, the search of ``max_stable_curvature`` on a batch.
    ``inf`` where no curvature is unstable (also where the rate is 0, as at the start of a
    warm-up), 0 where none is stable, NaN where the radius is not finite (``decide_phases``
    marks a point whose limit is NaN at any step 'unknown')."""
    return affine_limits(A0, D)


def effective_steps(A0: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    r""":math:`\eta_{\rm eff} = -C P_1 b`: the drift per step of the open loop under a unit
    constant gradient (``b`` the gradient column of ``B``, :math:`P_1 = \lim A_0^N` the
    projector on the integrator), as ``predictions.edge`` reads it from the transfer
    function. Computed by 40 squarings of :math:`A_0` (stable modes die, the pole at 1
    stays)."""
    power = np.asarray(A0, np.float64)
    for _ in range(40):
        power = power @ power
        power = np.where(np.isfinite(power), power, np.nan)
    return -np.einsum("...i,...ij,...j->...", C, power, B)


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis, -1 where none."""
    return np.where(mask.any(axis=-1), np.argmax(mask, axis=-1), -1)


def _catapult_ratio(m, loops: Loops, pick, limit_at, A0, D, c) -> np.ndarray:
    r"""The catapult's :math:`q` (module doc) of each (point, seed) at its deciding step."""
    rho = radius(A0, D, c)
    step_eff = loops.step_at(np.maximum(rho, 1 + 1e-6) ** 2, pick)
    shape = c.shape
    lam, drift, d2, rest = (
        np.broadcast_to(np.asarray(m[k], np.float64), shape)
        for k in ("gn_sharpness", "drift", "d2s", "turning_rest")
    )
    ritz, weight = np.asarray(m["ritz_values"]), np.asarray(m["ritz_weights"])
    with np.errstate(divide="ignore", invalid="ignore"):
        below = ritz[None] < limit_at[..., None]  # (P, S, k)
        gap = lam[..., None] - ritz[None]
        turning = 2 * np.sum(np.where(below, weight[None] / gap, 0), axis=-1)
        return (d2 + turning + rest) * (rho**2 - 1) / (step_eff * drift)


def _unknown(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    nan = np.full(shape, np.nan)
    unknown = np.full(shape, PHASES.index("unknown"))
    return {"phase": unknown, "step": np.full(shape, -1), "limit": nan, "margin": nan, "ratio": nan}


def _rate_edge(c, lam, sharp, lim, eta, steps: int | None) -> np.ndarray:
    r"""The step at which the sharpness, growing at its rate at init
    (:math:`S_t = c\,(1 + \tfrac{\rm sharpening}{\lambda}\sum_{s\le t}\eta_{\rm eff})`), first
    reaches the limit; -1 if not within the run. ``(P, S, T)`` inputs; ``T = 1`` is a constant
    rule run for ``steps`` steps."""
    if lim.shape[-1] > 1 or steps is None:
        return _first_true(c * (1 + sharp / lam * np.cumsum(np.maximum(eta, 0), axis=-1)) > lim)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (lim / c - 1) * lam / sharp  # flow time at which it reaches the limit
        t = np.ceil(tau / eta) - 1
    ok = (sharp > 0) & (c <= lim) & (eta > 0) & (t <= steps - 1)
    return np.where(ok, np.maximum(t, 0), -1)[..., 0].astype(int)


def _flow_edge(flow, lim, eta, steps: int | None) -> tuple[np.ndarray, np.ndarray]:
    r"""The step at which the flow's sharpness at the rule's flow time
    (:math:`\tau_t = \sum_{s\le t}\eta_{\rm eff}`) first reaches the limit (-1: not within the
    run), and whether the flow went far enough to say so. ``flow``: ``(times, sharpness)``,
    ``(S, K)`` (NaN after its end); ``lim``, ``eta``: ``(P, 1, T)``."""
    times, sharp = (np.asarray(a, np.float64) for a in flow)
    T = lim.shape[-1]
    n = steps if (T == 1 and steps) else T
    tau = np.cumsum(np.broadcast_to(np.maximum(eta, 0), lim.shape[:-1] + (T,)), axis=-1)
    if T == 1:
        tau = tau * np.arange(1, n + 1)
    lim_t = np.broadcast_to(lim, lim.shape[:-1] + (n,)) if T == 1 else lim
    out = np.full((lim.shape[0], times.shape[0]), -1)
    decided = np.ones(out.shape, bool)
    for j in range(times.shape[0]):
        keep = np.isfinite(times[j]) & np.isfinite(sharp[j])
        t, v = times[j][keep], sharp[j][keep]
        at = np.interp(tau[:, 0], t, v, right=np.nan)  # (P, n)
        out[:, j] = _first_true(at >= lim_t[:, 0])
        decided[:, j] = (out[:, j] >= 0) | (tau[:, 0, -1] <= t[-1])
    return out, decided


def _edge_step(c, lam, sharp, lim, eta, steps: int | None, flow) -> np.ndarray:
    """The edge of stability's step (-1: none within the run): the first at which the
    sharpness comes within ``EOS_TOLERANCE`` of the limit, as a run's is measured; timed by
    ``flow`` where it went far enough to decide, else by the sharpening rate at init."""
    lim = (1 - EOS_TOLERANCE) * lim
    t_eos = _rate_edge(c, lam, sharp, lim, eta, steps)
    if flow is None:
        return t_eos
    by_flow, decided = _flow_edge(flow, lim, eta, steps)
    return np.where(decided, by_flow, t_eos)


def _at_step(limits, loops: Loops, m, at: np.ndarray, c: np.ndarray):
    """The limit and the catapult's :math:`q` of each (point, seed) at its deciding step."""
    pick = (np.arange(limits.shape[0])[:, None], at)
    A0 = np.broadcast_to(loops.A0, limits.shape + loops.A0.shape[-2:])[pick[0], pick[1]]
    D = np.broadcast_to(loops.D, limits.shape + loops.D.shape[-2:])[pick[0], pick[1]]
    limit_at = limits[pick[0], pick[1]]
    return limit_at, _catapult_ratio(m, loops, pick, limit_at, A0, D, c)


def _above_limit(probed, ratio: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """(divergent by the probe, the phase above the limit: 2 catapult, 3 divergent): the
    probe decides where it was run, the catapult's :math:`q` elsewhere."""
    call = np.full(shape, np.nan) if probed is None else np.asarray(probed, np.float64)
    known = np.broadcast_to(~np.isnan(call), shape)
    return known & (np.nan_to_num(call) > 0), np.where(known, 2, np.where(ratio < 1, 2, 3))


def decide_phases(
    limits: np.ndarray,
    loops: Loops,
    m: dict[str, np.ndarray],
    probed: np.ndarray | None = None,
    *,
    steps: int | None = None,
    flow: tuple[np.ndarray, np.ndarray] | None = None,
):
    r"""Phase, change step, margin and catapult ratio of every (point, seed).

    Args:
      limits: :math:`S^*_t`, shape ``(P, T)`` (``T = 1`` without a schedule).
      loops: the loops of the same ``(P, T)`` rule instances.
      m: per seed ``(S,)``: ``curvature`` (what the loop sees at init: the sharpness, the batch
        sharpness for mini-batches, preconditioned for adaptive rules), ``gn_sharpness``
        :math:`\lambda` of :math:`G`, ``drift`` :math:`\nabla S\cdot T`, ``d2s``
        :math:`u^\top G''u`, ``sharpening`` :math:`-\nabla S\cdot\nabla L`; and the
        eigenvector's turning (``preflight``): ``ritz_values``, ``ritz_weights`` ``(S, k)``
        and ``turning_rest`` ``(S,)``. Only the directions whose curvature is below the limit
        turn :math:`u` towards them: those above it oscillate with it.
      probed: ``(P, S)``: 1 (True) where the learning rate lies above the divergence edge
        probed on the model (``predictions.probe``), 0 below, NaN not probed; where known
        it decides divergent against catapult, else the ratio :math:`q` does.
      steps: the run's length, for a rule without a schedule (``T = 1``).
      flow: per seed, ``(times, sharpness)`` ``(S, K)`` along gradient flow: it times the
        edge of stability where it went far enough, else the rate at init does.

    Returns:
      ``phase`` (indices into :data:`PHASES`), ``step`` (when it changes, -1 if never),
      ``limit`` and ``margin`` (:math:`c/S^*-1` at the deciding step) and ``ratio``
      (the catapult's :math:`q`, NaN where not above the limit), each ``(P, S)``.
    """
    curvature = m["curvature"]
    shape = (limits.shape[0], np.shape(curvature)[-1])
    if not loops.exact:  # no loop to read: no verdict (the reason is the caller's to show)
        return _unknown(shape)
    c, lam, sharp = (
        np.broadcast_to(np.asarray(m[k], np.float64), shape)[..., None]
        for k in ("curvature", "gn_sharpness", "sharpening")
    )
    lim = limits[:, None, :]  # (P, 1, T)
    eta = np.broadcast_to(loops.effective_step, limits.shape)[:, None, :]
    t_up = _first_true(c > lim)
    t_eos = _edge_step(c, lam, sharp, lim, eta, steps, flow)
    t_index = np.minimum(t_eos, lim.shape[-1] - 1)  # the limit's step (T = 1: constant)
    at = np.where(t_up >= 0, t_up, np.where(t_eos >= 0, t_index, np.argmin(lim - c, axis=-1)))
    limit_at, ratio = _at_step(limits, loops, m, at, c[..., 0])
    ratio = np.where(t_up >= 0, ratio, np.nan)
    diverges, above = _above_limit(probed, ratio, shape)
    undecided = np.isnan(limits).any(axis=1)[:, None] | np.isnan(c[..., 0])  # no verdict
    phase = np.select([undecided, diverges, t_up >= 0, t_eos >= 0], [4, 3, above, 1], default=0)
    return {
        "phase": phase.astype(int),
        "step": np.where(t_up >= 0, t_up, np.where(diverges, 0, t_eos)),
        "limit": limit_at,
        "margin": c[..., 0] / limit_at - 1,
        "ratio": ratio,
    }


def measured_phases(
    train_loss: np.ndarray,
    diverged_at: np.ndarray,
    sharpness: np.ndarray | None = None,
    limit: np.ndarray | float | None = None,
    accuracy: np.ndarray | None = None,
    classes: int | None = None,
) -> np.ndarray:
    r"""Each run's phase read from its own curves (indices into :data:`MEASURED_PHASES`).

    ``train_loss`` ``(..., E)`` over the evaluation steps (step 0 first); ``diverged_at``
    ``(...)`` (-1 if never). In order: *divergent* if the run went non-finite or its loss grew
    a millionfold (``BLOWUP``) over step 0; *collapsed* (cross-entropy, ``classes`` given with
    the test ``accuracy``) if its loss rose above the start and ends at chance level
    (:math:`\log C`, within 5 %) or above with chance accuracy (a run blown up whose loss
    stays finite, at 2.5-180 on the MNIST-1D CNN, is a failure, not stable); *catapult* if
    the loss rose above its start and
    later fell below it, with the sharpness (when tracked) ending below its start; *edge of
    stability* if the tracked sharpness came within ``EOS_TOLERANCE`` (5 %) of ``limit``
    (broadcast against the curves); else *stable*.
    """
    loss = np.asarray(train_loss, np.float64)
    start = loss[..., :1]
    finite = np.isfinite(loss).all(axis=-1) & (np.asarray(diverged_at) < 0)
    with np.errstate(invalid="ignore"):
        blown = (np.nan_to_num(loss, nan=np.inf) > BLOWUP * start).any(axis=-1)
        peak = np.max(np.where(np.isfinite(loss), loss, -np.inf), axis=-1)  # -inf: none finite
        rose = peak > start[..., 0]
        after = np.nanargmax(np.nan_to_num(loss, nan=-np.inf), axis=-1)
        fell = np.array(
            [
                (row[i:] < row[0]).any()
                for row, i in zip(loss.reshape(-1, loss.shape[-1]), after.ravel(), strict=True)
            ]
        ).reshape(after.shape)
    catapult = rose & fell
    eos = np.zeros_like(catapult)
    if sharpness is not None:
        sharp = np.asarray(sharpness, np.float64)
        catapult &= sharp[..., -1] < sharp[..., 0]
        if limit is not None:
            lim = np.broadcast_to(np.asarray(limit, np.float64), sharp.shape)
            eos = (sharp >= (1 - EOS_TOLERANCE) * lim).any(axis=-1)
    collapsed = np.zeros_like(catapult)
    if classes is not None and accuracy is not None:
        final_acc = np.asarray(accuracy, np.float64)[..., -1]
        chance = np.log(classes)
        collapsed = rose & (loss[..., -1] > (1 - 0.05) * chance)  # at chance level or above
        collapsed &= final_acc < 1.0 / classes + 0.05
    return np.select([~finite | blown, collapsed, catapult, eos], [3, 4, 2, 1], default=0).astype(
        int
    )

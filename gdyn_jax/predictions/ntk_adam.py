r"""Adam with a frozen preconditioner on the NTK loop: an approximation of a real Adam run.

With Adam's second moment :math:`\nu` held (an adaptive rule: one ``optax.ScaleByAdamState``,
as the pre-flight recognises it), its step is linear in the gradient,

.. math::
    \theta_{k+1} = \theta_k - \eta\,P^{-1}\hat m_k ,\qquad
    P = \sqrt{\hat\nu + \epsilon_{\rm root}} + \epsilon ,\qquad
    \hat m_k = m_k / (1 - \beta_1^{k+1}) .

In the coordinates :math:`\phi = P^{1/2}\theta` it is the same rule with :math:`P = 1` on the
loss whose Gauss-Newton matrix is :math:`P^{-1/2}J^\top H J P^{-1/2}`, whose nonzero eigenvalues
are those of :math:`H^{1/2}\,J P^{-1} J^\top H^{1/2}`: each eigenmode of the preconditioned
kernel :math:`J P^{-1}J^\top` (``measurements.ntk.preconditioned_ntk``) is one scalar loop of
the rule with :math:`\nu` held at :math:`P = 1`, and :mod:`~gdyn_jax.predictions.ntk_loop`
does the rest unchanged.

- :math:`P` is frozen at initialisation after ``warmup`` updates of the statistics at
  :math:`\theta_0` on the training batch (``preflight.warm_scale``, the pre-flight's own). On
  the full batch that is :math:`\hat\nu = g_0^2`, Adam's own :math:`\hat\nu` at its first
  step, whatever the number of updates (it is stated in the output all the same).
- The count: a real run's first-moment bias correction :math:`1/(1-\beta_1^{k+1})` is kept, so
  each mode's loop is time-varying (as a schedule makes it): at step :math:`k` the count is
  :math:`k+1` and :math:`\nu` is set so that :math:`\hat\nu` stays at :math:`P = 1`
  (``preflight_loops.unit_preconditioner``; the step is linearize's ``frozen_update`` with
  ``freeze=('nu', 'count')``). With the count frozen late instead the loop is time-invariant
  but its first steps are :math:`(1-\beta_1)` times a real run's (whose first step is
  :math:`\eta\,g/P`); the per-mode pole table reads that late loop (the pre-flight's).

What it leaves out: a real run's :math:`\nu` keeps moving (:math:`\hat\nu_t` averages
:math:`g_s^2` over the steps so far, and the gradient shrinks as the loss falls, so the real
:math:`P` shrinks and its steps grow). The prediction is an approximation whose error measures
that drift, never exact, even on the linearised network.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax import linearize, optimizers
from gdyn_jax.errors import UsageError
from gdyn_jax.linearize.freeze import frozen_update
from gdyn_jax.linearize.loop import freeze_mask
from gdyn_jax.predictions import ntk_loop
from gdyn_jax.predictions.modes import regimes_of
from gdyn_jax.predictions.preflight import adam_state, warm_scale
from gdyn_jax.predictions.preflight_loops import rule_loops, unit_preconditioner
from gdyn_jax.sweep import SweepConfig, setup
from gdyn_jax.sweep import train as train_lib
from gdyn_jax.sweep.config import rule_of

__all__ = [
    "APPROXIMATION",
    "FROZEN",
    "WARMUP",
    "check_rule",
    "check_warmup",
    "frozen_loops",
    "frozen_responses",
    "frozen_table",
    "is_adaptive",
    "warm_preconditioner",
]

#: updates of Adam's statistics at the initial parameters before P is frozen (the
#: pre-flight's default)
WARMUP = 10
#: the state leaves linearize holds fixed in each mode's loop (``freeze``)
FROZEN = ("nu", "count")
#: the note every Adam prediction carries (its ``warmup`` filled in)
APPROXIMATION = (
    "Adam's second moment nu frozen at initialisation after {warmup} warm-up updates (the "
    "first moment's bias correction kept); a real run's nu keeps moving: an approximation"
)


def is_adaptive(factory, hp: Mapping[str, float]) -> bool:
    """Whether ``factory(**hp)``'s state holds one ``optax.ScaleByAdamState``."""
    with jax.enable_x64(True):
        state = jax.eval_shape(factory(**hp).init, jnp.zeros(1))
    return adam_state(state)


def _points(hp: Mapping[str, float]) -> dict[str, np.ndarray]:
    return {k: np.asarray([v], np.float64) for k, v in hp.items()}


def frozen_loops(config: SweepConfig, hp: Mapping[str, float]):
    """The rule's loop with ``nu`` and the count frozen late, at :math:`P = 1`
    (``preflight_loops.rule_loops``): :math:`A(\\mu) = A_0 + \\mu D`."""
    return rule_loops(config, _points(hp), True)[1]


def check_rule(config: SweepConfig, hp: Mapping[str, float]) -> bool:
    """Whether the rule is adaptive; a one-line ``UsageError`` with linearize's reason when its
    loop is not affine (with an adaptive rule's preconditioner frozen)."""
    factory = rule_of(config).factory
    if not is_adaptive(factory, hp):
        ntk_loop.check_affine(factory, hp, 1.0)
        return False
    if config.schedule not in (None, "constant"):
        raise UsageError(
            "schedule: the frozen-preconditioner prediction of an adaptive rule is for a "
            "constant learning rate; drop --schedule"
        )
    loops = frozen_loops(config, hp)
    if not loops.exact:
        raise UsageError(
            "optimizer: not an affine rule even with its preconditioner frozen, so its modes do "
            f"not decouple (linearize: {loops.reason})"
        )
    return True


def check_warmup(warmup) -> None:
    """A one-line ``UsageError`` unless ``warmup`` (``precondition_warmup``) is an integer
    >= 1: the one check, for the CLI (before any work) and the library."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise UsageError(f"precondition_warmup: expected an integer >= 1, got {warmup!r}")


def warm_preconditioner(program, hp: Mapping[str, float], state, warmup: int = WARMUP):
    """:math:`P^{-1/2}` (flat, float64) of the rule's preconditioner after ``warmup`` updates
    of its statistics at the initial parameters on the full training batch."""
    check_warmup(warmup)
    task, data = program.task, program.data
    precondition = setup.adam_preconditioner_of(task.optimizer, task.fixed)
    xb, yb = data.x_train[None], data.y_train[None]

    def scale(h, s):
        return warm_scale(task, h, s, precondition, xb, yb, warmup)

    return np.asarray(jax.jit(scale)(train_lib.as_hparams(hp), state), np.float64)


def frozen_responses(factory, hp: Mapping[str, float], curvatures, steps: int) -> np.ndarray:
    r""":math:`r_k(\mu_i)`, (M, steps+1): the rule's own step with ``nu`` and the count frozen
    (linearize's ``frozen_update``), run in float64 on :math:`\tfrac12\sum_i\mu_i x_i^2` from
    :math:`x = 1`, the count set to :math:`k+1` at step :math:`k` and :math:`\nu` to
    :math:`P = 1` there (a real run's bias correction of the first moment; module docstring)."""
    full = {k: v for k, v in optimizers.hyperparameters(factory).items() if v is not None}
    full.update(hp)
    with jax.enable_x64(True):
        mu = jnp.asarray(curvatures, jnp.float64)
        x0 = jnp.ones_like(mu)
        opt = factory(**hp)
        state = opt.init(x0)
        held = frozen_update(opt.update, x0, state, x0, freeze_mask(state, FROZEN))

        def body(carry, k):
            x, s = carry
            updates, s = held(mu * x, unit_preconditioner(s, full, k + 1), x)
            x = x + updates
            return (x, s), x

        def run(s):
            return jax.lax.scan(body, (x0, s), jnp.arange(int(steps), dtype=jnp.int32))[1]

        xs = jax.jit(run)(state)
        return np.asarray(jnp.concatenate([x0[:, None], xs.T], axis=1))


def frozen_table(config: SweepConfig, hp: Mapping[str, float], curvatures, responses=None):
    """Per curvature, as ``ntk_loop.mode_table``: the pole modulus and regime of the loop frozen
    late (:func:`frozen_loops`) and, given the responses, the settling step."""
    loops = frozen_loops(config, hp)
    mu = np.asarray(curvatures, np.float64)
    A = loops.A0[0, 0][None] + mu[:, None, None] * loops.D[0, 0][None]
    out = {"pole_modulus": np.asarray(linearize.spectral_radius(A)), "regime": regimes_of(A)}
    if responses is not None:
        out["settling"] = ntk_loop.settling_steps(responses)
    return out

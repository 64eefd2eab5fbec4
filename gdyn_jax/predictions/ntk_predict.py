r"""``predict_training``: a sweep task's training curve predicted from the NTK loop, and checked.

The task is a :class:`~gdyn_jax.sweep.SweepConfig` (dataset, model, loss, optimizer and its
hyperparameters), assembled by :func:`gdyn_jax.sweep.assemble` on the first ``examples``
training examples, so that the prediction starts from the initialisation a sweep member of the
same seed trains from, and :func:`measured_run` trains it with the sweep's own step
(``gdyn_jax.sweep.train.train_step``: the same initialisation and batches). The prediction
(:mod:`gdyn_jax.predictions.ntk_loop`): the kernel's eigenmodes, each mode's response through
the rule's closed loop, the train loss and outputs at every step, the test outputs through the
cross kernel, and the continuous-time baseline beside it. An adaptive rule (Adam) is predicted
with its preconditioner frozen at initialisation (:mod:`gdyn_jax.predictions.ntk_adam`: the
kernel :math:`J P^{-1} J^\top`, the loop with ``nu`` held): an approximation, never exact.

Errors are relative: :math:`|\hat L_k - L_k| / L_k` over the steps (the loss), and per fast mode
:math:`\max_{k<100} |\hat\rho_i(k) - \rho_i(k)| / |\rho_i(0)|` (a mode's projection).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.errors import UsageError
from gdyn_jax.machine import available_memory
from gdyn_jax.measurements.ntk import empirical_ntk, ntk_bytes, preconditioned_ntk
from gdyn_jax.predictions import ntk_adam, ntk_loop
from gdyn_jax.sweep import SweepConfig, assemble
from gdyn_jax.sweep import train as train_lib
from gdyn_jax.sweep.config import rule_of

__all__ = [
    "Measured",
    "NTKPrediction",
    "curve_error",
    "fast_modes",
    "measured_projections",
    "measured_run",
    "mode_errors",
    "predict_program",
    "predict_training",
    "predict_with",
    "prepare",
    "spread_modes",
]

MOMENTUM_RULES = ("momentum", "nesterov")  # their continuous baseline is the momentum ODE
FAST_STEP = 0.5  # a mode is fast when learning_rate * curvature >= this


@dataclasses.dataclass(frozen=True, eq=False)
class NTKPrediction:
    """A predicted training run (module docstring).

    Attributes:
      config, hparams: the task and the optimizer's hyperparameters (fixed ones included).
      steps: optimizer steps; curves have ``steps + 1`` points (step 0 is the initialisation).
      modes: the :class:`~gdyn_jax.predictions.ntk_loop.NTKModes` at initialisation.
      responses, continuous: per mode :math:`\\rho_i(k)/\\rho_i(0)`, (M, steps+1): the rule's
        discrete loop, and the continuous-time baseline.
      train_loss, continuous_train_loss: (steps+1,).
      continuous_kind: ``'momentum ODE'`` or ``'gradient flow'``; ``effective_step``: its step.
      seconds: wall time of the prediction (kernel, eigenmodes, responses, loss).
      variables, module, x_train: the network at initialisation and its training inputs (for
        :meth:`test_outputs`).
    """

    config: SweepConfig
    hparams: dict[str, float]
    steps: int
    modes: ntk_loop.NTKModes
    responses: np.ndarray
    continuous: np.ndarray
    train_loss: np.ndarray
    continuous_train_loss: np.ndarray
    continuous_kind: str
    effective_step: float
    seconds: float
    variables: Any = None
    module: Any = None
    x_train: Any = None

    @property
    def exact(self) -> bool:
        """Whether the loss is quadratic in the outputs (else a Gauss-Newton approximation) and
        the rule is not adaptive (a frozen preconditioner is an approximation of a real run)."""
        return self.modes.exact and not self.adaptive

    @property
    def adaptive(self) -> bool:
        """Whether the rule is adaptive, its preconditioner frozen (``ntk_adam``)."""
        return self.modes.scale is not None

    def projections(self, continuous: bool = False) -> np.ndarray:
        r"""Predicted :math:`\rho_i(k)`, (M, steps+1)."""
        r = self.continuous if continuous else self.responses
        return self.modes.projections[:, None] * r

    def train_outputs(self, continuous: bool = False) -> np.ndarray:
        """Predicted outputs on the training examples, (steps+1, N, C)."""
        r = self.continuous if continuous else self.responses
        f0 = self.modes.outputs
        return f0[None] + self.modes.displacement(r).reshape((-1,) + f0.shape)

    def test_outputs(self, x, continuous: bool = False) -> np.ndarray:
        """Predicted outputs on inputs ``x`` through the cross kernel, (steps+1, len(x), C)."""
        if self.adaptive:
            scale = self.modes.scale
            cross = preconditioned_ntk(self.module, self.variables, x, self.x_train, scale=scale)
        else:
            cross = empirical_ntk(self.module, self.variables, x, self.x_train)
        f0 = np.asarray(self.module.apply(self.variables, x), np.float64)
        r = self.continuous if continuous else self.responses
        return f0[None] + self.modes.displacement(r, cross).reshape((-1,) + f0.shape)

    def table(self, indices) -> dict[str, np.ndarray]:
        """Per mode of ``indices``: curvature, pole modulus, regime, settling step."""
        idx = np.asarray(indices, int)
        if self.adaptive:
            curvatures, responses = self.modes.curvatures[idx], self.responses[idx]
            out = ntk_adam.frozen_table(self.config, self.hparams, curvatures, responses)
            return {"curvature": curvatures, **out}
        out = ntk_loop.mode_table(
            rule_of(self.config).factory,
            self.hparams,
            self.modes.curvatures[idx],
            self.responses[idx],
        )
        return {"curvature": self.modes.curvatures[idx], **out}


def _hparams(config: SweepConfig, hparams: Mapping[str, float] | None) -> dict[str, float]:
    rule = rule_of(config)
    hp = {**config.fixed_hparams(), **{k: float(v) for k, v in (hparams or {}).items()}}
    rule.check_names(hp)
    missing = rule.missing(hp)
    if missing:
        raise UsageError(f"{missing[0]}: the optimizer {rule.label} needs a value (--hp)")
    return hp


def _check_memory(n: int, c: int, widths=()) -> None:
    need, have = ntk_bytes(n, c, widths), available_memory()
    if have is not None and need > 0.8 * have:
        raise UsageError(
            f"examples: {n} examples x {c} outputs need a {n * c} x {n * c} kernel, about "
            f"{need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB available"
        )


def prepare(config: SweepConfig, hparams=None, *, steps: int, seed: int = 0, examples: int = 256):
    """(program, hparams, initial TrainState) of the task on the first ``examples``; the
    kernel's memory is checked before anything is built."""
    config = dataclasses.replace(
        config, train_subset=int(examples), steps=int(steps), eval_every=int(steps)
    ).validate()
    hp = _hparams(config, hparams)
    if isinstance(config.batch_size, int) and config.batch_size >= examples:
        config = dataclasses.replace(config, batch_size=None)
    if ntk_adam.check_rule(config, hp) and config.batch_size is not None:
        raise UsageError(
            "batch_size: the frozen-preconditioner prediction of an adaptive rule is for the "
            "full batch; drop --batch-size"
        )
    program = assemble(config)
    task, data = program.task, program.data
    state = program.init(data, train_lib.as_hparams(hp), jax.random.key(int(seed)))
    out = jax.eval_shape(
        lambda: train_lib.apply(task, state.params, state.model_state, data.x_train[:1])
    )
    _check_memory(int(examples), int(np.prod(out.shape[1:])))
    return program, hp, state


def predict_training(
    config: SweepConfig,
    hparams: Mapping[str, float] | None = None,
    *,
    steps: int,
    seed: int = 0,
    examples: int = 256,
    exact: bool = False,
    precondition_warmup: int = ntk_adam.WARMUP,
) -> NTKPrediction:
    """The NTK-loop prediction of ``config`` trained ``steps`` steps from seed ``seed`` on the
    first ``examples`` training examples (module docstring); ``exact``: refuse a loss that is
    not quadratic in the outputs. Bad input is a one-line ``UsageError`` before the kernel.
    An adaptive rule (Adam) is predicted with its preconditioner frozen after
    ``precondition_warmup`` updates of its statistics (``ntk_adam``): an approximation."""
    program, hp, state = prepare(config, hparams, steps=steps, seed=seed, examples=examples)
    return predict_program(program, hp, state, int(steps), exact, precondition_warmup)


def predict_program(
    program,
    hp: dict[str, float],
    state,
    steps: int,
    exact: bool = False,
    precondition_warmup: int = ntk_adam.WARMUP,
):
    """:func:`predict_training` on the program and initial state :func:`prepare` returns."""
    task, data = program.task, program.data
    variables = {"params": state.params, **state.model_state}
    start = time.perf_counter()
    scale, warmup = None, 0
    if ntk_adam.is_adaptive(rule_of(program.config).factory, hp):
        if exact:
            raise UsageError(
                "exact: an adaptive rule's preconditioner moves in a real run, so its prediction "
                "with the preconditioner frozen is an approximation; drop --exact"
            )
        warmup = precondition_warmup
        scale = ntk_adam.warm_preconditioner(program, hp, state, warmup)
    modes = ntk_loop.ntk_modes(
        task.model,
        variables,
        data.x_train,
        data.y_train,
        task.loss,
        exact=exact,
        scale=scale,
        warmup=warmup,
    )
    return predict_with(program, hp, modes, steps, variables, time.perf_counter() - start)


def predict_with(
    program, hp: Mapping[str, float], modes, steps: int, variables=None, seconds: float = 0.0
) -> NTKPrediction:
    """The prediction of ``program``'s rule at ``hp`` from eigenmodes already computed (one
    kernel serves every rule and step size on the same initialisation); ``seconds``: the time
    the modes took, added to this prediction's."""
    rule, hp = rule_of(program.config), {k: _number(v) for k, v in hp.items()}
    start = time.perf_counter()
    if modes.scale is not None:
        responses = ntk_adam.frozen_responses(rule.factory, hp, modes.curvatures, steps)
    else:
        ntk_loop.check_affine(rule.factory, hp, float(modes.curvatures[0]))
        schedule = program.task.schedule  # the sweep's unit-peak multiplier, or None
        responses = ntk_loop.mode_responses(rule.factory, hp, modes.curvatures, steps, schedule)
    train_loss = modes.loss(responses)
    seconds += time.perf_counter() - start
    kind, step, cont = _continuous(program, hp, modes, steps)
    return NTKPrediction(
        program.config,
        hp,
        steps,
        modes,
        responses,
        cont,
        train_loss,
        modes.loss(cont),
        kind,
        step,
        seconds,
        variables,
        program.task.model,
        program.data.x_train,
    )


def _continuous(program, hp: dict, modes, steps: int) -> tuple[str, float, np.ndarray]:
    """The continuous-time baseline: (its kind, its step, the responses (M, steps+1))."""
    rule, name, schedule = rule_of(program.config), program.config.optimizer, program.task.schedule
    factors = None if schedule is None else np.asarray(schedule(np.arange(steps)), np.float64)
    if modes.scale is not None:  # gradient flow of the preconditioned loss at the loop's step
        kind = "preconditioned gradient flow"
        step = float(ntk_adam.frozen_loops(program.config, hp).effective_step.reshape(-1)[0])
        beta = None
    elif isinstance(name, str) and name in MOMENTUM_RULES:
        kind, step, beta = "momentum ODE", hp["learning_rate"], hp.get("beta", 0.9)
    else:
        kind, step = "gradient flow", ntk_loop.effective_step(rule.factory, hp)
        beta = None
    cont = ntk_loop.continuous_responses(modes.curvatures, steps, step, beta, factors)
    return kind, step, cont


class Measured(NamedTuple):
    """A training run measured: ``loss`` (steps+1,), ``outputs`` (steps+1, N, C) or None,
    ``seconds`` it took (compilation excluded)."""

    loss: np.ndarray
    outputs: np.ndarray | None
    seconds: float


def _number(value) -> int | float:
    """An integer hyperparameter (a period) stays an int, any other number becomes a float."""
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


def measured_run(
    program,
    hparams: Mapping[str, float],
    seed,
    steps: int,
    outputs: bool = True,
    order_seeds=None,
) -> Measured:
    """The real network trained ``steps`` steps with the sweep's own step from
    ``jax.random.key(seed)``: a ``Measured`` (train loss (steps+1,), train outputs
    (steps+1, N, C) or None, float64 on the host; seconds, compilation excluded). A list of
    seeds, or hyperparameters given as 1-D arrays, are runs side by side (vmapped; one leading
    axis). ``order_seeds``: runs from the one initialisation of ``seed`` whose mini-batch orders
    come from these seeds (the expectation over batches at a fixed initialisation)."""
    hp = train_lib.as_hparams(hparams)
    init_key = None if order_seeds is None else jax.random.key(int(seed))
    seed = seed if order_seeds is None else list(order_seeds)
    run = _runner(program, int(steps), outputs, init_key)
    seeds = np.atleast_1d(np.asarray(seed, int))
    keys = jnp.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
    many = np.ndim(seed) > 0 or any(np.ndim(v) > 0 for v in hparams.values())
    axes = {k: (0 if np.ndim(v) else None) for k, v in hp.items()}
    keys = keys if np.ndim(seed) else keys[0]

    def one(h, k):
        return run(k, h)

    if many:
        one = jax.vmap(one, in_axes=(axes, 0 if np.ndim(seed) else None))
    compiled = jax.jit(one).lower(hp, keys).compile()
    start = time.perf_counter()
    loss, outs = jax.block_until_ready(compiled(hp, keys))
    seconds = time.perf_counter() - start
    outs = None if outs is None else np.asarray(outs, np.float64)
    return Measured(np.asarray(loss, np.float64), outs, seconds)


def _runner(program, steps: int, outputs: bool, init_key):
    """``run(key_data, hp) -> (losses, outputs)``: one training run; with ``init_key`` the
    initialisation is that key's and ``key_data`` sets the batch order only."""
    task, data = program.task, program.data

    def record(state):
        out = train_lib.apply(task, state.params, state.model_state, data.x_train)
        return jnp.mean(task.loss(out, data.y_train)), (out if outputs else None)

    def run(key_data, hp):
        if init_key is None:
            state = program.init(data, hp, jax.random.wrap_key_data(key_data))
        else:
            state = program.init(data, hp, init_key)._replace(data_key=key_data)

        def body(state, t):
            state = train_lib.train_step(task, data, hp, state, t)
            return state, record(state)

        _, (losses, outs) = jax.lax.scan(body, state, jnp.arange(steps))
        loss0, out0 = record(state)
        losses = jnp.concatenate([loss0[None], losses])
        return losses, (None if out0 is None else jnp.concatenate([out0[None], outs]))

    return run


def curve_error(predicted, measured, upto: int | None = None) -> dict[str, float]:
    """{median, max} of ``|predicted - measured| / measured`` over steps ``0 .. upto-1``."""
    p, m = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    p, m = (p, m) if upto is None else (p[:upto], m[:upto])
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(p - m) / np.abs(m)
    if not np.all(np.isfinite(err)):
        return {"median": float("nan"), "max": float("nan")}
    return {"median": float(np.median(err)), "max": float(np.max(err))}


def fast_modes(prediction: NTKPrediction, threshold: float = FAST_STEP) -> np.ndarray:
    """The top mode and every mode whose step ``learning_rate * curvature >= threshold``."""
    mu = prediction.modes.curvatures
    fast = np.nonzero(prediction.hparams.get("learning_rate", 0.0) * mu >= threshold)[0]
    return np.union1d([0], fast).astype(int)


def spread_modes(
    curvatures, eligible=None, count: int = 20, cluster: float = 0.02, projections=None
) -> np.ndarray:
    """``count`` modes log-spaced in curvature over the ``eligible`` ones (default: all with
    curvature > 0), at most one per cluster of curvatures within ``cluster`` of each other.

    The cluster of a target is the free modes within ``cluster`` of the one nearest it (free:
    not within ``cluster`` of a mode already chosen); its representative is the member with the
    largest initial projection :math:`|\\rho_i(0)|` when ``projections`` are given, else the
    nearest. A mode's settling step is read against 2 % of its own initial projection, so a
    member carrying a thousandth of the residual would have its measured step set by the
    other modes' leakage into it (the kernel's drift), not by its loop; the choice uses the
    initialisation only, never the run.
    """
    mu = np.asarray(curvatures, np.float64)
    ok = (mu > 0) if eligible is None else (np.asarray(eligible, bool) & (mu > 0))
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return idx
    size = None if projections is None else np.abs(np.asarray(projections, np.float64))
    chosen: list[int] = []
    for target in np.geomspace(mu[idx].min(), mu[idx].max(), int(count)):
        taken = np.abs(mu[idx, None] / mu[None, chosen] - 1.0) <= cluster
        free = idx[~taken.any(axis=1)]
        if free.size == 0:
            break
        near = free[np.argmin(np.abs(np.log(mu[free] / target)))]
        members = free[np.abs(mu[free] / mu[near] - 1.0) <= cluster]
        chosen.append(int(near if size is None else members[np.argmax(size[members])]))
    return np.asarray(sorted(set(chosen)), int)


def measured_projections(prediction: NTKPrediction, outputs: np.ndarray) -> np.ndarray:
    r"""The measured :math:`\rho_i(k) = w_i^\top(H^{1/2}(f_k - f_0) + a)` for every mode,
    (M, K), from measured train outputs (K, N, C)."""
    modes = prediction.modes
    delta = np.asarray(outputs, np.float64) - modes.outputs[None]
    weighted = np.einsum("nij,knj->kni", modes.sqrt_h, delta).reshape(delta.shape[0], -1)
    return (weighted @ modes.vectors).T + modes.projections[:, None]


def mode_errors(predicted, measured, initial, window: int = 100) -> np.ndarray:
    """Per mode, ``max_{k < window} |predicted - measured| / |initial|``."""
    p, m = np.asarray(predicted)[:, :window], np.asarray(measured)[:, :window]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.max(np.abs(p - m), axis=1) / np.abs(np.asarray(initial))

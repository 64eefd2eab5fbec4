r"""The NTK loop against real training: one network, every rule and step size (``ntk_modes``).

:func:`network_rows` builds one MLP on the first MNIST-1D examples (square loss, the sweep's
initialisation of seed ``seed``), computes its kernel's eigenmodes once, and for each rule and
each fraction of the rule's stability limit at the top curvature trains the real network (the
sweep's own step, all fractions side by side) and scores the prediction: the loss curve's
relative error before the measured loss first falls below 10 % of its initial value and over all
steps, the same for the continuous-time baseline, the worst error over the first 100 steps of
each fast mode's projection (top mode and every mode with :math:`\eta\mu \ge 0.5`), and the
Spearman correlation of predicted and measured settling steps over 20 modes log-spaced in
curvature (one per 2 % cluster).

Lookahead is the registry's ``lookahead_sgd`` (Zhang et al., NeurIPS 2019, around gradient
descent, on plain parameters); its loop is periodic, and ``linearize_periodic`` lifts it.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import spearmanr

from gdyn_jax import linearize
from gdyn_jax.predictions import ntk_loop
from gdyn_jax.predictions import ntk_predict as npred
from gdyn_jax.sweep import SweepConfig, assemble
from gdyn_jax.sweep import train as train_lib
from gdyn_jax.sweep.config import rule_of

#: name -> (optimizer, fixed hyperparameters)
RULES = {
    "gd": ("sgd", {}),
    "heavy ball": ("momentum", {"beta": 0.9}),
    "nesterov": ("nesterov", {"beta": 0.9}),
    "lookahead": ("lookahead_sgd", {"sync_period": 5, "slow_step_size": 0.5}),
}


def learning_rate_limit(factory, fixed: dict, curvature: float) -> float:
    """The learning rate whose loop is at its stability limit at ``curvature``: the limit
    curvature at learning rate 1, over ``curvature`` (these rules' loops depend on the product),
    checked against ``max_stable_curvature`` at the result."""
    at_one = float(linearize.max_stable_curvature(factory(learning_rate=1.0, **fixed)))
    lr = at_one / float(curvature)
    check = float(linearize.max_stable_curvature(factory(learning_rate=lr, **fixed)))
    if abs(check / curvature - 1.0) > 1e-3:
        raise ValueError(f"learning rate limit: {check} at lr {lr}, expected {curvature}")
    return lr


def first_below(loss: np.ndarray, fraction: float = 0.1) -> int:
    """The first step at which ``loss`` is below ``fraction`` of its initial value (else all)."""
    below = np.nonzero(loss < fraction * loss[0])[0]
    return int(below[0]) if below.size else loss.size


def _spearman(pred, meas, idx) -> float:
    """Spearman of the predicted and measured settling steps of modes ``idx`` (a mode that has
    not settled by the last step ranks after every step)."""
    predicted = ntk_loop.settling_steps(pred.responses[idx])
    measured = ntk_loop.settling_steps(meas[idx] / pred.modes.projections[idx, None])
    measured = np.where(measured < 0, pred.steps + 1, measured)
    return float(spearmanr(predicted, measured).statistic) if np.ptp(predicted) > 0 else np.nan


def distinct_envelopes(pred, idx, rtol: float = 1e-6) -> np.ndarray:
    """Of modes ``idx``, one per pole modulus (the one with the largest initial projection).

    Modes whose loops share a pole modulus share their envelope: heavy ball's underdamped
    modes all decay as :math:`\\sqrt\\beta^k`, so their 2 % settling steps differ only by the
    phase at which the last peak crosses the band, a tie the measured run breaks by its drift.
    """
    idx = np.asarray(idx, int)
    modulus = pred.table(idx)["pole_modulus"]
    order = np.argsort(-np.abs(pred.modes.projections[idx]))
    kept: list[int] = []
    for j in order:
        if all(abs(modulus[j] / modulus[k] - 1.0) > rtol for k in kept):
            kept.append(int(j))
    return idx[sorted(kept)]


def _scores(pred, measured_loss, outputs, settle_modes) -> dict:
    """The row's scores; ``settle_modes``: the modes for the settling ranking, (one per cluster
    with the largest initial projection, the nearest to each target)."""
    upto = first_below(measured_loss)
    meas = npred.measured_projections(pred, outputs)
    fast = npred.fast_modes(pred)
    p0 = pred.modes.projections[fast]
    disc = npred.mode_errors(pred.projections()[fast], meas[fast], p0)
    cont = npred.mode_errors(pred.projections(True)[fast], meas[fast], p0)
    rho, nearest = (_spearman(pred, meas, idx) for idx in settle_modes)
    distinct = distinct_envelopes(pred, settle_modes[0])
    rho_distinct = _spearman(pred, meas, distinct) if distinct.size >= 3 else np.nan
    return {
        "upto": upto,
        "error": npred.curve_error(pred.train_loss, measured_loss, upto)["median"],
        "error_all": npred.curve_error(pred.train_loss, measured_loss)["median"],
        "continuous_error": npred.curve_error(pred.continuous_train_loss, measured_loss, upto)[
            "median"
        ],
        "continuous_error_all": npred.curve_error(pred.continuous_train_loss, measured_loss)[
            "median"
        ],
        "fast_modes": int(fast.size),
        "mode_error": float(np.median(disc)),
        "continuous_mode_error": float(np.median(cont)),
        "settling_spearman": rho,
        "settling_spearman_nearest": nearest,
        "settling_spearman_distinct": rho_distinct,
        "distinct_envelopes": int(distinct.size),
        "top_regime": str(pred.table([0])["regime"][0]),
    }


def network_rows(
    width: int,
    depth: int,
    activation: str,
    fractions,
    rules=tuple(RULES),
    *,
    steps: int = 500,
    examples: int = 256,
    seed: int = 0,
    keep_curves: bool = False,
    loss: str = "mse",
    drift_steps: int = 0,
) -> list[dict]:
    """One row per (rule, fraction) on one network (module docstring); ``loss`` other than
    ``'mse'``: its Gauss-Newton model at initialisation, an approximation; ``drift_steps``: also
    the kernel's drift over that many steps of gradient descent (:func:`kernel_drift`)."""
    base = SweepConfig(
        dataset="mnist1d",
        model="fc",
        model_kwargs={"widths": (int(width),) * int(depth), "activation": activation},
        optimizer="sgd",
        loss=loss,
        batch_size=None,
    )
    program, _, state = npred.prepare(
        base, {"learning_rate": 0.01}, steps=steps, examples=examples, seed=seed
    )
    variables = {"params": state.params, **state.model_state}
    task, data = program.task, program.data
    ntk_loop.empirical_ntk(task.model, variables, data.x_train)  # compiled, not timed
    start = time.perf_counter()
    modes = ntk_loop.ntk_modes(task.model, variables, data.x_train, data.y_train, task.loss)
    kernel_seconds = time.perf_counter() - start
    rows = []
    for name in rules:
        scored = _rule_rows(program, modes, variables, name, fractions, seed, steps, kernel_seconds)
        for row in scored:
            if not keep_curves:
                row = {k: v for k, v in row.items() if k not in ("pred", "measured", "outputs")}
            rows.append(dict(width=width, depth=depth, activation=activation, loss=loss) | row)
    if drift_steps:
        drift = kernel_drift(program, state, modes, max(fractions), drift_steps)
        for row in rows:
            row.update(drift)
    return rows


def _rule_rows(program, modes, variables, name, fractions, seed, steps, kernel_seconds) -> list:
    """The rows of rule ``name`` at each fraction of its limit: the real runs side by side."""
    factory, fixed = RULES[name]
    config = dataclasses.replace(program.config, optimizer=factory, hparams=fixed)
    prog = assemble(config)
    limit = learning_rate_limit(rule_of(config).factory, fixed, modes.curvatures[0])
    lrs = np.asarray(fractions, np.float64) * limit
    run = npred.measured_run(prog, {"learning_rate": lrs.astype(np.float32)}, seed, steps)
    rows = []
    for i, (frac, lr) in enumerate(zip(fractions, lrs, strict=True)):
        hp = {"learning_rate": float(np.float32(lr)), **fixed}
        pred = npred.predict_with(prog, hp, modes, steps, variables, kernel_seconds)
        settled = pred.responses[:, -1] ** 2 <= ntk_loop.SETTLING**2
        settle = (
            npred.spread_modes(modes.curvatures, settled, projections=modes.projections),
            npred.spread_modes(modes.curvatures, settled),
        )
        row = {"rule": name, "fraction": frac}
        row.update(_scores(pred, run.loss[i], run.outputs[i], settle))
        row.update(predict_seconds=pred.seconds, train_seconds=run.seconds / len(lrs))
        row.update(pred=pred, measured=run.loss[i], outputs=run.outputs[i])
        rows.append(row)
    return rows


def kernel_drift(program, state, modes, fraction: float, steps: int) -> dict[str, float]:
    r"""How far the network leaves its linearisation: the kernel after ``steps`` steps of
    gradient descent at ``fraction`` of its limit, against the kernel at initialisation:
    ``kernel_drift`` :math:`\|\Theta_k - \Theta_0\|_F / \|\Theta_0\|_F` and ``top_drift``
    :math:`\lambda_{\max}(\Theta_k) / \lambda_{\max}(\Theta_0)` (past :math:`1/f` the top
    mode is past the limit: the edge of stability)."""
    task, data = program.task, program.data
    lr = fraction * learning_rate_limit(rule_of(program.config).factory, {}, modes.curvatures[0])
    hp = train_lib.as_hparams({"learning_rate": lr})

    @jax.jit
    def run(state):
        def body(s, t):
            return train_lib.train_step(task, data, hp, s, t), None

        return jax.lax.scan(body, state, jnp.arange(int(steps)))[0]

    final = run(state)
    kernel = ntk_loop.empirical_ntk(
        task.model, {"params": final.params, **final.model_state}, data.x_train
    )
    k0 = np.asarray(modes.kernel, np.float64)
    k = np.asarray(kernel, np.float64)
    top0, top = (float(np.linalg.eigvalsh(m)[-1]) for m in (k0, k))
    return {
        "drift_steps": int(steps),
        "kernel_drift": float(np.linalg.norm(k - k0) / np.linalg.norm(k0)),
        "top_drift": top / top0,
    }

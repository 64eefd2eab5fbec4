"""The edge of stability timed by gradient flow: the flow's sharpness against scipy's ODE
solution, the step it gives against hand-derived cases, and against training on a network the
method was not developed on (``cohen2021``'s network is the one it was checked on first)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gdyn_jax import cli
from gdyn_jax.measurements.flow import sharpness_along_flow
from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions import preflight
from gdyn_jax.predictions.preflight_loops import rule_loops
from gdyn_jax.sweep import SweepConfig, run_sweep


def _uv_loss(p):
    return 0.5 * (p["u"] * p["v"] - 1.0) ** 2


def _uv_sharpness(u: float, v: float) -> float:
    """The top eigenvalue of L's Hessian [[v^2, 2uv - 1], [2uv - 1, u^2]]."""
    return float(np.linalg.eigvalsh([[v * v, 2 * u * v - 1], [2 * u * v - 1, u * u]])[-1])


def test_flow_sharpness_follows_the_ode():
    """L = (uv - 1)^2 / 2 from (2, 0.1): the sharpness rises from 4.09 towards u^2 + v^2 =
    4.46 at the minimum; at every check it matches the sharpness of scipy's solution of
    (u, v)' = -grad L at the same flow time (at a tenth of the integrator's default step: the
    whole problem is as fast as its top mode, where a step of 1/S drifts towards flatter
    minima, 4.33 here)."""
    params = {"u": jnp.float32(2.0), "v": jnp.float32(0.1)}
    flow = sharpness_along_flow(
        _uv_loss,
        params,
        jax.random.key(0),
        until_sharpness=100.0,
        until_time=3.0,
        max_steps=2000,
        check_every=20,
        fraction=0.1,
    )
    times, sharp = np.asarray(flow.time), np.asarray(flow.sharpness)
    keep = np.isfinite(times)
    assert times[keep][-1] >= 3.0 and int(flow.checks) == keep.sum() - 1

    def rhs(_, z):
        u, v = z
        r = u * v - 1.0
        return [-r * v, -r * u]

    ode = solve_ivp(rhs, (0, times[keep][-1]), [2.0, 0.1], t_eval=times[keep], rtol=1e-9)
    exact = [_uv_sharpness(u, v) for u, v in ode.y.T]
    assert exact[-1] > exact[0] + 0.2  # it sharpens
    np.testing.assert_allclose(sharp[keep], exact, rtol=5e-3)


def _case(sharpening: float):
    """Gradient descent at rate 0.5 (limit 4, effective step 0.5) and a measurement at init
    with curvature 1 and the given sharpening rate."""
    config = SweepConfig(optimizer="sgd", steps=20, eval_every=20)
    limits, loops = rule_loops(config, {"learning_rate": np.array([0.5])})
    m = {
        "curvature": np.ones(1),
        "gn_sharpness": np.ones(1),
        "sharpening": np.array([sharpening]),
        "drift": np.ones(1),
        "d2s": np.zeros(1),
        "turning_rest": np.zeros(1),
        "ritz_values": np.ones((1, 1)),
        "ritz_weights": np.zeros((1, 1)),
    }
    return limits, loops, m


@pytest.mark.parametrize(
    "steps, end, sharpening, phase, step",
    [
        # the edge: within 5 % of the limit 4, 3.8
        (20, 10.0, 0.0, "edge of stability", 5),  # 1 + 1.1 tau meets 3.8 at 2.55 <= 0.5 (5 + 1)
        (5, 10.0, 0.0, "stable", -1),  # the run ends at tau = 2.5, the flow went past it
        (20, 1.0, 0.0, "stable", -1),  # the flow stops short: the rate at init decides
        (20, 1.0, 0.45, "edge of stability", 12),  # 1 + 0.45 tau meets 3.8 at tau = 6.22
    ],
)
def test_the_flow_times_the_edge(steps, end, sharpening, phase, step):
    limits, loops, m = _case(sharpening)
    times = np.linspace(0.0, end, 21)[None]
    out = ph.decide_phases(limits, loops, m, steps=steps, flow=(times, 1.0 + 1.1 * times))
    assert ph.PHASES[out["phase"][0, 0]] == phase
    assert out["step"][0, 0] == step


def test_the_rate_at_init_times_a_constant_rule_over_the_run():
    """Without a flow, the rate at init extrapolated over the run's steps (it was read over
    one step only for rules without a schedule)."""
    limits, loops, m = _case(0.45)
    out = ph.decide_phases(limits, loops, m, steps=20)
    assert ph.PHASES[out["phase"][0, 0]] == "edge of stability"
    assert out["step"][0, 0] == 12


def _config(optimizer="sgd", batch_size=None):
    return SweepConfig(
        dataset="mnist1d",
        model="fc",
        model_kwargs={"widths": (32, 32), "activation": "tanh"},
        loss="mse",
        batch_size=batch_size,
        train_subset=200,
        sharpness_subset=200,
        optimizer=optimizer,
        steps=400,
        eval_every=10,
        track_sharpness=True,
    )


def test_flow_times_gradient_descent_s_edge_against_training(mnist1d_data_dir):
    """A tanh MLP (32, 32) on 200 MNIST-1D examples, square loss, gradient descent at two
    rates: the rate at init calls both runs stable, the flow calls the edge of stability, and
    its step falls within one evaluation of the first at which the run's sharpness comes
    within 5 % of the limit (measured here: the same evaluation, for all four runs); a
    reused flow gives the same calls."""
    config, grid = _config(), {"learning_rate": [0.5, 0.3]}
    rate = preflight(config, grid, 2, probe_steps=0, examples=None)
    timed = preflight(config, grid, 2, probe_steps=0, examples=None, flow_steps=4000)
    assert (rate.phase == "stable").all() and (timed.phase == "edge of stability").all()
    ds = run_sweep(config, grid, seeds=2, progress=False)
    sharp = ds["sharpness"].transpose("learning_rate", "seed", "step").values
    reached = sharp >= (1 - ph.EOS_TOLERANCE) * timed.limit[..., None]
    measured = ds["step"].values[np.argmax(reached, axis=-1)]
    assert reached.any(axis=-1).all()
    every = config.eval_every  # the runs' step is known to an evaluation
    at = every * -(-timed.step // every)  # the first evaluation at or after the predicted step
    assert (np.abs(at - measured) <= every).all(), (timed.step, measured)
    again = preflight(config, grid, 2, probe_steps=0, examples=None, flow=timed.flow)
    assert (again.phase == timed.phase).all() and (again.step == timed.step).all()


def test_flow_refused_where_it_cannot_time_the_edge(mnist1d_data_dir):
    grid = {"learning_rate": [0.1]}
    with pytest.raises(ValueError, match="^flow_steps: the flow times a full-batch run"):
        preflight(_config(batch_size=50), grid, 1, flow_steps=10)
    with pytest.raises(ValueError, match="^flow_steps: not for an adaptive rule"):
        preflight(_config("adam"), grid, 1, flow_steps=10)
    with pytest.raises(ValueError, match=r"^flow: expected \(times, sharpness\)"):
        preflight(_config(), grid, 1, probe_steps=0, flow=(np.zeros(3), np.zeros(3)))
    with pytest.raises(ValueError, match="^flow_steps: expected a non-negative integer"):
        preflight(_config(), grid, 1, flow_steps=-1)


def test_cli_flow_steps_bad_input_exits_2(capsys):
    assert cli.main(["preflight", "--flow-steps", "-2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gdyn preflight: error: flow_steps") and len(err.splitlines()) == 1

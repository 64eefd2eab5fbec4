"""The probed divergence edge (``predictions.probe``): Lewkowycz et al.'s eta lambda0 = 4 on
their two-layer linear network, and per seed the same call as the sweep's own training
just below and just above it (SGD, and Adam, whose first step spikes the loss
between the sweep's evaluations)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_preflight import _uv

from gdyn_jax.predictions import measured_phases, preflight
from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.probe import CHECK_SPAN, TOLERANCE, _confirm, _scout, probe_edges
from gdyn_jax.sweep import SweepConfig, assemble, run_sweep


def test_probed_edge_is_four_over_lambda_on_the_uv_model():
    """Lewkowycz et al. 2020: gradient descent on the wide uv model diverges beyond
    eta lambda0 = 4 (the training test beside it checks 3.6 and 4.6); probed over the whole
    run, the edge lands there."""
    config, m, lrs = _uv()
    pre = preflight(config, {"learning_rate": lrs}, 1, measurement=m, probe_steps=200)
    edge = float(pre.edge[0, 0]) * m.sharpness[0]
    assert abs(edge / 4.0 - 1) < 0.05, edge
    assert pre.phase[:, 0].tolist() == ["stable", "catapult", "catapult", "divergent", "divergent"]
    assert pre.seconds["probe"] > 0 and pre.probe.runs == 11  # 7 scouting, 3 checks, 1 confirming


def test_a_curvature_that_is_not_positive_starts_the_probe_at_the_sharpness():
    """Adam's preconditioned batch sharpness came out negative for 2 of 8 seeds of the MNIST-1D
    CNN (its gradient along negative curvature): the probe then started at a negative rate.
    Now it starts where the limit meets the sharpness: on the uv model (full batch, where
    the two are the same) a negative curvature gives the same edge as the measured one."""
    config, m, lrs = _uv()
    bent = dataclasses.replace(m, values={**m.values, "curvature": -m.values["curvature"]})
    kw = {"probe_steps": 200}
    pre = preflight(config, {"learning_rate": lrs}, 1, measurement=m, **kw)
    got = preflight(config, {"learning_rate": lrs}, 1, measurement=bent, **kw)
    np.testing.assert_allclose(got.edge, pre.edge, rtol=1e-12)


def test_a_probe_is_reused_on_another_rate_grid_and_refused_on_other_seeds():
    """The edge of a learning-rate grid does not depend on its rates: the probe of one grid,
    passed to the pre-flight of a wider one, gives the same calls as probing it afresh; a
    probe of other seeds or steps is refused in one line."""
    config, m, lrs = _uv()
    first = preflight(config, {"learning_rate": lrs}, 1, measurement=m, probe_steps=200)
    wider = [lr * f for lr in lrs for f in (0.9, 1.1)]
    kw = {"measurement": m, "probe_steps": 200}
    again = preflight(config, {"learning_rate": wider}, 1, **kw)
    reused = preflight(config, {"learning_rate": wider}, 1, probe=first.probe, **kw)
    assert reused.probe is first.probe
    assert reused.seconds["probe"] == first.seconds["probe"] and reused.seconds["rule"] >= 0
    np.testing.assert_allclose(reused.edge, again.edge, rtol=1e-12)  # start: rounding apart
    assert reused.phase.tolist() == again.phase.tolist()
    with pytest.raises(ValueError, match="probe: expected a probe of the same"):
        preflight(
            config, {"learning_rate": wider}, 1, probe=first.probe, measurement=m, probe_steps=100
        )


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, hparams", [("sgd", {}), ("adam", {})])
def test_probe_calls_what_the_sweep_measures_per_seed(optimizer, hparams):
    """At 0.85 and 1.15 times each seed's probed edge (bisected to within 5 %), the sweep's
    own run of that seed survives and diverges (its curves read by ``measured_phases``)."""
    config = SweepConfig(
        dataset="mnist1d",
        model="mlp",
        loss="mse",
        optimizer=optimizer,
        hparams=hparams,
        batch_size=None,
        train_subset=128,
        steps=12,
        eval_every=3,
    )
    pre = preflight(config, {"learning_rate": [1e-3]}, 2, examples=None, iters=8, probe_steps=12)
    edge = pre.edge[0]
    assert np.isfinite(edge).all() and (pre.probe.high / pre.probe.low < 1.1).all()
    lrs = [float(f * e) for e in edge for f in (0.85, 1.15)]
    ds = run_sweep(config, {"learning_rate": lrs}, 2, progress=False)
    phase = np.asarray(ph.MEASURED_PHASES)[
        measured_phases(ds["train_loss"].values, ds["diverged_at"].values)
    ]
    for seed in range(2):
        called = phase[2 * seed : 2 * seed + 2, seed] == "divergent"
        assert called.tolist() == [False, True], (optimizer, seed, edge, phase)


def test_probe_options_are_checked():
    config = SweepConfig(dataset="mnist1d", train_subset=64, steps=2, eval_every=1)
    with pytest.raises(ValueError, match="probe_steps: expected a non-negative integer"):
        preflight(config, {"learning_rate": [0.1]}, probe_steps=-1)


def test_probe_moves_down_from_a_start_that_diverges():
    """The rate where the limit meets the curvature at init is only where the probe starts
    (with cross-entropy the batch sharpness there is a third of the sharpness, and momentum
    diverges far below it): started 20 times above the edge, the probe finds the same edge as
    from below, and the sweep's own training of each seed survives just below it and diverges
    just above it."""
    config = SweepConfig(
        dataset="mnist1d",
        model="mlp",
        loss="mse",
        optimizer="sgd",
        batch_size=None,
        train_subset=128,
        steps=12,
        eval_every=3,
    )
    program = assemble(config, {"learning_rate": [1e-3]}, 2)
    pre = preflight(config, {"learning_rate": [1e-3]}, 2, examples=None, iters=8)
    from_below = pre.edge[0]
    high = probe_edges(program, 2, [{}], 20 * from_below[None], rounds=9)
    assert np.isfinite(high.edge).all() and (high.low > 0).all()
    assert (high.high / high.low < 1.1).all()
    np.testing.assert_allclose(high.edge[0], from_below, rtol=0.1)
    lrs = [float(f * e) for e in high.edge[0] for f in (0.85, 1.15)]
    ds = run_sweep(config, {"learning_rate": lrs}, 2, progress=False)
    phase = np.asarray(ph.MEASURED_PHASES)[
        measured_phases(ds["train_loss"].values, ds["diverged_at"].values)
    ]
    for seed in range(2):
        called = phase[2 * seed : 2 * seed + 2, seed] == "divergent"
        assert called.tolist() == [False, True], (seed, high.edge, phase)


def test_probe_runs_the_whole_run_by_default():
    """Without ``probe_steps`` the probe's runs last the sweep's steps (a divergence that
    starts late is seen), and the steps are capped at the run's."""
    config = SweepConfig(dataset="mnist1d", train_subset=64, batch_size=None, steps=7, eval_every=1)
    m_pre = preflight(config, {"learning_rate": [0.1]}, 1, examples=None, iters=4, probe_rounds=2)
    assert m_pre.probe.steps == 7
    pre = preflight(
        config,
        {"learning_rate": [0.1]},
        1,
        measurement=m_pre.measurement,
        probe_steps=50,
        probe_rounds=2,
    )
    assert pre.probe.steps == 7


def test_confirming_over_the_whole_run_moves_a_late_divergence_down():
    """A scouted bracket is rerun over the whole run: where the scout's survivor diverges
    later, the bracket moves down to the run's own edge, as narrow as scouted; where it
    survives, the scouted bracket stands (one round); no edge stays no edge."""
    edge = np.array([[1.0, 0.5, 0.9, 3.0]])  # the whole run's edge per seed
    lo = np.array([[0.98, 0.98, 0.98, 0.98]])
    hi = np.array([[1.06, 1.06, 1.06, np.inf]])
    lo, hi, runs = _confirm(lambda lrs: lrs > edge, lo, hi, 4.0, 12)
    assert (lo <= edge).all() and (edge[:, :3] < hi[:, :3]).all() and hi[0, 3] == np.inf
    assert (hi[:, :3] / lo[:, :3] <= 1.06 / 0.98 * (1 + 1e-6)).all()
    lo1, hi1, runs1 = _confirm(lambda lrs: lrs > 1.0, lo[:, :1], hi[:, :1], 4.0, 12)
    assert runs1 == 1 and lo1[0, 0] == lo[0, 0]


def test_scouting_finds_the_lowest_edge_where_divergence_is_not_monotone():
    """On the MNIST-1D CNN with cross-entropy a seed diverges at one rate, survives the next
    and diverges again. Against an oracle that diverges above 3 except on (5, 8) and a
    monotone one (edge 1), started inside the survival window and far below: both brackets
    end on their lowest edge, within ``TOLERANCE``, with no divergence in the checks down to
    ``1 / CHECK_SPAN`` of it; plain bisection would land on 8."""
    lowest = np.array([[3.0, 1.0]])

    def blown(lrs):
        window = (lrs > 5.0) & (lrs < 8.0) & (lowest == 3.0)
        return (lrs > lowest) & ~window

    lo, hi, runs = _scout(blown, np.array([[6.0, 0.3]]), 4.0, 30)
    assert (lo <= lowest).all() and (lowest < hi).all() and (hi <= lo * TOLERANCE).all()
    assert runs < 30 and not blown(lo / CHECK_SPAN).any()


def test_phases_grid_widens_to_the_probed_edge():
    from experiments._phases import WINDOW, covering

    lrs = np.geomspace(0.1, 10.0, 8)
    assert covering(lrs, np.array([[np.inf, np.nan]])) is lrs
    assert covering(lrs, np.array([[1.0, 2.0]])) is lrs
    wide = covering(lrs, np.array([[30.0, 50.0], [0.01, 1.0]]))
    assert len(wide) == 8 and np.isclose(wide[0], 0.01 / WINDOW)
    assert np.isclose(wide[-1], 50.0 * WINDOW)

"""Pre-flight: limits against closed forms and linearize, the catapult's edge against
Lewkowycz et al.'s 4/λ0 and against training, measured phases on known curves, the range
test's stopping rule, and bad input refused as `gdyn sweep` refuses it."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import experiments
from gdyn_jax import cli, linearize
from gdyn_jax.predictions import measure_init, measured_phases, preflight
from gdyn_jax.predictions import phases as ph
from gdyn_jax.predictions.preflight import rule_loops
from gdyn_jax.predictions.probe import ROUNDS
from gdyn_jax.predictions.range_test import _stopping
from gdyn_jax.sweep import Arrays, SweepConfig, assemble, load_results, run_sweep

LRS = np.array([0.01, 0.1, 0.5])


def _limits(optimizer, schedule=None, steps=10, **hp):
    config = SweepConfig(
        optimizer=optimizer, hparams=hp, schedule=schedule, steps=steps, eval_every=steps
    )
    return rule_loops(config, {"learning_rate": LRS}, adaptive=optimizer == "adam")


@pytest.mark.parametrize(
    "optimizer, hp, closed",
    [
        ("sgd", {}, 2 / LRS),
        ("momentum", {"beta": 0.9}, 3.8 / LRS),
        ("nesterov", {"beta": 0.9}, 3.8 / (2.8 * LRS)),
    ],
)
def test_limits_match_the_closed_forms(optimizer, hp, closed):
    limits, loops = _limits(optimizer, **hp)
    assert loops.exact
    np.testing.assert_allclose(limits[:, 0], closed, rtol=1e-9)


def test_effective_steps_and_growth_gain_of_heavy_ball():
    """eta_eff = eta / (1 - beta) (the DC gain), and -(z-1)G(z) = eta z / (z - beta)."""
    _, loops = _limits("momentum", beta=0.9)
    np.testing.assert_allclose(loops.effective_step[:, 0], LRS / 0.1, rtol=1e-6)
    z = np.full((3, 1), 4.0)
    index = (np.arange(3)[:, None], np.zeros((3, 1), int))
    np.testing.assert_allclose(loops.step_at(z, index)[:, 0], LRS * 4 / 3.1, rtol=1e-9)


def test_frozen_adam_limit_matches_linearize():
    limits, loops = _limits("adam")
    for lr, limit in zip(LRS, limits[:, 0], strict=True):
        opt = optax.adam(lr)  # optax's own Adam: an independent implementation of the rule
        state = jnp.zeros(1)
        adam, rest = opt.init(state)
        nu = (1 - 1e-8) ** 2 * (1 - 0.999**10_000)
        frozen = (adam._replace(count=jnp.asarray(10_000), nu=jnp.full(1, nu)), rest)
        ref = linearize.max_stable_curvature(opt, state=frozen, freeze=("nu", "count"))
        np.testing.assert_allclose(limit, ref, rtol=1e-6)
        np.testing.assert_allclose(limit, 3.8 / (0.1 * lr), rtol=1e-6)  # Cohen et al. 2022


def test_schedule_gives_one_limit_per_step():
    limits, _ = _limits("sgd", schedule="cosine", steps=10)
    scale = np.array([optax.cosine_decay_schedule(1.0, 10)(t) for t in range(10)])
    np.testing.assert_allclose(limits, 2 / (LRS[:, None] * scale[None, :]), rtol=1e-5)


def test_a_warm_up_starting_at_rate_zero_has_no_limit_at_its_first_step():
    """At rate 0 the loop is the identity at every curvature: no limit (inf), not 0 (which
    would call every point unstable at step 0); later steps 2 / (lr * optax's factor)."""
    config = SweepConfig(
        optimizer="sgd", schedule="warmup_cosine", warmup_steps=3, steps=10, eval_every=10
    )
    limits, loops = rule_loops(config, {"learning_rate": LRS})
    scale = np.array([optax.warmup_cosine_decay_schedule(0.0, 1.0, 3, 10)(t) for t in range(10)])
    assert loops.exact and scale[0] == 0 and np.isinf(limits[:, 0]).all()
    np.testing.assert_allclose(limits[:, 1:], 2 / (LRS[:, None] * scale[None, 1:]), rtol=1e-5)
    keys = ("curvature", "gn_sharpness", "drift", "d2s", "sharpening", "turning_rest")
    m = dict.fromkeys(keys, np.full(1, 1e-3)) | {"ritz_values": np.full((1, 1), 1e-3)}
    m |= {"ritz_weights": np.ones((1, 1))}
    phase = np.asarray(ph.PHASES)[ph.decide_phases(limits, loops, m)["phase"]]
    assert (phase == "stable").all()  # a curvature far below every step's limit


def test_non_affine_rule_is_unknown_with_linearize_reason():
    def signed(learning_rate=0.1):
        return optax.chain(optax.scale_by_sign(), optax.scale(-learning_rate))

    config = SweepConfig(optimizer=signed, steps=10, eval_every=10)
    limits, loops = rule_loops(config, {"learning_rate": LRS})
    assert not loops.exact and "nonlinear" in loops.reason
    keys = ("curvature", "gn_sharpness", "drift", "d2s", "sharpening", "turning_rest")
    out = ph.decide_phases(limits, loops, dict.fromkeys(keys, np.ones(2)))
    assert (np.asarray(ph.PHASES)[out["phase"]] == "unknown").all()


class UV(nn.Module):
    """Lewkowycz et al.'s two-layer linear network f(x) = v.(u x) / sqrt(m)."""

    width: int = 512

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(1.0)
        h = nn.Dense(self.width, use_bias=False, kernel_init=init)(x)
        return nn.Dense(1, use_bias=False, kernel_init=init)(h) / jnp.sqrt(self.width)


def square(outputs, targets):
    return 0.5 * (outputs[:, 0] - targets) ** 2


def _uv():
    data = Arrays(*(np.ones((1, 1), np.float32), np.ones(1, np.float32)) * 2)
    config = SweepConfig(
        dataset=data, model=UV(), loss=square, batch_size=None, steps=200, eval_every=200
    )
    m = measure_init(assemble(config, {"learning_rate": [0.1]}), 1, examples=None, iters=10)
    products = np.array([1.5, 3.0, 3.6, 4.6, 6.0])
    return config, m, [float(v) for v in products / m.sharpness[0]]


def test_full_batch_measurements_are_those_of_the_training_set():
    """Full batch, a linear model under a square loss: the sharpness is the top eigenvalue of
    X'X/n and the batch sharpness g'Hg/g'g of the whole training set's gradient (numpy), read
    once (not 16 resampled copies of it)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 5)).astype(np.float32), rng.normal(size=32).astype(np.float32)
    model = nn.Dense(1, use_bias=False)
    config = SweepConfig(
        dataset=Arrays(x, y, x, y), model=model, loss=square, batch_size=None, steps=4, eval_every=4
    )
    program = assemble(config, {"learning_rate": [0.1]})
    m = measure_init(program, 1, examples=None, iters=5)
    state = program.init(program.data, {"learning_rate": jnp.float32(0.1)}, jax.random.key(0))
    w = np.asarray(jax.tree.leaves(state.params)[0], np.float64)[:, 0]
    h = x.T.astype(np.float64) @ x / len(x)
    g = x.T @ (x @ w - y) / len(x)
    assert m.batches == 1
    np.testing.assert_allclose(m.sharpness[0], np.linalg.eigvalsh(h)[-1], rtol=1e-4)
    np.testing.assert_allclose(m.batch_sharpness[0], g @ h @ g / (g @ g), rtol=1e-4)


def test_uv_model_trains_as_lewkowycz_et_al_say():
    """Lewkowycz et al. 2020: GD on the wide two-layer linear network catapults for
    2 < eta lambda0 < 4 and diverges beyond 4 (checked by training: the reference the
    pre-flight's catapult edge is held to), and its sharpness is |grad f|^2 = 2 here."""
    config, m, lrs = _uv()
    assert abs(m.sharpness[0] - 2.0) < 0.2
    ds = run_sweep(config, {"learning_rate": lrs}, 1, progress=False)
    measured = measured_phases(ds["train_loss"].values[:, 0], ds["diverged_at"].values[:, 0])
    diverged = np.asarray(ph.MEASURED_PHASES)[measured] == "divergent"
    assert diverged.tolist() == [False, False, False, True, True]


def test_catapult_edge_is_four_over_lambda_on_the_uv_model():
    """The catapult's edge from the measured derivatives: q = 1 at eta lambda0 = 4."""
    config, m, lrs = _uv()
    pre = preflight(config, {"learning_rate": lrs}, 1, measurement=m, probe_steps=0)
    assert pre.phase[:, 0].tolist() == ["stable", "catapult", "catapult", "divergent", "divergent"]
    products = np.array(lrs) * m.sharpness[0]
    q = pre.ratio[1:, 0]  # q is proportional to eta lambda - 2 for gradient descent
    edge = 2 + (products[1:] - 2) / q
    np.testing.assert_allclose(edge, 4.0, rtol=0.05)


def test_measured_phases_on_known_curves():
    nan = np.nan
    loss = np.array(
        [
            [1.0, 0.8, 0.5, 0.3],  # stable
            [1.0, 5.0, 0.7, 0.4],  # catapult
            [1.0, 3.0, nan, nan],  # non-finite: divergent
            [1.0, 1e3, 1e7, 1e8],  # a millionfold: divergent
            [1.0, 9.0, 2.31, 2.30],  # back to chance (log 10) with chance accuracy: collapsed
            [2.3, 150.0, 120.0, 110.0],  # blown up, finite, chance accuracy: collapsed
            [2.3, 3.0, 2.31, 2.30],  # at chance, above chance accuracy: not collapsed
        ]
    )
    diverged = np.array([-1, -1, 5, -1, -1, -1, -1])
    accuracy = np.array([[0.1, 0.5, 0.7, 0.8]] * 4 + [[0.1] * 4] * 2 + [[0.1, 0.2, 0.3, 0.4]])
    got = measured_phases(loss, diverged, accuracy=accuracy, classes=10)
    names = np.asarray(ph.MEASURED_PHASES)[got].tolist()
    assert names == [
        "stable",
        "catapult",
        "divergent",
        "divergent",
        "collapsed",
        "collapsed",
        "stable",
    ]
    sharp = np.array([[10.0, 15.0, 19.5, 19.8]])
    eos = measured_phases(loss[:1], diverged[:1], sharp, limit=20.0)
    assert ph.MEASURED_PHASES[eos[0]] == "edge of stability"


def test_range_test_stops_at_four_times_the_best_smoothed_loss():
    lrs = np.geomspace(1e-3, 1.0, 50)
    raw = np.where(np.arange(50) < 30, 1.0 - np.arange(50) / 60, 1e3)[None, :]
    smoothed, stop, best = _stopping(raw, lrs, beta=0.0, factor=4.0)
    assert stop[0] == lrs[30] and best[0] == lrs[29]
    jump = np.where(np.arange(50) < 30, raw, 3.0)  # 3 > 4 x 0.52: stops at once unsmoothed
    assert _stopping(jump, lrs, beta=0.0, factor=4.0)[1][0] == lrs[30]
    _, stop, _ = _stopping(jump, lrs, beta=0.98, factor=4.0)
    assert lrs[30] < stop[0] <= lrs[-1]  # the moving average takes steps to pass 4 x best


def test_cli_defaults_are_the_library_s():
    """The CLI cannot import the probe (no JAX at import time), so its default is written
    there: it must stay the library's."""
    args = cli.build_parser().parse_args(["preflight"])
    assert args.probe_rounds == ROUNDS


@pytest.mark.parametrize(
    "args, name",
    [
        (["--optimizer", "nosuch"], "optimizer"),
        (["--grid", "learning_rate=abc"], "grid"),
        (["--grid", "lr=0.1"], "lr"),
        (["--batch-size", "x"], "batch_size"),
        (["--examples", "0"], "examples"),
        (["--iters", "0"], "iters"),
        (["--probe-steps", "-1"], "probe_steps"),
        ([], "grid"),  # as `gdyn sweep` refuses an empty grid
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, name):
    assert cli.main(["preflight", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"gdyn preflight: error: {name}")


def test_skip_predicted_divergent_trains_none_of_them(tmp_path, capsys):
    grid = "learning_rate=0.01,30"
    args = [
        "sweep",
        "--loss",
        "mse",
        "--batch-size",
        "full",
        "--train-subset",
        "100",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--grid",
        grid,
        "--out",
        str(tmp_path),
        "--skip-predicted-divergent",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "pre-flight" in out and (tmp_path / "preflight.json").exists()
    ds = load_results(tmp_path)
    assert ds["skipped"].values.tolist() == [[False], [True]]


@pytest.mark.slow
def test_sweep_preflight_stores_and_scores_the_predictions(tmp_path, capsys):
    args = [
        "sweep",
        "--loss",
        "mse",
        "--batch-size",
        "full",
        "--train-subset",
        "100",
        "--steps",
        "6",
        "--eval-every",
        "2",
        "--grid",
        "learning_rate=0.01,100",
        "--out",
        str(tmp_path),
        "--preflight",
        "--no-progress",
    ]
    assert cli.main(args) == 0
    assert "measured phase as predicted" in capsys.readouterr().out
    record = json.loads((tmp_path / "preflight.json").read_text())
    assert [p["phase"] for p in record["points"]] == ["stable", "divergent"]
    assert record["measured"] == [["stable"], ["divergent"]]


@pytest.mark.slow
def test_phases_experiment_tiny_finds_the_catapult_window(tmp_path):
    """The tiny `phases` run, scored against its own training: the measured divergence
    boundary lies above the naive limit 2/lambda0 (runs between them catapult instead of
    diverging, Lewkowycz et al. 2020), and the pre-flight's boundary lies between the naive
    one and the range test's stop."""

    summary = experiments.run("phases", tmp_path, mode="tiny")
    (case,) = summary["cases"]
    assert case["naive_boundary"] < case["boundary"]
    assert case["naive_boundary"] <= case["predicted_boundary"] < case["range_boundary"]
    assert (tmp_path / "phase_maps.png").is_file()

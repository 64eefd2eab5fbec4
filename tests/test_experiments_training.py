"""The training experiments (mnist1d, cohen2021, wu2021, an2018, wilson2017) end to end, tiny.

Each experiment runs once in ``mode='tiny'`` (a few steps on MNIST-1D) into a temp folder;
the tests check that its outputs exist and that its summary has the promised keys, with
values checked against independent oracles: the closed forms written out here for the
stability limits, poles and zeros, numpy statistics for mean ± sd, two Lanczos runs from
different starts, and Wilson et al.'s analysis for the separable problem.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import experiments
from gdyn_jax.predictions.phases import MEASURED_PHASES, PHASES

pytestmark = pytest.mark.usefixtures("mnist1d_data_dir")


def _run(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    summary = experiments.run(name, out, mode="tiny")
    return out, summary


def _check_outputs(out, summary):
    assert (out / "report.md").read_text().startswith("# ")
    assert json.loads((out / "summary.json").read_text())["mode"] == "tiny"
    for figure in summary["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({figure})" in (out / "report.md").read_text()


def _check_stats(stats, low=0.0, high=1.0):
    seeds = np.asarray(stats["seeds"], float)
    assert seeds.size >= 2
    assert np.all((seeds >= low) & (seeds <= high))
    assert stats["mean"] == pytest.approx(np.mean(seeds), rel=1e-6)
    assert stats["sd"] == pytest.approx(np.std(seeds, ddof=1), rel=1e-6, abs=1e-9)


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    return _run("mnist1d", tmp_path_factory)


@pytest.fixture(scope="module")
def cohen(tmp_path_factory):
    return _run("cohen2021", tmp_path_factory)


@pytest.fixture(scope="module")
def wu(tmp_path_factory):
    return _run("wu2021", tmp_path_factory)


@pytest.fixture(scope="module")
def an(tmp_path_factory):
    return _run("an2018", tmp_path_factory)


@pytest.fixture(scope="module")
def wilson(tmp_path_factory):
    return _run("wilson2017", tmp_path_factory)


def test_mnist1d_summary_has_four_models_with_mean_sd(mnist1d):
    out, summary = mnist1d
    _check_outputs(out, summary)
    assert set(summary["test_accuracy"]) == {"logistic", "mlp", "cnn", "gru"}
    for key, stats in summary["test_accuracy"].items():
        _check_stats(stats)
        assert summary["seconds_per_model"][key] > 0
    # Published numbers are carried beside the measured ones.
    assert summary["published"] == {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}


def test_cohen_thresholds_are_the_closed_form_limits(cohen):
    out, summary = cohen
    _check_outputs(out, summary)
    runs = summary["runs"]
    assert {r["optimizer"] for r in runs} == {"gd", "momentum", "nesterov"}
    for r in runs:
        a, beta = r["learning_rate"], r["beta"]
        expected = {
            "gd": 2 / a,
            "momentum": (2 + 2 * (beta or 0)) / a,
            "nesterov": (2 + 2 * (beta or 0)) / ((1 + 2 * (beta or 0)) * a),
        }[r["optimizer"]]
        assert r["threshold"] == pytest.approx(expected, rel=1e-6)
        assert math.isfinite(r["final_sharpness"]) and r["final_sharpness"] > 0
        assert r["ratio"] == pytest.approx(r["final_sharpness"] / r["threshold"])
    # Learning rates are chosen so that every optimizer has the same limits.
    limits = {}
    for r in runs:
        limits.setdefault(r["optimizer"], []).append(r["threshold"])
    assert limits["gd"] == pytest.approx(limits["momentum"])
    assert limits["gd"] == pytest.approx(limits["nesterov"])


def test_wu_theory_rows_and_training_grid(wu):
    out, summary = wu
    _check_outputs(out, summary)
    rows = summary["grid"]
    assert {r["optimizer"] for r in rows} == {"sgd", "momentum", "nag"}
    for r in rows:
        # Predicted stability against the closed-form limits K < 2, 2+2β, (2+2β)/(1+2β).
        beta = r["beta"] or 0.0
        limit = {"sgd": 2.0, "momentum": 2 + 2 * beta, "nag": (2 + 2 * beta) / (1 + 2 * beta)}
        assert r["predicted_stable"] == (r["K"] < limit[r["optimizer"]])
        if r["predicted_stable"] and r["optimizer"] == "sgd" and r["K"] < 1:
            # First order, monotone: settling time = first k with (1-K)^k <= 0.02 (+-1 step).
            k_pred = math.log(0.02) / math.log(1 - r["K"])
            assert abs(r["predicted_settling_at_h0"] - k_pred) <= 1.5
    assert set(summary["best"]) == {"sgd", "momentum", "nag"}
    for best in summary["best"].values():
        _check_stats(best["test_accuracy"])
    for c in summary["curvature"]:
        # The top quadrature node (Lanczos from the gradient) and the sharpness (Lanczos from a
        # random vector) are two lower estimates of the same largest eigenvalue.
        assert max(c["nodes"]) == pytest.approx(c["sharpness"], rel=0.05)
        assert c["loss"] == pytest.approx(math.log(10), rel=0.2)  # ~uniform at init, 10 classes
        assert min(c["weights"]) >= 0
    for r in rows:  # the NTK loop's steps to the target: a step of the run, or never (inf)
        assert r["predicted_steps_ntk_loop"] >= 0
    seeds = summary["settings"]["seeds"]
    for r in rows:  # the pre-flight's call and the sweep's outcome, per seed
        assert len(r["preflight_phase"]) == len(r["measured_phase"]) == seeds
        assert set(r["preflight_phase"]) <= set(PHASES)
        assert set(r["measured_phase"]) <= set(MEASURED_PHASES)
        # the sweep's divergence (non-finite) is a measured divergence
        pairs = zip(r["measured_phase"], r["diverged"], strict=True)
        assert all(p == "divergent" for p, d in pairs if d)
    for key in ("spearman_quadratic_model", "spearman_ntk_loop"):
        rho = summary[key]
        assert rho is None or -1.0 <= rho <= 1.0  # NaN is written as null


def test_an_poles_match_closed_forms(an):
    out, summary = an
    _check_outputs(out, summary)
    h0 = summary["initial_sharpness"]["mean"]
    assert h0 > 0
    settings = summary["settings"]
    lr = settings["lrs"][len(settings["lrs"]) // 2]
    beta, K = 0.9, lr * h0
    got = np.array([complex(*p) for p in summary["poles_zeros"]["momentum"]["poles"]])
    want = np.roots([1.0, -(1 + beta - K), beta])  # the heavy-ball denominator
    assert np.sort_complex(got) == pytest.approx(np.sort_complex(want), abs=1e-8)
    assert set(summary["kd_design"]) <= set(settings["kds"])
    for row in summary["rows"]:
        for name in ("momentum", "pid"):
            _check_stats(row[name]["final_test_accuracy"])
            assert row[name]["overshoot_pct"]["mean"] >= 0


def test_wilson_toy_adaptive_near_half_sgd_zero(wilson):
    out, summary = wilson
    _check_outputs(out, summary)
    toy = summary["toy"]
    negatives = toy["negative_fraction"]
    assert 0.3 < negatives < 0.7
    assert toy["sgd"]["test_error"]["mean"] == pytest.approx(0.0, abs=0.02)
    for name in ("adagrad", "rmsprop", "adam"):
        # Wilson et al. §3.3: every new sample is labelled positive.
        assert toy[name]["test_error"]["mean"] == pytest.approx(negatives, abs=0.02)
    assert set(summary["mnist1d"]) == {"sgd", "momentum", "adam"}
    grids = dict(summary["settings"]["lrs"])
    for name, r in summary["mnist1d"].items():
        _check_stats(r["test_accuracy"])
        assert np.isclose(r["learning_rate"], grids[name], rtol=1e-6).any()

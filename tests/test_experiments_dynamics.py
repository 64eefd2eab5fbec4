"""The experiments of issue 12's second part (mode_response, cohen2022, robustness), tiny.

Each runs once in ``mode='tiny'`` into a temp folder; the tests check the report's scored rows
(one per mode, optimizer and setting; the limits and ratios) against the summary and
independent recomputations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import experiments

pytestmark = pytest.mark.usefixtures("mnist1d_data_dir")


def _run(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    summary = experiments.run(name, out, mode="tiny")
    report = (out / "report.md").read_text()
    assert (
        report.startswith("# ") and json.loads((out / "summary.json").read_text())["mode"] == "tiny"
    )
    for figure in summary["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({figure})" in report
    return summary, report


@pytest.fixture(scope="module")
def mode_response(tmp_path_factory):
    return _run("mode_response", tmp_path_factory)


def test_mode_response_scores_every_mode_of_every_setting(mode_response):
    summary, report = mode_response
    settings = experiments.settings("mode_response", "tiny")
    rows = [c for c in summary["comparisons"] if c["quantity"].endswith("relative error")]
    kicks = summary["kicks"]
    assert set(kicks) == {"sgd", "heavy ball", "nesterov"}
    assert len(rows) == settings.modes * sum(len(v) for v in kicks.values())
    for tests in kicks.values():
        regimes = {r for t in tests for r in t["regimes"]}
        assert regimes >= {"damped", "oscillating", "unstable"}
        for t in tests:
            measured, predicted = np.asarray(t["measured"]), np.asarray(t["predicted"])
            assert measured.shape == (settings.modes, settings.steps + 1)
            error = np.linalg.norm(measured - predicted, axis=1) / np.linalg.norm(predicted, axis=1)
            np.testing.assert_allclose(t["error"], error, rtol=1e-9)
            np.testing.assert_allclose(measured[:, 0], 1.0, rtol=1e-6)  # the kick itself
    stable = [c for c in rows if "unstable" not in c["quantity"]]
    assert all(c["upper"] == 0.01 for c in stable) and "mode 1" in report
    # the eigenvalues are the top of the Hessian's spectrum, decreasing, with tiny residuals
    values = np.asarray(summary["eigenvalues"])
    assert np.all(np.diff(values) <= 0) and np.all(np.asarray(summary["residuals"]) < 1e-6)


@pytest.fixture(scope="module")
def cohen2022(tmp_path_factory):
    return _run("cohen2022", tmp_path_factory)


def test_cohen2022_limits_come_from_linearize_and_every_rate_is_scored(cohen2022):
    summary, _ = cohen2022
    settings = experiments.settings("cohen2022", "tiny")
    rows = {c["quantity"]: c for c in summary["comparisons"]}
    for lr in settings.learning_rates:
        limit = summary["limits"][str(lr)]
        assert limit == pytest.approx((2 + 2 * 0.9) / (lr * (1 - 0.9)), rel=1e-9)
        assert rows[f"η = {lr:g}: frozen-Adam limit (max_stable_curvature)"]["agrees"]
        ratio = rows[f"η = {lr:g}: late λ_max(P⁻¹H) / limit"]
        late = summary["late_preconditioned_sharpness"][str(lr)]
        assert ratio["measured"] == pytest.approx(late / limit) and ratio["rtol"] == 0.1
    curves = np.asarray(summary["curves"], dtype=float)
    assert curves.shape == (len(settings.learning_rates), settings.steps // settings.eval_every + 1)
    assert np.all(np.isnan(curves[:, 0])) and np.all(curves[:, 1:] > 0)  # no P at step 0


@pytest.fixture(scope="module")
def robustness(tmp_path_factory):
    return _run("robustness", tmp_path_factory)


def test_robustness_scores_every_optimizer_and_noise_level(robustness):
    summary, report = robustness
    settings = experiments.settings("robustness", "tiny")
    results = summary["results"]
    assert set(results) == {"sgd", "momentum", "nag"}
    quantities = [c["quantity"] for c in summary["comparisons"]]
    for name, per_noise in results.items():
        assert sorted(float(p) for p in per_noise) == sorted(settings.noise)
        for r in per_noise.values():
            accuracy = np.asarray(r["accuracy"])
            assert accuracy.shape == (settings.seeds, 1 + len(settings.epsilons))
            assert np.all((accuracy >= 0) & (accuracy <= 1))
            # the FGSM evaluation at eps = 0 is the engine's own clean test accuracy
            np.testing.assert_allclose(accuracy[:, 0], r["engine"], atol=1e-6)
            f = r["floor"]
            if name == "sgd":  # Mandt et al.: a sigma^2 / (h (2 - a h)), independent of linearize
                a, h = r["a"], f["curvature"]
                assert f["predicted"] == pytest.approx(
                    a * f["sigma2"] / (h * (2 - a * h)), rel=1e-6
                )
        assert sum(q.startswith(f"{name},") and "noise floor" in q for q in quantities) == len(
            settings.noise
        )
        assert f"{name}: times the FGSM accuracy rises with ε" in quantities
    assert "FGSM ε=0.05" in report and "± " in report

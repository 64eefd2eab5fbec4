"""The theory experiments (goh2017, lessard2016, liu2018, optimizer_memory, gd_variants).

Each runs end to end in its tiny setting (once per module) and writes report.md, summary.json
and PNG figures; its numbers are checked against independent oracles: the roots of the
characteristic polynomials written out here (numpy), scipy's discrete Lyapunov solver, optax's
own optimizer states and scipy's minimiser.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import optax
import pytest
import scipy.linalg
import scipy.special

import experiments
from experiments import _quadratic, gd_variants, liu2018
from gdyn_jax import optimizers

MINE = ("goh2017", "lessard2016", "liu2018", "optimizer_memory", "gd_variants")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, tuple[pathlib.Path, dict]]:
    root = tmp_path_factory.mktemp("theory")
    return {name: (root / name, experiments.run(name, root / name, mode="tiny")) for name in MINE}


def _heavy_ball_radius(a: float, beta: float, h: float) -> float:
    # Closed loop of heavy ball on curvature h: z^2 - (1 + beta - a h) z + beta.
    return float(np.max(np.abs(np.roots([1.0, -(1.0 + beta - a * h), beta]))))


def _nesterov_radius(a: float, beta: float, h: float) -> float:
    k = a * h
    return float(np.max(np.abs(np.roots([1.0, -(1 + beta) * (1 - k), beta * (1 - k)]))))


@pytest.mark.parametrize("name", MINE)
def test_writes_report_summary_and_figures(outputs, name):
    out, summary = outputs[name]
    assert (out / "report.md").read_text().startswith("# ")
    assert json.loads((out / "summary.json").read_text()) == summary
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    assert sorted(summary["figures"]) == sorted(p.name for p in pngs)
    for png in pngs:  # every figure is linked from the report
        assert f"]({png.name})" in (out / "report.md").read_text()
    assert summary["mode"] == "tiny" and summary["agreement"]["compared"] > 0


def test_goh2017_optimum_and_regions(outputs):
    _, s = outputs["goh2017"]
    assert all(count > 0 for count in s["region_counts"].values()), s["region_counts"]
    for row in s["optimal"]:
        kappa, lib = row["kappa"], row["library"]
        sk = np.sqrt(kappa)
        # Goh's closed forms for curvatures in [1, kappa].
        np.testing.assert_allclose(lib["momentum"]["rate"], (sk - 1) / (sk + 1), rtol=5e-3)
        np.testing.assert_allclose(lib["gd"]["rate"], (kappa - 1) / (kappa + 1), rtol=5e-3)
        # The library's tuning achieves its rate at the extreme curvatures (numpy roots).
        a, beta = lib["momentum"]["learning_rate"], lib["momentum"]["beta"]
        worst = max(_heavy_ball_radius(a, beta, h) for h in np.linspace(1, kappa, 301))
        np.testing.assert_allclose(worst, lib["momentum"]["rate"], rtol=5e-3)
    # complex poles have modulus sqrt(beta), not 2 sqrt(beta)
    np.testing.assert_allclose(s["ripple_modulus_ratio"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(_heavy_ball_radius(1.0, 0.5, 1.0), np.sqrt(0.5), rtol=1e-12)
    run = s["quadratic_run"]
    for name in ("momentum", "gd"):
        np.testing.assert_allclose(run["measured"][name], run["predicted"][name], rtol=0.03)


def test_lessard2016_rates_match_roots(outputs):
    _, s = outputs["lessard2016"]
    methods = {r["method"] for r in s["rates"]}
    assert methods == {"gd", "heavy_ball", "nesterov", "nesterov_optimal"}
    for r in s["rates"]:
        hp, kappa = r["hyperparameters"], r["kappa"]
        curv = np.linspace(1.0, kappa, 401)
        if r["optimizer"] == "sgd":
            oracle = max(abs(1 - hp["learning_rate"] * h) for h in curv)
        elif r["optimizer"] == "momentum":
            oracle = max(_heavy_ball_radius(hp["learning_rate"], hp["beta"], h) for h in curv)
        else:
            oracle = max(_nesterov_radius(hp["learning_rate"], hp["beta"], h) for h in curv)
        np.testing.assert_allclose(r["worst_case_rate"], oracle, rtol=1e-6, atol=1e-7)
        gap = 1 - r["closed_form_rate"]
        assert abs(r["worst_case_rate"] - r["closed_form_rate"]) <= 1e-3 * gap
    run = s["quadratic_run"]
    for method, rate in run["predicted"].items():
        np.testing.assert_allclose(run["measured"][method], rate, rtol=0.03)


def _counterexample_gradient(x: float) -> float:
    # LRP 2016, §4.6: 25x (x < 1), x + 24 (1 <= x < 2), 25x - 24 (x >= 2); m = 1, L = 25.
    return 25 * x if x < 1 else (x + 24 if x < 2 else 25 * x - 24)


def test_lessard2016_certified_rates(outputs):
    _, s = outputs["lessard2016"]
    rows = s["certified_rates"]
    assert {r["method"] for r in rows} == {
        "gd",
        "nesterov",
        "nesterov_optimal",
        "heavy_ball",
        "triple_momentum",
    }
    for r in rows:
        kappa, rate = r["kappa"], r["certified_rate"]
        assert rate is None or rate >= r["quadratic_rate"] - 1e-9  # never beats quadratics
        if r["method"] == "gd":  # a = 2/(L + m): (kappa - 1)/(kappa + 1) with either IQC
            assert abs(rate - (kappa - 1) / (kappa + 1)) <= 1e-4
        if r["method"] == "triple_momentum" and r["iqc"] == "off_by_one":
            target = 1 - 1 / np.sqrt(kappa)
            assert 0 <= (rate - target) / (1 - target) <= 1e-3
        if r["method"] == "heavy_ball" and kappa >= 25:
            assert rate is None and r["quadratic_rate"] < 1
    published = {"nesterov/sector": 11.7, "nesterov_optimal/sector": 10.0}
    published |= {"heavy_ball/sector": 6.0, "heavy_ball/off_by_one": 18.0}
    for key, value in s["certification_thresholds"].items():
        assert value == pytest.approx(published[key], rel=0.05)


def test_lessard2016_counterexample_is_the_papers_recursion(outputs):
    _, s = outputs["lessard2016"]
    c = s["counterexample"]
    a, beta = 4 / (5 + 1) ** 2, ((5 - 1) / (5 + 1)) ** 2  # Polyak's tuning, kappa = 25
    x = [3.3, 3.3]  # x_{-1} = x_0
    for _ in range(len(c["iterates"]) - 1):
        x.append(x[-1] - a * _counterexample_gradient(x[-1]) + beta * (x[-1] - x[-2]))
    np.testing.assert_allclose(c["iterates"], x[1:], rtol=1e-9, atol=1e-9)
    assert c["amplitude"] > 1e-3 and c["period"] == 3
    z = list(c["orbit"])  # consecutive points of a 3-periodic solution of the same recursion
    for j in range(3):
        step = z[j] - a * _counterexample_gradient(z[j]) + beta * (z[j] - z[j - 1])
        assert step == pytest.approx(z[(j + 1) % 3], abs=1e-9)
    assert 3.06 <= c["interval"][0] <= 3.07 and 3.46 <= c["interval"][1] <= 3.47 + 1e-2


def test_liu2018_trends_and_diffusion_constant(outputs):
    _, s = outputs["liu2018"]
    escape = np.asarray(s["escape_median"], float)  # (momenta, learning rates)
    error = np.asarray(s["stationary_error"], float)
    settings = liu2018.Settings.tiny()
    assert escape.shape == error.shape == (len(settings.momenta), len(settings.learning_rates))
    assert np.all(escape[-1] < escape[0])  # momentum escapes the saddle faster
    assert np.all(error[-1] > error[0])  # and settles noisier
    mu, eta = np.meshgrid(settings.momenta, settings.learning_rates, indexing="ij")
    np.testing.assert_allclose(s["effective_step"], eta / (1 - mu), rtol=1e-12)
    # C = sum_j l1 lj / (2 (l1 - lj)): for (1, 0.5) it is 0.5, for (2, 1, 1) it is 2.
    assert liu2018.Settings(eigenvalues=(1.0, 0.5)).diffusion_constant == pytest.approx(0.5)
    assert liu2018.Settings(eigenvalues=(2.0, 1.0, 1.0)).diffusion_constant == pytest.approx(2.0)


def test_liu2018_noise_floor_matches_lyapunov(outputs):
    _, s = outputs["liu2018"]
    h = np.asarray(liu2018.QUAD_CURVATURES)
    sigma = liu2018.QUAD_NOISE
    for row in s["noise_floor"]:
        a, mu = row["learning_rate"], row["momentum"]
        pred = []
        for hi in h:  # state (theta, v): v' = mu v + h theta + w; theta' = theta - a v'
            A = np.array([[1 - a * hi, -a * mu], [hi, mu]])
            B = np.array([[-a], [1.0]])
            cov = scipy.linalg.solve_discrete_lyapunov(A, sigma**2 * B @ B.T)
            pred.append(cov[0, 0])
        np.testing.assert_allclose(row["predicted_variance"], pred, rtol=1e-6)
        np.testing.assert_allclose(row["predicted_excess_loss"], 0.5 * np.dot(h, pred), rtol=1e-6)


def test_optimizer_memory_matches_optax_states(outputs):
    _, s = outputs["optimizer_memory"]
    rows = {r["optimizer"]: r for r in s["optimizers"]}
    n = s["num_params"]
    params = {"w": np.zeros((n,), np.float32)}

    def optax_bytes(tx):
        leaves = jax.tree.leaves(tx.init(params))
        return sum(x.nbytes for x in leaves if np.issubdtype(x.dtype, np.floating)) / n

    oracle = {
        "sgd": optax.sgd(0.1),
        "momentum": optax.sgd(0.1, momentum=0.9),
        "adagrad": optax.adagrad(0.1),
        "rmsprop": optax.rmsprop(0.1),
        "adam": optax.adam(0.1),
        "adamw": optax.adamw(0.1),
        "lars": optax.lars(0.1),
    }
    for name, tx in oracle.items():
        np.testing.assert_allclose(rows[name]["bytes_per_param"], optax_bytes(tx), atol=1e-3)
    assert rows["sgd"]["bytes_per_param"] == 0
    assert rows["adam"]["bytes_per_param"] == 8


def test_gd_variants(outputs):
    _, s = outputs["gd_variants"]
    x, y = gd_variants.make_data(16)
    p = np.array([0.7, -0.3])
    np.testing.assert_allclose(  # the loss is -mean log sigma(y (w x + b))
        gd_variants.logistic_loss(p, x, y),
        -np.mean(np.log(scipy.special.expit(y * (p[0] * x + p[1])))),
        rtol=1e-6,
    )
    rough = s["logistic"]["roughness"]
    assert rough["stochastic"] > rough["mini-batch"] > rough["batch"] >= 1.0
    rav = s["ravine"]
    h1, h2 = rav["curvatures"]
    a, beta = rav["learning_rate"], rav["beta"]
    # GD: max |1 - a h|; heavy ball with beta = (1 - sqrt(a h2))^2: a double root 1 - sqrt(a h2).
    np.testing.assert_allclose(beta, (1 - np.sqrt(a * h2)) ** 2, rtol=0.01)
    gd_rate = max(abs(1 - a * h1), abs(1 - a * h2))
    np.testing.assert_allclose(rav["measured_rate"]["GD"], gd_rate, rtol=0.01)
    hb_rate = max(_heavy_ball_radius(a, beta, h) for h in (h1, h2))
    np.testing.assert_allclose(rav["predicted_rate"]["heavy ball"], hb_rate, rtol=1e-6)
    np.testing.assert_allclose(rav["measured_rate"]["heavy ball"], hb_rate, rtol=0.03)
    assert rav["zigzag_amplitude"]["heavy ball"] < rav["zigzag_amplitude"]["GD"]


def test_liu2018_exponent_fit():
    mu = np.array([0.0, 0.5, 0.9])
    np.testing.assert_allclose(liu2018.fit_exponent(mu, 7.0 * (1 - mu)), -1.0, rtol=1e-9)
    np.testing.assert_allclose(liu2018.fit_exponent(mu, 3.0 / (1 - mu)), 1.0, rtol=1e-9)


def test_gd_variants_roughness_on_known_paths():
    straight = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(gd_variants.roughness(straight), 1.0)
    zigzag = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(gd_variants.roughness(zigzag), np.sqrt(2))


def test_final_is_the_last_iterate_of_gradient_descent_on_a_quadratic():
    h, a, k = np.array([0.5, 1.0, 3.0]), 0.3, 25
    with jax.enable_x64(True):
        last = _quadratic.final(optimizers.sgd(a), lambda p, _: h * p, np.ones(3), length=k)
    np.testing.assert_allclose(last, (1 - a * h) ** k, rtol=1e-12)  # theta_k = (1 - a h)^k

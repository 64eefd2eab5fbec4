"""The edge-of-stability experiments beyond GD (cohen2025, andreyev2024) end to end, tiny.

Each runs once in ``mode='tiny'``; its recorded numbers are checked against independent
oracles: the closed-form limits, effective steps and delays of the three rules (written out
here), numpy's centred means, and the Rayleigh-quotient bound (a curvature along one direction,
the batch sharpness of the full batch, never exceeds the top eigenvalue).
"""

from __future__ import annotations

import json
import types

import jax.numpy as jnp
import numpy as np
import pytest

import experiments
from experiments import _edge_runs as er

pytestmark = [pytest.mark.usefixtures("mnist1d_data_dir"), pytest.mark.slow]
BETA = 0.9


def _run(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    summary = experiments.run(name, out, mode="tiny")
    assert json.loads((out / "summary.json").read_text())["mode"] == "tiny"
    for figure in summary["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def test_cohen2025_rules_read_from_their_code(tmp_path_factory):
    summary = _run("cohen2025", tmp_path_factory)
    rows = {r["rule"]: r for r in summary["rules"]}
    gd, hb, nest = rows["gd"], rows["heavy ball"], rows["nesterov"]
    assert gd["learning_rate"] == pytest.approx(2 / gd["limit"])
    assert hb["learning_rate"] == pytest.approx((2 + 2 * BETA) / hb["limit"])
    assert nest["learning_rate"] == pytest.approx((2 + 2 * BETA) / ((1 + 2 * BETA) * nest["limit"]))
    assert gd["effective_step"] == pytest.approx(gd["learning_rate"])
    for r in (hb, nest):
        assert r["effective_step"] == pytest.approx(r["learning_rate"] / (1 - BETA))
    assert gd["delay"] == pytest.approx(0, abs=1e-9)
    assert hb["delay"] == pytest.approx(BETA / (1 - BETA))
    assert nest["delay"] == pytest.approx(BETA / (1 - BETA) - BETA)
    assert all(r["distance_cf"] >= 0 and r["distance_gf"] >= 0 for r in rows.values())


def test_centred_mean_against_numpy():
    values = np.random.default_rng(0).normal(size=(30, 3))
    k = 4
    out = er.centred_mean(values, k)
    for t in range(k, 30 - k + 1):
        np.testing.assert_allclose(out[t], values[t - k : t + k].mean(axis=0))
    assert np.isnan(out[:k]).all() and np.isnan(out[30 - k + 1 :]).all()


def test_andreyev2024_full_batch_sharpness_below_lambda_max(tmp_path_factory):
    summary = _run("andreyev2024", tmp_path_factory)
    rows = {r["batch_size"]: r for r in summary["rows"]}
    settings = summary["settings"]
    assert set(rows) == set(settings["batch_sizes"])
    for r in rows.values():
        assert np.isfinite(r["batch_sharpness"]) and r["batch_sharpness"] > 0
    full = rows[max(rows)]  # the tiny mode's largest batch is the whole training set
    assert max(rows) >= settings["examples"]
    # the full-batch batch sharpness is g'Hg / |g|^2 <= lambda_max (Lanczos: within 1 %)
    assert full["batch_sharpness"] <= 1.01 * full["sharpness"]


def test_centred_mean_skips_windows_with_a_nan():
    values = np.arange(12.0)
    values[5] = np.nan
    out = er.centred_mean(values, 2)
    for t in range(2, 11):
        window = values[t - 2 : t + 2]
        expected = np.nan if np.isnan(window).any() else window.mean()
        np.testing.assert_allclose(out[t], expected)


def test_oscillation_shares_on_a_quadratic():
    # L = c + lam/2 |w|^2 at w_t = w_bar + (-1)^t delta: over whole cycles the mean loss is
    # L(w_bar) + lam/2 |delta|^2, the share lam |delta|^2 / 2 / mean (the flow's is its own)
    lam, c, k, steps = 3.0, 0.25, 2, 12
    rng = np.random.default_rng(2)
    w_bar, delta = rng.normal(size=(2, 4))
    signs = (-1.0) ** np.arange(steps + 1)[:, None]
    weights = w_bar + signs * delta

    def loss_fn(p):
        return c + 0.5 * lam * jnp.sum(p["w"] ** 2)

    losses = np.array([float(loss_fn({"w": w})) for w in weights[:steps]])
    flow = types.SimpleNamespace(predicted_loss=np.full(steps, 2.0), loss=np.full(steps, 1.5))
    real, predicted = er.oscillation_shares(loss_fn, {"w": jnp.zeros(4)}, losses, weights, flow, k)
    mean = c + 0.5 * lam * (w_bar @ w_bar + delta @ delta)
    fits = np.arange(k, steps - k + 1)
    np.testing.assert_allclose(real[fits], 0.5 * lam * (delta @ delta) / mean, rtol=1e-5)
    np.testing.assert_allclose(predicted[fits], 0.25)
    assert np.isnan(real[:k]).all() and np.isnan(predicted[:k]).all()

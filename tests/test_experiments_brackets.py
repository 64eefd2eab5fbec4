"""experiments/brackets end to end, tiny: its numbers against references computed here.

Gradient descent's worst case after n steps from the closed form max(|1-a mu|, |1-a L|)^(2n)
(numpy), the published rates the IQC side certifies (Triple Momentum 1 - 1/sqrt(kappa), robust
momentum lam(1 - 1/kappa) + (1 - lam)(1 - 1/sqrt(kappa))), and heavy ball's PEP worst case
replayed: a quadratic's worst case is a lower bound on the PEP's (numpy run of Polyak's tuning on
the worst eigenvalue, which the PEP must reach or exceed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import experiments

pytest.importorskip("cvxpy")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("brackets") / "brackets"
    summary = experiments.run("brackets", out, mode="tiny")
    return out, summary, experiments.settings("brackets", "tiny")


def test_writes_report_and_figure(run):
    out, summary, _ = run
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "](brackets.png)" in (out / "report.md").read_text()
    assert (out / "brackets.png").stat().st_size > 5000
    agree, compared = summary["agreement"]["agree"], summary["agreement"]["compared"]
    assert compared > 0 and agree == compared, summary["comparisons"]


def test_numbers_against_closed_forms(run):
    _, summary, s = run
    rows = {(r["rule"], r["kappa"]): r for r in summary["brackets"]}
    for kappa in s.kappas:
        mu, L = 1 / kappa, 1.0
        a = 2 / (mu + L)
        q = max(abs(1 - a * mu), abs(1 - a * L))
        gd = rows["gd", kappa]
        assert gd["tau"] == pytest.approx(q ** (2 * s.n), abs=1e-6)
        assert gd["upper"] == pytest.approx(q, abs=1e-5)
        tm, rm = rows["triple_momentum", kappa], rows["robust_momentum", kappa]
        assert tm["upper"] == pytest.approx(1 - 1 / np.sqrt(kappa), abs=1e-3)
        rho = 0.5 * (1 - 1 / kappa) + 0.5 * (1 - 1 / np.sqrt(kappa))
        assert rm["upper"] == pytest.approx(rho, abs=1e-3)
        # heavy ball on the quadratic h = mu, from rest: x_n / x_0 by the recursion
        sk = np.sqrt(kappa)
        alpha, beta = 4 / (np.sqrt(L) + np.sqrt(mu)) ** 2, ((sk - 1) / (sk + 1)) ** 2
        worst = 0.0
        for h in (mu, L):
            x_prev, x = 1.0, 1.0
            for _ in range(s.n):
                x_prev, x = x, x - alpha * h * x + beta * (x - x_prev)
            worst = max(worst, x * x)
        hb = rows["heavy_ball", kappa]
        if hb["pep"] == "proven":
            assert hb["tau"] >= worst * (1 - 1e-6) - 1e-9

"""`gdyn analyze` in-process through gdyn_jax.cli.main."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gdyn_jax import cli

FIELDS = {
    "optimizer",
    "hyperparameters",
    "curvature",
    "num",
    "den",
    "poles",
    "zeros",
    "dc_gain",
    "spectral_radius",
    "stable",
    "exact",
    "reason",
    "max_stable_curvature",
    "step_info",
    "outcomes",
}


def _run_json(capsys, *args):
    assert cli.main(["analyze", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_done_when_heavy_ball(capsys):
    out = _run_json(
        capsys, "momentum", "--hp", "learning_rate=0.1", "--hp", "beta=0.9", "--curvature", "2"
    )
    assert set(out) == FIELDS
    expected = np.roots([1.0, -1.7, 0.9])
    poles = np.array([complex(re, im) for re, im in out["poles"]])
    np.testing.assert_allclose(np.sort_complex(poles), np.sort_complex(expected), atol=1e-10)
    np.testing.assert_allclose(out["den"], [1.0, -1.7, 0.9], atol=1e-12)
    assert out["max_stable_curvature"] == pytest.approx(38.0, rel=1e-9)
    assert out["stable"] is True and out["exact"] is True and out["dc_gain"] == pytest.approx(1)
    assert out["hyperparameters"] == {"learning_rate": 0.1, "beta": 0.9}
    assert out["step_info"]["Stable"] is True
    assert out["step_info"]["Overshoot"] > 0


def test_diagonal_curvature_and_plot(capsys, tmp_path):
    path = tmp_path / "fig.png"
    out = _run_json(
        capsys,
        "nesterov",
        "--hp",
        "learning_rate=0.1",
        "--curvature",
        "2,5",
        "--steps",
        "100",
        "--plot",
        str(path),
    )
    assert out["curvature"] == [2.0, 5.0] and len(out["den"]) == 2 and len(out["poles"]) == 4
    assert path.stat().st_size > 1000


def test_reason_printed_when_not_exact(capsys):
    out = _run_json(capsys, "adam", "--hp", "learning_rate=0.01", "--curvature", "1")
    assert out["exact"] is False
    assert [r.split(":")[0] for r in out["reason"]] == ["nonlinear", "time-varying"]
    assert "sqrt" in out["reason"][0] and "count" in out["reason"][1]
    exact = _run_json(capsys, "sgd", "--hp", "learning_rate=0.1", "--curvature", "1")
    assert exact["exact"] is True and exact["reason"] == []
    assert cli.main(["analyze", "rmsprop", "--hp", "learning_rate=0.01", "--curvature", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("exact: False")
    assert lines[at + 1].startswith("  reason: nonlinear: not proven affine")


def test_unstable_and_text_output(capsys):
    out = _run_json(capsys, "sgd", "--hp", "learning_rate=1", "--curvature", "3")
    assert out["stable"] is False and out["step_info"]["SettlingTime"] is None
    assert out["max_stable_curvature"] == pytest.approx(2.0)
    assert cli.main(["analyze", "adam", "--hp", "learning_rate=0.01", "--curvature", "1"]) == 0
    text = capsys.readouterr().out
    assert "exact: False" in text


@pytest.mark.parametrize(
    "args,name",
    [
        (["nosuch", "--hp", "learning_rate=1", "--curvature", "1"], "optimizer"),
        (["sgd", "--hp", "lr=1", "--curvature", "1"], "--hp"),
        (["sgd", "--hp", "learning_rate", "--curvature", "1"], "--hp"),
        (["sgd", "--curvature", "1"], "--hp"),
        (["sgd", "--hp", "learning_rate=-1", "--curvature", "1"], "learning_rate"),
        (["momentum", "--hp", "learning_rate=0.1", "--hp", "beta=2", "--curvature", "1"], "beta"),
        (["sgd", "--hp", "learning_rate=1", "--curvature", "0"], "--curvature"),
        (["sgd", "--hp", "learning_rate=1", "--curvature", "1,x"], "--curvature"),
        (["sgd", "--hp", "learning_rate=1", "--curvature", "1", "--steps", "0"], "--steps"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, name):
    assert cli.main(["analyze", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"gdyn analyze: error: {name}")


def test_robust_rate_beside_the_quadratic_rate(capsys):
    """GD at a = 2/(L + mu): certified = quadratic = (kappa - 1)/(kappa + 1) (LRP 2016 §4.4)."""
    out = _run_json(
        capsys, "sgd", "--hp", f"learning_rate={2 / 11}", "--curvature", "3", "--robust", "1,10"
    )
    assert set(out) == FIELDS | {"robust"}
    robust = out["robust"]
    assert robust["mu"] == 1.0 and robust["L"] == 10.0 and robust["iqc"] == "off_by_one"
    assert robust["certified_rate"] == pytest.approx(9 / 11, abs=1e-4)
    assert robust["quadratic_rate"] == pytest.approx(9 / 11, abs=1e-9)
    assert robust["bracket"][0] <= robust["bracket"][1] == robust["certified_rate"]


def test_robust_no_certificate_for_polyak_heavy_ball(capsys):
    a, beta = 4 / 36, 4 / 9  # Polyak's tuning for [1, 25] (LRP 2016 §4.6)
    args = ["momentum", "--hp", f"learning_rate={a}", "--hp", f"beta={beta}", "--curvature", "5"]
    assert cli.main(["analyze", *args, "--robust", "1,25", "--iqc", "sector"]) == 0
    text = capsys.readouterr().out
    assert "rate over S(1, 25): no certificate (no certificate with the sector IQC" in text
    assert "none exists (a dual certificate verified" in text and "quadratic 0.666666" in text
    out = _run_json(capsys, *args, "--robust", "1,25")
    assert out["robust"]["certified_rate"] is None
    assert out["robust"]["outcome"] == "disproven"
    assert out["robust"]["quadratic_rate"] == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robust", "10,1"], "--robust: expected MU,L with 0 < MU <= L, got '10,1'"),
        (["--robust", "1"], "--robust: expected MU,L (two numbers), got '1'"),
        (["--robust", "0,1"], "--robust: expected MU,L with 0 < MU <= L"),
        (["--robust", "1,inf"], "--robust: expected MU,L with 0 < MU <= L"),
    ],
)
def test_robust_bad_class_exits_2_with_one_line(capsys, args, message):
    assert cli.main(["analyze", "sgd", "--hp", "learning_rate=0.1", "--curvature", "1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_robust_refuses_adam_in_one_line(capsys):
    args = ["adam", "--hp", "learning_rate=0.1", "--curvature", "1", "--robust", "1,10"]
    assert cli.main(["analyze", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gdyn analyze: error: --robust: the update rule is not linear")
    assert err.count("\n") == 0


# ------------------------------------------------------------------ three outcomes, extreme scales


def test_outcomes_of_a_decided_analysis(capsys):
    out = _run_json(capsys, "sgd", "--hp", "learning_rate=0.1", "--curvature", "1")
    assert out["outcomes"]["stable"]["outcome"] == "proven"
    assert out["outcomes"]["max_stable_curvature"]["outcome"] == "proven"
    assert out["max_stable_curvature"] == pytest.approx(20.0, rel=1e-12)


def test_tiny_learning_rate_limit_beyond_the_curvatures_given(capsys):
    """learning_rate=1e-12 with curvatures up to 1e12: stable, and the limit 2/a = 2e12 (it
    was reported as no limit: the search stopped at 1e12)."""
    args = ["sgd", "--hp", "learning_rate=1e-12", "--curvature", "1,1e12"]
    out = _run_json(capsys, *args)
    assert out["stable"] is True
    assert out["max_stable_curvature"] == pytest.approx(2e12, rel=1e-9)
    assert cli.main(["analyze", *args]) == 0
    text = capsys.readouterr().out
    assert "stable: True" in text and "max_stable_curvature: 2000000000000" in text


def test_huge_learning_rate_is_an_overflow_naming_it(capsys):
    for curvature in ("2", "1,2"):
        args = ["sgd", "--hp", "learning_rate=1e308", "--curvature", curvature]
        assert cli.main(["analyze", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gdyn analyze: error: --hp: learning_rate: 1e+308 is too large")
        assert "Adam" not in err and len(err.splitlines()) == 1


def test_a_pole_closer_to_one_than_float64_resolves_is_undecided(capsys):
    """sgd(1e-20) at h = 1: the pole 1 - 1e-20 is stored as 1.0; 'stable: False' would be a
    verdict from rounding."""
    args = ["sgd", "--hp", "learning_rate=1e-20", "--curvature", "1"]
    out = _run_json(capsys, *args)
    assert out["stable"] is None
    assert out["outcomes"]["stable"]["outcome"] == "undecided"
    assert "within its rounding" in out["outcomes"]["stable"]["reason"]
    assert out["max_stable_curvature"] == pytest.approx(2e20, rel=1e-9)
    assert cli.main(["analyze", *args]) == 0
    assert "stable: undecided (the spectral radius 1.0 is within" in capsys.readouterr().out


def test_robust_at_large_kappa_certified_after_normalising(capsys):
    """GD at a = 2/(L + mu) over S(1, 1e6): the solver failed in the rule's coordinates."""
    kappa = 1e6
    args = ["sgd", "--hp", f"learning_rate={2 / (1 + kappa)}", "--curvature", "1"]
    out = _run_json(capsys, *args, "--robust", f"1,{kappa}")
    robust = out["robust"]
    assert robust["outcome"] == "proven"
    exact = (kappa - 1) / (kappa + 1)
    assert exact - 1e-12 <= robust["certified_rate"] <= exact + 1e-5
    assert "normalised by L" in robust["reason"]


def test_robust_undecided_is_not_no_certificate(capsys):
    """A rule marginal on a quadratic of the class (a L = 2: rate exactly 1 at L) cannot be
    told from one just below 1 in float64: undecided, with the reason, in JSON and text."""
    args = ["sgd", "--hp", "learning_rate=2e-5", "--curvature", "1", "--robust", "1,1e5"]
    out = _run_json(capsys, *args)
    assert out["robust"]["outcome"] == "undecided" and out["robust"]["certified_rate"] is None
    assert "within rounding of 1" in out["robust"]["reason"]
    assert cli.main(["analyze", *args]) == 0
    assert "rate over S(1, 100000): could not decide (the rate" in capsys.readouterr().out

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
    assert "rate over S(1, 25): certified none (no certificate), quadratic 0.666666" in text
    out = _run_json(capsys, *args, "--robust", "1,25")
    assert out["robust"]["certified_rate"] is None
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

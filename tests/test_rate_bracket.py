"""linearize.rate_bracket: the PEP side against PEPit's published numbers and PEPit written by
hand for the same rule, gradient descent's closed forms, and the IQC certificate's bound."""

import numpy as np
import pytest

from gdyn_jax import linearize as lz
from gdyn_jax import optimizers

pytest.importorskip("cvxpy")

MU, L = 0.1, 1.0


def test_heavy_ball_matches_pepit_published_example():
    # PEPit wc_heavy_ball_momentum(mu=0.1, L=1, alpha=1/2, beta, n=2): tau = 0.753493,
    # f(x_2) - f* over f(x_0) - f* with x_{-1} = x_0 (the velocity at rest)
    a = 0.5
    beta = np.sqrt((1 - a * MU) * (1 - L * a))
    r = lz.rate_bracket(optimizers.momentum(a, beta), MU, L, 2, metric="function", iqc=None)
    assert r.outcome is lz.Outcome.PROVEN
    assert r.tau == pytest.approx(0.753493, abs=1e-5)


def test_nesterov_matches_pepit_example():
    # PEPit 0.5.1 wc_accelerated_gradient_strongly_convex(mu=0.1, L=1, n=2): its docstring
    # prints 0.347602 (the issue quotes 0.347586 from an older docstring; PEPit 0.5.1 computes
    # 0.3476022 with Clarabel). Metric f(x_2) - f*, x_k = y_{k-1} - g_{k-1}/L = theta + a beta v
    beta = (1 - np.sqrt(MU / L)) / (1 + np.sqrt(MU / L))
    opt = optimizers.nesterov(1 / L, beta)
    r = lz.rate_bracket(
        opt, MU, L, 2, metric="function", initial="function+distance", output=[1, beta / L],
        iqc=None,
    )  # fmt: skip
    assert r.tau == pytest.approx(0.347602, abs=1e-5)


def _lyapunov(mu, L, lam):
    """PEPit's Lyapunov function for robust momentum over [y - x*, v, g] (optax form):
    l ||z - x*||^2 + (L - mu)(f(y) - f* - mu/2 ||y - x*||^2) - 1/2 ||g - mu (y - x*)||^2,
    z = (x_{k+1} - rho^2 x_k) / (1 - rho^2), x_k = y + a gamma v, x_{k+1} = x_k - a (beta v + g)
    (PEPit's z1 takes the step after y_0's gradient)."""
    p = optimizers.robust_momentum_parameters(mu, L, lam)
    rho, a, beta, gamma = p["rho"], p["alpha"], p["beta"], p["gamma"]
    kappa = L / mu
    ell = mu**2 * (kappa - kappa * rho**2 - 1) / (2 * rho * (1 - rho))
    z = np.array([1.0, a * (gamma - beta / (1 - rho**2)), -a / (1 - rho**2)])
    y, g = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    Q = ell * np.outer(z, z) - 0.5 * (L - mu) * mu * np.outer(y, y)
    Q -= 0.5 * np.outer(g - mu * y, g - mu * y)
    return lz.pep.Form(Q, L - mu), rho


def test_robust_momentum_lyapunov_matches_pepit_published_example():
    form, rho = _lyapunov(MU, L, 0.2)
    opt = optimizers.robust_momentum(MU, L, 0.2)
    r = lz.rate_bracket(opt, MU, L, 1, metric=form, start="free", iqc=None)
    assert r.tau == pytest.approx(0.528555, abs=1e-5)
    assert rho**2 == pytest.approx(0.528555, abs=1e-6)


@pytest.mark.parametrize("a", [0.3, 1.0, 1.5])
def test_gradient_descent_closed_forms(a):
    q = max(abs(1 - a * MU), abs(1 - a * L))
    for n in (1, 5, 20):
        r = lz.rate_bracket(optimizers.sgd(a), MU, L, n, iqc=None if n > 1 else "sector")
        assert r.outcome is lz.Outcome.PROVEN, r.reason
        assert r.tau == pytest.approx(q ** (2 * n), abs=1e-6)
        if n == 1:
            assert r.upper == pytest.approx(q, abs=1e-5)


@pytest.mark.parametrize("name", ["nesterov", "triple_momentum", "robust_momentum"])
def test_pep_below_the_certificate_bound(name):
    beta = (1 - np.sqrt(MU / L)) / (1 + np.sqrt(MU / L))
    opt = {
        "nesterov": optimizers.nesterov(1 / L, beta),
        "triple_momentum": optimizers.triple_momentum(MU, L),
        "robust_momentum": optimizers.robust_momentum(MU, L, 0.5),
    }[name]
    for n in (5, 10, 20):
        r = lz.rate_bracket(opt, MU, L, n)
        assert r.outcome is lz.Outcome.PROVEN and r.upper is not None
        assert r.tau <= r.bound()
        assert r.tau <= 1.0  # the rule never moves away from x* by more than x_0 did


def _pepit_robust_momentum_distance(mu, L, lam, n):
    """PEPit by hand: n steps of the published robust momentum recursion from x_{-1} = x_0,
    metric ||y_n - x*||^2 / ||x_0 - x*||^2 (y_n the point where the gradient is taken)."""
    from PEPit import PEP
    from PEPit.functions import SmoothStronglyConvexFunction

    p = optimizers.robust_momentum_parameters(mu, L, lam)
    problem = PEP()
    func = problem.declare_function(SmoothStronglyConvexFunction, mu=mu, L=L)
    xs = func.stationary_point()
    x0 = problem.set_initial_point()
    problem.set_initial_condition((x0 - xs) ** 2 <= 1)
    x_old, x = x0, x0
    for _ in range(n):
        y = x + p["gamma"] * (x - x_old)
        x_old, x = x, x + p["beta"] * (x - x_old) - p["alpha"] * func.gradient(y)
    y = x + p["gamma"] * (x - x_old)
    problem.set_performance_metric((y - xs) ** 2)
    return problem.solve(wrapper="cvxpy", solver="CLARABEL", verbose=0)


def test_matches_pepit_written_by_hand():
    pytest.importorskip("PEPit")
    for lam, n in ((0.5, 3), (0.0, 6)):
        expected = _pepit_robust_momentum_distance(MU, L, lam, n)
        r = lz.rate_bracket(optimizers.robust_momentum(MU, L, lam), MU, L, n, iqc=None)
        assert r.tau == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_worst_function_iterates_reproduce_tau():
    r = lz.rate_bracket(optimizers.sgd(1.5), MU, L, 3, iqc=None, iterates=True)
    x0, _, _ = r.iterates["y0"]
    x3, _, _ = r.iterates["y3"]
    assert (x3 @ x3) / (x0 @ x0) == pytest.approx(r.tau, rel=1e-6)
    # the iterates follow the rule: y_{k+1} = y_k - a g_k
    y1, g0 = r.iterates["y1"][0], r.iterates["y0"][1]
    np.testing.assert_allclose(y1, x0 - 1.5 * g0, atol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"mu": 0.0}, "mu"),
        ({"mu": 1.0, "L": 1.0}, "L"),
        ({"L": 0.05}, "L"),
        ({"n": 0}, "n"),
        ({"n": 31}, "n"),
        ({"n": 2.5}, "n"),
        ({"metric": "gap"}, "metric"),
        ({"start": "warm"}, "start"),
        ({"output": [1.0]}, "output"),
    ],
)
def test_bad_input_one_line_errors(kwargs, word):
    args = {"mu": MU, "L": L, "n": 2, **kwargs}
    opt = optimizers.momentum(0.5, 0.5)
    with pytest.raises(ValueError, match=rf"^{word}:") as err:
        lz.rate_bracket(opt, args.pop("mu"), args.pop("L"), **args)
    assert "\n" not in str(err.value)


def test_rules_that_are_not_affine_or_whose_state_grows_are_refused():
    import optax

    with pytest.raises(ValueError, match=r"^opt: .*not linear"):
        lz.rate_bracket(optimizers.adam(1e-3), MU, L, 2)

    # a redundant integrator: a state leaf that sums the gradients and is never used
    def init(params):
        return (params * 0.0,)

    def update(g, state, params=None):
        return -0.5 * g, (state[0] + g,)

    with pytest.raises(ValueError, match=r"^opt: .*poles at 1"):
        lz.rate_bracket(optax.GradientTransformation(init, update), MU, L, 2)


def test_cli_prints_both_sides(capsys):
    import json

    from gdyn_jax import cli

    base = ["analyze", "sgd", "--hp", "learning_rate=1.5", "--curvature", "0.5"]
    assert cli.main([*base, "--robust", "0.1,1", "--pep", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pep"]["tau"] == pytest.approx(0.85**10, abs=1e-6)
    assert out["pep"]["upper"] == pytest.approx(0.85, abs=1e-5)
    assert cli.main([*base, "--robust", "0.1,1", "--pep", "5"]) == 0
    assert "worst case after 5 steps (PEP" in capsys.readouterr().out
    for extra in (["--pep", "5"], ["--robust", "0.1,1", "--pep", "0"]):
        assert cli.main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gdyn analyze: error: --pep:") and "\n" not in err
